"""Masking and access policies as data (``policies.yaml``): roles, the tables each reads,
row filters, aggregate views and the operator of every (PII class / semantic) x role.

:func:`load_policy` validates the file's shape; :func:`check_policy` cross-checks it
against the contracts (tables, columns, code lists). Which tables a role reads and
which operator each column takes are answered here; :mod:`masking.role_views` turns
the answers into SQL. :func:`dataset_readers` answers, per dataset, which roles read it
and how (role views, files): the data catalogue states exactly that (:mod:`catalog.roles`).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import sqlglot
import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from sqlglot import exp

from masking.operators import OperatorName
from schemas.contract import Column, ColumnType, DerivedKind, PiiClass, Semantic, Sensitivity
from schemas.registry import Registry

POLICY_PATH = Path(__file__).with_name("policies.yaml")
ROLE_ZONES = ("staged", "library", "marts")
RoleZone = Literal["staged", "library", "marts"]
# Zones a role may read as files, beside (or instead of) role views: the catalogue states them.
FILE_ZONES = ("raw", "quarantine", "marts", "exports")
FileZone = Literal["raw", "quarantine", "marts", "exports"]
ROLE_NAMES = ("steward", "street_staff", "leadership", "analyst", "third_party")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _as_list(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


class Rule(_Strict):
    """``operator`` for columns matching every listed key (an empty rule matches all)."""

    operator: OperatorName
    pii: list[PiiClass] | None = None
    semantic: list[Semantic] | None = None
    type: list[ColumnType] | None = None
    column: list[str] | None = None
    table: list[str] | None = None
    rename: str | None = Field(default=None, pattern=r"^[a-z][a-z0-9_]*$")

    _lists = field_validator("pii", "semantic", "type", "column", "table", mode="before")(_as_list)

    @property
    def catch_all(self) -> bool:
        keys = (self.pii, self.semantic, self.type, self.column, self.table)
        return all(k is None for k in keys)

    def matches(self, col: Column, table: str) -> bool:
        return (
            (self.table is None or table in self.table)
            and (self.pii is None or col.pii in self.pii)
            and (self.semantic is None or col.semantic in self.semantic)
            and (self.type is None or col.type in self.type)
            and (self.column is None or col.name in self.column)
        )


class Read(_Strict):
    """Tables of one zone a role reads (every listed condition must hold)."""

    zone: RoleZone
    max_sensitivity: Sensitivity | None = None
    kinds: list[DerivedKind] | None = None
    tables: list[str] | None = None
    exclude: list[str] = Field(default_factory=list)


class RowFilter(_Strict):
    by: Literal["street"]
    exempt_sensitivity: list[Sensitivity] = Field(default_factory=list)
    # where an elder's street is read for tables that only carry elder_key
    elder_table: str = "dim_elder"
    elder_key: str = "elder_key"


class GroupBy(_Strict):
    column: str
    operator: OperatorName = "keep"
    name: str | None = Field(default=None, pattern=r"^[a-z][a-z0-9_]*$")

    @property
    def output(self) -> str:
        return self.name or self.column


class Measure(_Strict):
    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    agg: Literal["count", "count_distinct", "sum"]
    column: str | None = None

    @model_validator(mode="after")
    def _column_needed(self) -> Measure:
        if self.agg != "count" and self.column is None:
            raise ValueError(f"measure {self.name}: {self.agg} needs a column")
        return self


class Aggregate(_Strict):
    """An aggregate view: counts over one library/mart table, small cells suppressed (with
    complementary suppression in every row and column: :mod:`masking.role_views`)."""

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    zh: str
    source: str
    where: str | None = None
    group_by: list[GroupBy]
    persons: str  # counted distinct: a row with fewer than k of them has every measure NULL
    measures: list[Measure]

    @field_validator("group_by", mode="before")
    @classmethod
    def _plain_columns(cls, value: Any) -> Any:
        return [{"column": v} if isinstance(v, str) else v for v in value]


class Complementary(_Strict):
    """Rows of a table that are the cells of a line whose total is published in the same table.

    A line is the rows sharing the values of ``line``; among them, those meeting ``cells`` are
    its cells, the others its total (e.g. the district row of a KPI and month over its street
    rows). When a line whose total is published has exactly one suppressed cell, the cell could
    be recomputed as the total minus the other cells, so its smallest published cell is
    suppressed as well (complementary suppression).
    """

    line: list[str] = Field(min_length=1)
    cells: str


class SmallCountSuppression(_Strict):
    """In a row-level table: ``null_columns`` are NULL where ``when`` holds and the count < k
    (and, with ``complementary``, in the cell protecting a lone suppressed cell of a line)."""

    table: str
    count_column: str
    when: str | None = None
    null_columns: list[str]
    complementary: Complementary | None = None


class RolePolicy(_Strict):
    zh: str
    access: str  # the role's access kind (its display labels: catalog/roles.yaml)
    reads: list[Read] = Field(default_factory=list)
    # zones whose folders the role reads as files (declared datasets or not), not through views
    file_zones: list[FileZone] = Field(default_factory=list)
    row_filter: RowFilter | None = None
    undeclared_columns: Literal["keep", "drop"] = "drop"
    operators: list[Rule] = Field(default_factory=list)
    aggregates: list[Aggregate] = Field(default_factory=list)
    suppress_small_counts: list[SmallCountSuppression] = Field(default_factory=list)

    @model_validator(mode="after")
    def _rules_complete(self) -> RolePolicy:
        if self.reads and not any(r.catch_all for r in self.operators):
            raise ValueError("a role that reads tables needs a catch-all operator rule (last)")
        for i, r in enumerate(self.operators[:-1]):
            if r.catch_all:
                raise ValueError(f"operator rule {i + 1} matches every column: rules after it never apply")
        return self

    def rule_for(self, col: Column, table: str) -> Rule:
        """The first rule matching column ``col`` of ``table``."""
        for r in self.operators:
            if r.matches(col, table):
                return r
        raise LookupError(f"no operator rule matches column {col.name}")  # pragma: no cover - validated

    def suppression_for(self, table: str) -> list[SmallCountSuppression]:
        return [s for s in self.suppress_small_counts if s.table == table]


class Settings(_Strict):
    k: int = Field(default=5, ge=2)
    view_schema: str = Field(default="role_view", pattern=r"^[a-z][a-z0-9_]*$")
    hash_purpose: str = "view"
    pseudonym_purpose: str = "marts"


class Policy(_Strict):
    settings: Settings
    sensitivity_order: list[Sensitivity]
    roles: dict[str, RolePolicy]

    @model_validator(mode="after")
    def _known_roles(self) -> Policy:
        if set(self.roles) != set(ROLE_NAMES):
            raise ValueError(
                f"policies must declare exactly the roles {ROLE_NAMES}, not {sorted(self.roles)}"
            )
        return self

    def role(self, name: str) -> RolePolicy:
        try:
            return self.roles[name]
        except KeyError:
            raise ValueError(f"unknown role {name!r}; expected one of {sorted(self.roles)}") from None

    def rank(self, sensitivity: str) -> int:
        return self.sensitivity_order.index(sensitivity)  # type: ignore[arg-type]


def load_policy(path: Path | None = None) -> Policy:
    return _load(str(path or POLICY_PATH))


@functools.cache
def _load(path: str) -> Policy:
    return Policy.model_validate(yaml.safe_load(Path(path).read_text(encoding="utf-8")))


# --- which tables a role reads ------------------------------------------------------


def zone_tables(registry: Registry, zone: str) -> list[tuple[str, str, str | None, list[Column]]]:
    """(name, sensitivity, kind, columns) of every contract table of a zone."""
    if zone == "staged":
        return [(t.name, t.sensitivity, None, list(t.columns)) for _, t in registry.tables()]
    return [(t.name, t.sensitivity, t.kind, list(t.columns)) for _, t in registry.derived_tables(zone)]


def table_columns(registry: Registry, zone: str, name: str) -> list[Column]:
    if zone == "staged":
        return list(registry.table(name).columns)
    return list(registry.derived(name).columns)


def street_column(columns: list[Column]) -> str | None:
    for c in columns:
        if c.semantic == "street":
            return c.name
    return None


def aggregate_zone(registry: Registry, source: str) -> str:
    """The zone of an aggregate view's source table (library, else marts)."""
    return "library" if any(t.name == source for _, t in registry.derived_tables("library")) else "marts"


def granted_tables(policy: Policy, registry: Registry, role: str) -> list[tuple[str, str]]:
    """(zone, table) the role's ``reads`` grant, before any row filter; in contract order."""
    rp = policy.role(role)
    out: list[tuple[str, str]] = []
    for read in rp.reads:
        for name, sensitivity, kind, _ in zone_tables(registry, read.zone):
            if read.max_sensitivity and policy.rank(sensitivity) > policy.rank(read.max_sensitivity):
                continue
            if read.kinds is not None and kind not in read.kinds:
                continue
            if read.tables is not None and name not in read.tables:
                continue
            if name in read.exclude or (read.zone, name) in out:
                continue
            out.append((read.zone, name))
    return out


def row_filter_mode(policy: Policy, registry: Registry, role: str, zone: str, table: str) -> str | None:
    """How a table's rows are filtered for the role: None (not filtered), ``street``,
    ``elder`` (through library.dim_elder) or ``hidden`` (no way to filter: not visible)."""
    rp = policy.role(role)
    if rp.row_filter is None:
        return None
    columns = table_columns(registry, zone, table)
    sensitivity = next(s for n, s, _, _ in zone_tables(registry, zone) if n == table)
    if sensitivity in rp.row_filter.exempt_sensitivity:
        return None
    if street_column(columns):
        return "street"
    if any(c.name == rp.row_filter.elder_key for c in columns):
        return "elder"
    return "hidden"


def visible_tables(policy: Policy, registry: Registry, role: str) -> list[tuple[str, str]]:
    """(zone, table) of the role's row-level views: granted and filterable."""
    return [
        (z, t)
        for z, t in granted_tables(policy, registry, role)
        if row_filter_mode(policy, registry, role, z, t) != "hidden"
    ]


@dataclass(frozen=True)
class Reader:
    """One role's access to one dataset: its access kind, the role views that read the
    dataset (its row-level view, aggregate views over it) and whether it reads the files."""

    role: str
    access: str
    views: tuple[str, ...] = ()
    files: bool = False


def role_datasets(policy: Policy, registry: Registry, role: str) -> dict[tuple[str, str], tuple[str, ...]]:
    """(zone, table) -> the role's views reading it: the row-level view of every visible table
    (named after it) and every aggregate view over it; the datasets of its role views only."""
    out: dict[tuple[str, str], tuple[str, ...]] = {}
    for zone, table in visible_tables(policy, registry, role):
        out[(zone, table)] = (table,)
    for agg in policy.role(role).aggregates:
        key = (aggregate_zone(registry, agg.source), agg.source)
        out[key] = (*out.get(key, ()), agg.name)
    return out


def dataset_readers(
    policy: Policy,
    registry: Registry,
    zone: str,
    table: str | None,
    *,
    views: dict[str, dict[tuple[str, str], tuple[str, ...]]] | None = None,
) -> list[Reader]:
    """Every role that reads ``zone.table`` by the policy, in the policy's role order.

    ``table`` None is a dataset no contract declares (only file access applies). ``views``
    is :func:`role_datasets` per role, when the caller has it already.
    """
    out: list[Reader] = []
    for role, rp in policy.roles.items():
        by_view = views[role] if views is not None else role_datasets(policy, registry, role)
        seen = by_view.get((zone, table), ()) if table is not None else ()
        files = zone in rp.file_zones
        if seen or files:
            out.append(Reader(role, rp.access, seen, files))
    return out


# --- cross-checks against the contracts ---------------------------------------------


def _condition_columns(sql: str, where: str) -> set[str]:
    tree = sqlglot.parse_one(sql, read="duckdb", into=exp.Condition)
    if tree.find(exp.Select, exp.Subquery) is not None:
        raise ValueError(f"{where}: a condition may not contain a subquery: {sql!r}")
    return {c.name for c in tree.find_all(exp.Column)}


def check_policy(policy: Policy, registry: Registry) -> None:
    """Every table, column and condition the policy names exists in the contracts."""
    problems: list[str] = []
    derived = {t.name: (d.zone, t) for d, t in registry.derived_tables()}
    for role, rp in policy.roles.items():
        names: set[str] = set()
        for read in rp.reads:
            known = {n for n, *_ in zone_tables(registry, read.zone)}
            for t in [*(read.tables or []), *read.exclude]:
                if t not in known:
                    problems.append(f"{role}: {read.zone} has no table {t!r}")
        if rp.row_filter:
            elder = derived.get(rp.row_filter.elder_table)
            if elder is None or elder[0] != "library":
                problems.append(
                    f"{role}: row filter table {rp.row_filter.elder_table!r} is not a library table"
                )
            elif street_column(list(elder[1].columns)) is None or rp.row_filter.elder_key not in {
                c.name for c in elder[1].columns
            }:
                problems.append(f"{role}: {rp.row_filter.elder_table} lacks a street or elder key column")
        visible = {t for _, t in visible_tables(policy, registry, role)} if rp.reads else set()
        names |= visible
        for s in rp.suppress_small_counts:
            if s.table not in visible:
                problems.append(f"{role}: suppression on {s.table!r}, which the role does not read")
                continue
            zone = derived[s.table][0] if s.table in derived else "staged"
            cols = {c.name for c in table_columns(registry, zone, s.table)}
            wanted = {s.count_column, *s.null_columns}
            if s.when:
                wanted |= _condition_columns(s.when, f"{role}.{s.table}")
            if s.complementary:
                wanted |= set(s.complementary.line)
                wanted |= _condition_columns(s.complementary.cells, f"{role}.{s.table}")
            problems += [f"{role}: {s.table} has no column {c!r}" for c in sorted(wanted - cols)]
        for a in rp.aggregates:
            if a.name in names:
                problems.append(f"{role}: view name {a.name!r} used twice")
            names.add(a.name)
            if a.source not in derived:
                problems.append(f"{role}: aggregate {a.name} reads unknown table {a.source!r}")
                continue
            cols = {c.name for c in derived[a.source][1].columns}
            wanted = {g.column for g in a.group_by} | {a.persons}
            wanted |= {m.column for m in a.measures if m.column}
            if a.where:
                wanted |= _condition_columns(a.where, f"{role}.{a.name}")
            problems += [f"{role}: {a.source} has no column {c!r} ({a.name})" for c in sorted(wanted - cols)]
            outputs = [g.output for g in a.group_by] + [m.name for m in a.measures]
            if len(set(outputs)) != len(outputs):
                problems.append(f"{role}: aggregate {a.name} has duplicate output columns")
        every_table = {t.name for _, t in registry.tables()} | {t.name for _, t in registry.derived_tables()}
        for r in rp.operators:
            problems += [
                f"{role}: operator rule names unknown table {t!r}"
                for t in r.table or []
                if t not in every_table
            ]
            if r.column and not any(
                c.name in r.column
                for _, t in registry.tables() + registry.derived_tables()
                for c in t.columns
            ):
                problems.append(f"{role}: operator rule names unknown columns {r.column}")
    if problems:
        raise ValueError("policy problems:\n  " + "\n  ".join(problems))

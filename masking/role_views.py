"""Role views as SQL: the policy and the contracts -> one ``SELECT`` per view.

A row-level view selects every column of its base table (``<catalog>.<zone>."<table>"``)
through the operator the role's policy gives it, renames where the policy says so, and
filters rows for roles with a row filter. An aggregate view groups one table and
suppresses every measure of a group of fewer than k persons (primary suppression), then
protects those cells from the line totals: published elsewhere (a street's elders are a KPI,
and every elder view of a street adds up to the same number) a total minus the published
cells of a line would give a lone suppressed cell back. So every line of the table (the cells
sharing all group-by values but one; the whole table for one group-by column) holding exactly
one suppressed cell gets a second one, its published cell with the fewest persons
(complementary suppression), line direction by line direction until no line has a lone one -
the rule of :func:`masking.release.aggregate_cells` for export packages, here in SQL (a
recursive CTE), so the view stays a view. A row-level table's small counts
(``suppress_small_counts``) are NULL the same way, with a complementary cell per line where
the table publishes the line's total itself (a KPI's district row over its streets).

Views are plain DuckDB SQL (sqlglot reads them); the keyed operators call functions that
only a role connection registers (:mod:`masking.access`).

The base's actual columns are passed in (``base``): a contract column the base lacks
is a typed NULL, a base column the contract does not declare follows the role's
``undeclared_columns``; a missing base table is an empty, typed relation, so a role
sees the same views whether or not a table has been built yet.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import sqlglot
from sqlglot import exp

from masking.operators import DUCK_TYPES, ColumnRef, build, literal, output_type, quote
from masking.policy import (
    Aggregate,
    Policy,
    RolePolicy,
    SmallCountSuppression,
    aggregate_zone,
    row_filter_mode,
    street_column,
    table_columns,
    visible_tables,
)
from schemas.contract import Column
from schemas.registry import Registry

SRC = "src"
INTERNAL = "_rb_"  # CTEs and helper columns inside a view (output names start with a letter)
BaseColumns = Mapping[tuple[str, str], list[tuple[str, str]] | None]  # (zone, table) -> [(name, duck type)]


@dataclass(frozen=True)
class ViewColumn:
    name: str
    operator: str
    source: str | None  # the base column it comes from (None: computed measure)
    type: str  # contract type of the result (string, date, ...)


@dataclass(frozen=True)
class ViewPlan:
    name: str
    kind: str  # table | aggregate
    sources: tuple[str, ...]  # zone.table read
    columns: tuple[ViewColumn, ...]
    sql: str  # the SELECT

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def functions(self) -> set[str]:
        return {c.operator for c in self.columns if c.operator in ("keyed_hash", "pseudonym")}


def street_names(registry: Registry) -> dict[str, str]:
    """Street code -> Chinese name (code list ``street``)."""
    return {v.code: v.zh for v in registry.codelist("street").values}


def normalise_street(registry: Registry, street: str) -> str:
    """A street code from a code, Chinese name or alias; ValueError when unknown."""
    code = registry.codelist("street").lookup().get(street.strip())
    if code is None:
        raise ValueError(f"unknown street {street!r}")
    return code


def base_ref(
    catalog: str,
    zone: str,
    table: str,
    declared: list[Column],
    base: list[tuple[str, str]] | None,
    refs: Mapping[tuple[str, str], str] | None = None,
) -> str:
    """The FROM item of a base table: an override (e.g. a registered dataset of encrypted
    files), the warehouse view, or an empty typed relation when there is neither."""
    if refs and (zone, table) in refs:
        return quote(refs[(zone, table)])
    if base is not None:
        return f"{quote(catalog)}.{quote(zone)}.{quote(table)}"
    cols = ", ".join(f"CAST(NULL AS {DUCK_TYPES[c.type]}) AS {quote(c.name)}" for c in declared)
    return f"(SELECT {cols} WHERE false)"


def _input(col: Column, present: set[str]) -> str:
    return f"{SRC}.{quote(col.name)}" if col.name in present else f"CAST(NULL AS {DUCK_TYPES[col.type]})"


def plan_table_view(
    policy: Policy,
    registry: Registry,
    role: str,
    zone: str,
    table: str,
    *,
    catalog: str,
    base: list[tuple[str, str]] | None,
    elder_base: list[tuple[str, str]] | None,
    street: str | None,
    k: int,
    refs: Mapping[tuple[str, str], str] | None = None,
) -> ViewPlan:
    rp = policy.role(role)
    declared = table_columns(registry, zone, table)
    present = {n for n, _ in base} if base is not None else {c.name for c in declared}
    street_col = street_column(declared)
    street_sql = (
        _input(declared[[c.name for c in declared].index(street_col)], present) if street_col else None
    )
    names = street_names(registry)
    suppressions = rp.suppression_for(table)
    # per suppression: the condition under which its null_columns are NULL; a complementary
    # one needs window functions over the whole table, computed before the row filter
    flags: list[str] = []
    flag_columns: list[str] = []
    for i, s in enumerate(suppressions):
        condition = _small_count_condition(s, declared, present, registry, zone, table, k)
        if s.complementary is None:
            flags.append(condition)
        else:
            flag = f"{INTERNAL}suppressed_{i}"
            flag_columns.append(f"{condition} AS {quote(flag)}")
            flags.append(f"{SRC}.{quote(flag)}")
    select: list[str] = []
    columns: list[ViewColumn] = []
    for col in declared:
        rule = rp.rule_for(col, table)
        expr = build(rule.operator, ColumnRef(_input(col, present), col.type, street_sql, names))
        if expr is None:
            continue
        for s, flag in zip(suppressions, flags, strict=True):
            if col.name in s.null_columns:
                expr = f"CASE WHEN {flag} THEN NULL ELSE {expr} END"
        out = rule.rename or col.name
        select.append(f"{expr} AS {quote(out)}")
        columns.append(ViewColumn(out, rule.operator, col.name, output_type(rule.operator, col.type)))
    if rp.undeclared_columns == "keep" and base is not None:
        known = {c.name for c in declared}
        for name, duck_type in base:
            if name not in known:
                select.append(f"{SRC}.{quote(name)} AS {quote(name)}")
                columns.append(ViewColumn(name, "keep", name, duck_type.lower()))
    if len({c.name for c in columns}) != len(columns):
        raise ValueError(f"{role}.{table}: duplicate output columns {[c.name for c in columns]}")
    sources = [f"{zone}.{table}"]
    where = ""
    mode = row_filter_mode(policy, registry, role, zone, table)
    if mode is not None:
        if street is None:
            raise ValueError(f"role {role} needs a street")
        assert rp.row_filter is not None
        if mode == "street":
            where = f" WHERE {street_sql} = {literal(street)}"
        elif mode == "elder":
            et = rp.row_filter.elder_table
            e_cols = table_columns(registry, "library", et)
            e_street = quote(street_column(e_cols) or "street")
            key = quote(rp.row_filter.elder_key)
            elder_from = base_ref(catalog, "library", et, e_cols, elder_base, refs)
            elders = f"SELECT e.{key} FROM {elder_from} AS e WHERE e.{e_street} = {literal(street)}"
            where = f" WHERE {SRC}.{key} IN ({elders})"
            sources.append(f"library.{et}")
        else:
            raise ValueError(f"{role} cannot read {zone}.{table}: it has no street and no elder key")
    source = base_ref(catalog, zone, table, declared, base, refs)
    if flag_columns:  # the whole table's lines (before the row filter): a total is the whole line's
        source = f"(SELECT {SRC}.*, {', '.join(flag_columns)} FROM {source} AS {SRC})"
    sql = f"SELECT {', '.join(select)} FROM {source} AS {SRC}{where}"
    return ViewPlan(table, "table", tuple(sources), tuple(columns), sql)


def _small_count_condition(
    s: SmallCountSuppression,
    declared: list[Column],
    present: set[str],
    registry: Registry,
    zone: str,
    table: str,
    k: int,
) -> str:
    """SQL true where ``s`` NULLs the row's columns: its count is under k (primary) or, with
    ``s.complementary``, the row is the smallest published cell of a line whose published
    total would otherwise give its one suppressed cell back."""
    by_name = {c.name: c for c in declared}
    count = _input(by_name[s.count_column], present)
    when = f"({_qualify(s.when)})" if s.when else "true"
    primary = f"coalesce({when} AND {count} < {int(k)}, false)"
    c = s.complementary
    if c is None:
        return primary
    cell = f"coalesce({when} AND ({_qualify(c.cells)}), false)"
    total = f"coalesce({when} AND NOT ({_qualify(c.cells)}) AND {count} >= {int(k)}, false)"
    candidate = f"({cell} AND NOT {primary} AND {count} IS NOT NULL)"
    line = ", ".join(_input(by_name[n], present) for n in c.line)
    keys = [n for n in _primary_key(registry, zone, table) if n in by_name and n not in c.line]
    order = ", ".join([f"{candidate} DESC", count, *(_input(by_name[n], present) for n in keys)])
    window = f"OVER (PARTITION BY {line})"
    lone = (
        f"count_if({cell} AND {primary}) {window} = 1 AND count_if({total}) {window} > 0 "
        f"AND row_number() OVER (PARTITION BY {line} ORDER BY {order}) = 1"
    )
    return f"({primary} OR ({candidate} AND {lone}))"


def _primary_key(registry: Registry, zone: str, table: str) -> list[str]:
    if zone == "staged":
        return list(registry.table(table).primary_key)
    return list(registry.derived(table).primary_key)


def _qualify(condition: str) -> str:
    """A policy condition with its column names qualified by the source alias."""
    tree = sqlglot.parse_one(condition, read="duckdb", into=exp.Condition)
    for c in tree.find_all(exp.Column):
        c.set("table", exp.to_identifier(SRC))
    return tree.sql(dialect="duckdb")


def plan_aggregate_view(
    registry: Registry,
    agg: Aggregate,
    *,
    catalog: str,
    base: list[tuple[str, str]] | None,
    k: int,
    refs: Mapping[tuple[str, str], str] | None = None,
) -> ViewPlan:
    """The aggregate view: the cells, primary and complementary suppression (module docstring).

    The SQL: ``cells`` groups the source (persons per cell beside the measures), numbered in
    group-by order; ``state`` is a recursive CTE over rounds, one line direction per round
    (round % number of group-by columns), each suppressing in every line of that direction
    with exactly one suppressed cell of two or more its published cell with the fewest
    persons (then the first in group-by order); it stops after one round per direction has
    changed nothing. Measures of a suppressed cell are NULL.
    """
    zone = aggregate_zone(registry, agg.source)
    declared = table_columns(registry, zone, agg.source)
    by_name = {c.name: c for c in declared}
    present = {n for n, _ in base} if base is not None else set(by_name)
    street_col = street_column(declared)
    street_sql = _input(by_name[street_col], present) if street_col else None
    names = street_names(registry)
    select: list[str] = []
    columns: list[ViewColumn] = []
    for g in agg.group_by:
        col = by_name[g.column]
        expr = build(g.operator, ColumnRef(_input(col, present), col.type, street_sql, names))
        if expr is None:
            raise ValueError(f"aggregate {agg.name}: group column {g.column} cannot be dropped")
        select.append(f"{expr} AS {quote(g.output)}")
        columns.append(ViewColumn(g.output, g.operator, g.column, output_type(g.operator, col.type)))
    units, cell, supp = f"{INTERNAL}units", f"{INTERNAL}cell", f"{INTERNAL}suppressed"
    rnd, quiet, pick = f"{INTERNAL}round", f"{INTERNAL}quiet", f"{INTERNAL}pick"
    cells, state = f"{INTERNAL}cells", f"{INTERNAL}state"
    select.append(f"count(DISTINCT {_input(by_name[agg.persons], present)}) AS {units}")
    for m in agg.measures:
        if m.agg == "count":
            expr, typ = "count(*)", "integer"
        elif m.agg == "count_distinct":
            expr, typ = f"count(DISTINCT {_input(by_name[m.column or ''], present)})", "integer"
        else:
            expr, typ = f"sum({_input(by_name[m.column or ''], present)})", by_name[m.column or ""].type
        select.append(f"{expr} AS {quote(m.name)}")
        columns.append(ViewColumn(m.name, m.agg, m.column, typ))
    where = f" WHERE {_qualify(agg.where)}" if agg.where else ""
    keys = [quote(g.output) for g in agg.group_by]
    positions = ", ".join(str(i + 1) for i in range(len(keys)))
    source = base_ref(catalog, zone, agg.source, declared, base, refs)
    in_order = ", ".join(f"{key} NULLS LAST" for key in keys)
    grouped = f"SELECT {', '.join(select)} FROM {source} AS {SRC}{where} GROUP BY {positions}"
    numbered = f"SELECT *, row_number() OVER (ORDER BY {in_order}) AS {cell} FROM ({grouped})"
    directions = len(keys)
    picks = []
    for i in range(directions):
        others = ", ".join(f"c.{key}" for j, key in enumerate(keys) if j != i)
        line = f"PARTITION BY {others} " if others else ""
        picks.append(
            f"WHEN {i} THEN NOT s.{supp} AND count(*) OVER ({line.strip()}) >= 2 "
            f"AND count_if(s.{supp}) OVER ({line.strip()}) = 1 "
            f"AND row_number() OVER ({line}ORDER BY s.{supp}, c.{units}, c.{cell}) = 1"
        )
    step = (
        f"SELECT s.{rnd}, s.{quiet}, s.{cell}, s.{supp}, CASE s.{rnd} % {directions} {' '.join(picks)} "
        f"END AS {pick} FROM {state} AS s JOIN {cells} AS c ON c.{cell} = s.{cell} "
        f"WHERE s.{quiet} < {directions}"
    )
    recursive = (
        f"SELECT 0, 0, {cell}, {units} < {int(k)} FROM {cells} UNION ALL "
        f"SELECT {rnd} + 1, CASE WHEN bool_or({pick}) OVER () THEN 0 ELSE {quiet} + 1 END, "
        f"{cell}, {supp} OR {pick} FROM ({step})"
    )
    outputs = [f"c.{key}" for key in keys] + [
        f"CASE WHEN s.{supp} THEN NULL ELSE c.{quote(m.name)} END AS {quote(m.name)}" for m in agg.measures
    ]
    sql = (
        f"WITH RECURSIVE {cells} AS MATERIALIZED ({numbered}), "
        f"{state}({rnd}, {quiet}, {cell}, {supp}) AS ({recursive}) "
        f"SELECT {', '.join(outputs)} FROM {cells} AS c "
        f"JOIN {state} AS s ON s.{cell} = c.{cell} AND s.{quiet} >= {directions} "
        f"ORDER BY {positions}"
    )
    return ViewPlan(agg.name, "aggregate", (f"{zone}.{agg.source}",), tuple(columns), sql)


def plan_role_views(
    policy: Policy,
    registry: Registry,
    role: str,
    *,
    street: str | None = None,
    k: int | None = None,
    catalog: str = "rb_wh",
    base: BaseColumns | None = None,
    refs: Mapping[tuple[str, str], str] | None = None,
) -> list[ViewPlan]:
    """Every view of the role, in a stable order (row-level tables, then aggregates).

    ``base`` maps (zone, table) to the base view's actual columns, or None when the base
    does not exist; without ``base`` every base is assumed to match its contract. ``refs``
    names a relation to read instead of the warehouse view, per (zone, table).
    """
    rp: RolePolicy = policy.role(role)
    k = policy.settings.k if k is None else k
    if k < 2:
        raise ValueError("k must be at least 2")
    if rp.row_filter is not None:
        if street is None:
            raise ValueError(f"role {role} needs the user's street")
        street = normalise_street(registry, street)

    def cols(zone: str, table: str) -> list[tuple[str, str]] | None:
        if base is None:
            return [(c.name, DUCK_TYPES[c.type]) for c in table_columns(registry, zone, table)]
        return base.get((zone, table))

    plans: list[ViewPlan] = []
    elder_table = rp.row_filter.elder_table if rp.row_filter else "dim_elder"
    for zone, table in visible_tables(policy, registry, role):
        plans.append(
            plan_table_view(
                policy,
                registry,
                role,
                zone,
                table,
                catalog=catalog,
                base=cols(zone, table),
                elder_base=cols("library", elder_table),
                street=street,
                k=k,
                refs=refs,
            )
        )
    for agg in rp.aggregates:
        zone = aggregate_zone(registry, agg.source)
        plans.append(
            plan_aggregate_view(registry, agg, catalog=catalog, base=cols(zone, agg.source), k=k, refs=refs)
        )
    return plans


def expected_columns(
    policy: Policy, registry: Registry, role: str, street: str | None = None
) -> dict[str, list[str]]:
    """View name -> output columns, as the policy gives them over contract-shaped bases."""
    if policy.role(role).row_filter is not None and street is None:
        street = next(iter(street_names(registry)))
    return {p.name: p.column_names for p in plan_role_views(policy, registry, role, street=street)}

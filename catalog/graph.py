"""The lineage graph of the whole lake, built from the contracts and the code that builds tables.

:func:`build_lineage_graph` assembles one :class:`~catalog.lineage.LineageGraph`:

* ``staged.<t>`` <- ``raw.<t>``: staging keeps every contract column (typed), derives
  ``id_birth_date`` / ``id_sex`` from the resident ID and carries the row lineage;
* library and mart tables with ``build: sql``: the SELECT in
  ``assets/<zone>/sql/<table>.sql``, read with sqlglot (discovered at run time: a
  missing file is a *problem* of that table, reported, not raised);
* tables with ``build: python``: a generated SELECT where there is one
  (``sql_generators`` in ``python_lineage.yaml``), else the declared mapping in
  ``python_lineage.yaml``;
* KPI formulas (``schemas.kpi.load_kpis()`` once that module exists) as ``kpi.<id>``.

SQL files in subfolders of a zone's ``sql/`` (``sql/fragments/``) are fragments that
code composes into statements, not tables: they are not read as tables here.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import polars as pl
import yaml
from polars.datatypes import DataTypeClass

from assets.ingest.views import duck_type
from catalog.lineage import (
    EDGE_KINDS,
    ColumnRef,
    EdgeKind,
    LineageGraph,
    SchemaDict,
    TableLineage,
    iter_sql_files,
    sql_table_lineage,
)
from schemas.registry import Registry, load_registry

REPO = Path(__file__).resolve().parents[1]
PYTHON_LINEAGE_PATH = Path(__file__).with_name("python_lineage.yaml")
ROWS_KEY = "_rows"  # in a table's mapping: the columns deciding which rows exist
SQL_TYPES = {
    "string": "VARCHAR",
    "integer": "BIGINT",
    "decimal": "DOUBLE",
    "date": "DATE",
    "timestamp": "TIMESTAMP",
    "boolean": "BOOLEAN",
}
# Relations the KPI engine gives every formula (schemas/kpi.py) and the portrait builder its
# SELECT (assets/marts/common.py register_parameters): build parameters, not data.
ENGINE_ZONE = "engine"
ENGINE_SCHEMA: dict[str, dict[str, str]] = {
    "kpi_months": {
        "month": "DATE",
        "month_start": "DATE",
        "month_end": "DATE",
        "days": "BIGINT",
        "is_current": "BOOLEAN",
        "as_of": "DATE",
    },
    "kpi_areas": {"area": "VARCHAR", "street": "VARCHAR"},
    "mart_ltci_entitlement": {"care_level": "VARCHAR", "visits_per_week": "BIGINT"},
    "mart_params": {"as_of": "DATE"},
}
# The columns every KPI formula returns (schemas/kpi.py FORMULA_COLUMNS).
KPI_COLUMNS = ("area", "month", "value")
# The standard person-record attributes identity resolution compares (``person_record.*``).
IDENTITY_ATTRIBUTES = ("name", "sex", "birth_date", "id_number", "other_id", "phone", "address", "street")


def default_sql_dirs() -> dict[str, Path]:
    """Where the SELECTs of ``build: sql`` tables live, per zone."""
    return {zone: REPO / "assets" / zone / "sql" for zone in ("library", "marts")}


def _sql_type(dtype: pl.DataType | DataTypeClass) -> str:
    """The DuckDB type name of a Polars type (as the views declare it; lists as VARCHAR[])."""
    if isinstance(dtype, pl.List):
        return "VARCHAR[]"
    try:
        return duck_type(dtype).replace("TIMESTAMPTZ", "TIMESTAMP")
    except TypeError:
        return str(dtype).upper()


def type_name(dtype: pl.DataType | DataTypeClass) -> str:
    """A Polars type in the contracts' words (string, integer, decimal, date, timestamp, boolean)."""
    if isinstance(dtype, pl.List):
        return f"list<{type_name(dtype.inner)}>"
    names = {
        "VARCHAR": "string",
        "BIGINT": "integer",
        "DOUBLE": "decimal",
        "DATE": "date",
        "TIMESTAMP": "timestamp",
        "BOOLEAN": "boolean",
    }
    return names.get(_sql_type(dtype), str(dtype).lower())


def contract_schema(registry: Registry) -> dict[str, dict[str, dict[str, str]]]:
    """``{zone: {table: {column: SQL type}}}`` of the raw, staged, library and mart zones."""
    from assets.ingest.raw import raw_schema
    from assets.staging.stage import staged_schema

    schema: dict[str, dict[str, dict[str, str]]] = {
        "raw": {},
        "staged": {},
        "library": {},
        "marts": {},
        ENGINE_ZONE: {n: dict(c) for n, c in ENGINE_SCHEMA.items()},
    }
    for _, table in registry.tables():
        schema["raw"][table.name] = {c: _sql_type(t) for c, t in raw_schema(table).items()}
        schema["staged"][table.name] = {c: _sql_type(t) for c, t in staged_schema(table).items()}
    for dataset, derived in registry.derived_tables():
        schema[dataset.zone][derived.name] = {c.name: SQL_TYPES[c.type] for c in derived.columns}
    return schema


def table_zones(registry: Registry) -> dict[str, str]:
    zones = {t.name: "staged" for _, t in registry.tables()}
    zones.update({t.name: d.zone for d, t in registry.derived_tables()})
    zones.update({name: ENGINE_ZONE for name in ENGINE_SCHEMA})
    return zones


# ------------------------------------------------------------------ KPI formulas


@dataclass(frozen=True)
class KpiFormula:
    id: str
    sql: str
    zh: str = ""
    en: str = ""
    unit: str = ""
    description: str = ""
    owner_department: str = ""


def _field(obj: Any, *names: str) -> Any:
    for n in names:
        value = obj.get(n) if isinstance(obj, Mapping) else getattr(obj, n, None)
        if value is not None:
            return value
    return None


def load_kpi_formulas() -> list[KpiFormula] | None:
    """The KPI catalogue (``schemas.kpi.load_kpis()``), or None while that module does not exist."""
    try:
        module = importlib.import_module("schemas.kpi")
    except ModuleNotFoundError as exc:
        if exc.name in ("schemas.kpi", "schemas"):
            return None
        raise
    kpi_file = getattr(module, "KPI_FILE", None)
    if isinstance(kpi_file, Path) and not kpi_file.exists():
        return None
    loaded = module.load_kpis()
    items = loaded.values() if isinstance(loaded, Mapping) else loaded
    items = getattr(items, "kpis", items)
    out = []
    for k in cast(Iterable[Any], items):
        kid = _field(k, "id", "name")
        sql = _field(k, "sql", "formula", "query", "expression")
        if kid is None:
            continue
        out.append(
            KpiFormula(
                id=str(kid),
                sql=str(sql or ""),
                zh=str(_field(k, "name_zh", "zh", "title") or ""),
                en=str(_field(k, "name_en", "en") or ""),
                unit=str(_field(k, "unit") or ""),
                description=str(_field(k, "definition", "description") or ""),
                owner_department=str(_field(k, "owner_department") or ""),
            )
        )
    return out


# ------------------------------------------------------------------ python-built tables


class PythonLineage:
    """``python_lineage.yaml``, with its references resolved against the contracts and the code."""

    def __init__(
        self,
        registry: Registry,
        schema: SchemaDict,
        path: Path | None = None,
        kpi_ids: Iterable[str] = (),
    ) -> None:
        self.registry = registry
        self.schema = schema
        self.kpi_ids = list(kpi_ids)
        self.path = path or PYTHON_LINEAGE_PATH
        data = yaml.safe_load(self.path.read_text(encoding="utf-8")) or {}
        self.generators: dict[str, str] = dict(data.get("sql_generators") or {})
        self.pivots: dict[str, dict[str, str]] = dict(data.get("pivots") or {})
        self.tables: dict[str, dict[str, Any]] = dict(data.get("tables") or {})
        self._person: dict[str, dict[str, list[str]]] | None = None

    def person_record_columns(self) -> dict[str, dict[str, list[str]]]:
        """{elder table: {person-record attribute: staged columns it is read from}}, from the code."""
        if self._person is None:
            from assets.library.records import _record_select, elder_tables

            self._person = {
                t.name: {e.meta.output_name(): list(e.meta.root_names()) for e in _record_select(t)}
                for t in elder_tables(self.registry)
            }
        return self._person

    def resolve(self, token: str) -> tuple[set[ColumnRef], list[str]]:
        """A reference of the YAML -> the columns it stands for (and problems)."""
        head, _, rest = token.partition(".")
        if head == "person_record":
            attrs = IDENTITY_ATTRIBUTES if rest == "*" else (rest,)
            out: set[ColumnRef] = set()
            for table, columns in self.person_record_columns().items():
                for attr in attrs:
                    if attr not in columns and rest != "*":
                        return set(), [f"{token}: identity resolution has no attribute {attr!r}"]
                    out |= {ColumnRef("staged", table, c) for c in columns.get(attr, [])}
            return out, []
        if head == "kpi":  # kpi.<id>.<column> or kpi.*.<column>: the KPI formulas' outputs
            kpi, _, column = rest.partition(".")
            if column not in KPI_COLUMNS:
                return set(), [f"{token}: a KPI formula returns {', '.join(KPI_COLUMNS)}, not {column!r}"]
            ids = self.kpi_ids if kpi == "*" else [kpi]
            if kpi != "*" and kpi not in self.kpi_ids:
                return set(), [f"{token}: no KPI {kpi!r} in schemas/kpis.yaml"]
            return {ColumnRef("kpi", k, column) for k in ids}, []
        if head == "elder_tables":
            tables = self.person_record_columns()
            refs = {ColumnRef("staged", t, rest) for t in tables if rest in self.schema["staged"][t]}
            return refs, ([] if refs else [f"{token}: no elder-bearing staged table has {rest!r}"])
        try:
            ref = ColumnRef.parse(token)
        except ValueError as exc:
            return set(), [str(exc)]
        if ref.zone == "ops":  # the operational store: an origin outside the lake
            return {ref}, []
        known = self.schema.get(ref.zone, {}).get(ref.table)
        if known is None:
            return set(), [f"{token}: no table {ref.qualified_table}"]
        if ref.column not in known:
            return set(), [f"{token}: {ref.qualified_table} has no column {ref.column!r}"]
        return {ref}, []

    def declared(self, zone: str, name: str, declared_columns: list[str]) -> TableLineage:
        """A table's lineage from the ``tables:`` mapping."""
        lineage = TableLineage(table=f"{zone}.{name}", origin="python", source=str(self.path.name))
        mapping = dict(self.tables[name] or {})
        rows: set[ColumnRef] = set()
        for token in mapping.pop(ROWS_KEY, None) or []:
            found, problems = self.resolve(str(token))
            rows |= found
            lineage.problems += [f"{ROWS_KEY}: {p}" for p in problems]
        lineage.conditions = frozenset(rows)
        for column, spec in mapping.items():
            kinds: dict[str, Any] = spec if isinstance(spec, dict) else {"value": spec}
            entry: dict[EdgeKind, frozenset[ColumnRef]] = {}
            for kind, tokens in kinds.items():
                if kind not in EDGE_KINDS:
                    lineage.problems.append(f"{column}: unknown edge kind {kind!r}")
                    continue
                refs: set[ColumnRef] = set()
                for token in tokens or []:
                    found, problems = self.resolve(str(token))
                    refs |= found
                    lineage.problems += [f"{column}: {p}" for p in problems]
                entry[kind] = frozenset(refs)
            lineage.columns[column] = entry
        missing = [c for c in declared_columns if c not in mapping]
        extra = [c for c in mapping if c not in declared_columns]
        if missing:
            lineage.problems.append(
                f"columns without declared lineage ({self.path.name}): " + ", ".join(missing)
            )
        if extra:
            lineage.problems.append(
                "lineage declared for columns the contract does not have: " + ", ".join(extra)
            )
        return lineage

    def pivot_columns(self, name: str) -> dict[str, frozenset[ColumnRef]]:
        """``value[key]`` -> its sources, for a key-value table."""
        spec = self.pivots[name]
        if spec.get("keys_from") == "kpis":  # one row per KPI: value[<kpi id>] <- that formula's value
            return {f"{spec['value']}[{k}]": frozenset({ColumnRef("kpi", k, "value")}) for k in self.kpi_ids}
        if spec.get("keys_from") != "survivorship":
            return {}
        from assets.library.golden import ID_DERIVED, load_rules, source_column

        value = spec["value"]
        out: dict[str, frozenset[ColumnRef]] = {}
        for attr, rule in load_rules().attributes.items():
            refs: set[ColumnRef] = set()
            for src in rule.sources:
                table, column = source_column(src, attr)
                refs.add(ColumnRef("staged", table, column))
                derived = ID_DERIVED.get(attr)
                if (
                    rule.rule == "validated_id"
                    and derived
                    and derived in self.schema["staged"].get(table, {})
                ):
                    refs.add(ColumnRef("staged", table, derived))
            out[f"{value}[{attr}]"] = frozenset(refs)
        return out

    def pivot_map(self, zones: Mapping[str, str]) -> dict[str, tuple[str, str]]:
        return {f"{zones.get(n, 'library')}.{n}": (p["key"], p["value"]) for n, p in self.pivots.items()}

    def generated_sql(self, name: str) -> str:
        """Run the table's SQL generator: ``f(registry)`` when it takes a parameter, else ``f()``."""
        module, _, func = self.generators[name].partition(":")
        fn = cast(Callable[..., str], getattr(importlib.import_module(module), func))
        takes_args = any(
            p.default is inspect.Parameter.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
            for p in inspect.signature(fn).parameters.values()
        )
        return fn(self.registry) if takes_args else fn()


# ------------------------------------------------------------------ the graph


def staging_lineage(registry: Registry, schema: SchemaDict) -> list[TableLineage]:
    """``staged.<t>`` <- ``raw.<t>``: one hop per column (staging types and normalises in place)."""
    out = []
    for _, table in registry.tables():
        raw = schema["raw"][table.name]
        lineage = TableLineage(table=f"staged.{table.name}", origin="staging", source="assets/staging")
        for column in schema["staged"][table.name]:
            if column in ("id_birth_date", "id_sex"):
                deps = {ColumnRef("raw", table.name, "id_number")}
            elif column == "_delivery_date":
                deps = {ColumnRef("raw", table.name, "_source_file")}  # the date in the file's name
            elif column in raw:
                deps = {ColumnRef("raw", table.name, column)}
            else:
                deps = set()  # _flags: written by staging itself
            lineage.columns[column] = {"value": frozenset(deps)}
        out.append(lineage)
    return out


_GRAPHS: dict[int, tuple[Registry, LineageGraph]] = {}


def lineage_graph(registry: Registry | None = None) -> LineageGraph:
    """The lake's lineage graph with the KPI formulas on disk, built once per process and registry
    object (the asset definitions and the catalogue step of a build share it; it only changes
    when the code does). Treat it as read-only."""
    registry = registry or load_registry()
    hit = _GRAPHS.get(id(registry))
    if hit is None or hit[0] is not registry:
        hit = (registry, build_lineage_graph(registry))
        _GRAPHS[id(registry)] = hit
    return hit[1]


def build_lineage_graph(
    registry: Registry,
    *,
    sql_dirs: Mapping[str, Path] | None = None,
    kpis: Iterable[KpiFormula] | None = None,
    python_lineage: Path | None = None,
) -> LineageGraph:
    """Every table's column lineage, from the contracts, the SQL on disk, the declared mapping
    and the KPI formulas (``kpis=None``: discovered; pass ``[]`` for none)."""
    schema = contract_schema(registry)
    zones = table_zones(registry)
    graph = LineageGraph(zones=zones)
    for lineage in staging_lineage(registry, schema):
        graph.add(lineage)
    dirs = dict(sql_dirs) if sql_dirs is not None else default_sql_dirs()
    formulas = load_kpi_formulas() if kpis is None else list(kpis)
    py = PythonLineage(registry, schema, python_lineage, kpi_ids=[k.id for k in formulas or []])
    pivots = py.pivot_map(zones)
    for dataset, table in registry.derived_tables():
        qualified = f"{dataset.zone}.{table.name}"
        sql_file = dirs.get(dataset.zone, Path("/nonexistent")) / f"{table.name}.sql"
        if table.build == "sql":
            if sql_file.is_file():
                lineage = sql_table_lineage(
                    qualified,
                    sql_file.read_text(encoding="utf-8"),
                    schema,
                    declared_columns=table.column_names,
                    default_zone=zones,
                    source=_display(sql_file),
                    pivots=pivots,
                )
            else:
                lineage = TableLineage(table=qualified, origin="none")
                lineage.problems.append(f"SQL file missing: {_display(sql_file)}")
        elif table.name in py.generators:
            try:
                sql = py.generated_sql(table.name)
            except Exception as exc:  # a generator failing is a problem of this table, not of the catalogue
                lineage = TableLineage(table=qualified, origin="none")
                lineage.problems.append(f"SQL generator {py.generators[table.name]} failed: {exc}")
            else:
                lineage = sql_table_lineage(
                    qualified,
                    sql,
                    schema,
                    declared_columns=table.column_names,
                    default_zone=zones,
                    source=py.generators[table.name],
                    origin="python",
                    pivots=pivots,
                )
        elif table.name in py.tables:
            lineage = py.declared(dataset.zone, table.name, table.column_names)
        else:
            lineage = TableLineage(table=qualified, origin="none")
            lineage.problems.append(f"build: python without declared lineage in {py.path.name}")
        if table.name in py.pivots:
            for column, refs in py.pivot_columns(table.name).items():
                lineage.columns[column] = {"value": refs}
        graph.add(lineage)
    for zone, directory in dirs.items():
        for stem, path in iter_sql_files(directory):
            if zones.get(stem) != zone:
                orphan = TableLineage(table=f"{zone}.{stem}", origin="none", source=_display(path))
                orphan.problems.append("SQL file for a table no contract declares")
                graph.add(orphan)
    for kpi in formulas or []:
        graph.add(kpi_lineage(kpi, schema, zones, pivots))
    return graph


def kpi_lineage(
    kpi: KpiFormula,
    schema: SchemaDict,
    zones: Mapping[str, str],
    pivots: Mapping[str, tuple[str, str]] | None = None,
) -> TableLineage:
    if not kpi.sql.strip():
        lineage = TableLineage(table=f"kpi.{kpi.id}", origin="kpi")
        lineage.problems.append("KPI without a SQL formula")
        return lineage
    return sql_table_lineage(
        f"kpi.{kpi.id}",
        kpi.sql,
        schema,
        default_zone=zones,
        source="schemas/kpis.yaml",
        origin="kpi",
        pivots=pivots,
    )


def _display(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(REPO))
    except ValueError:
        return str(path)

"""What every asset shows in the Dagster UI, from the contracts and the lineage graph.

Helpers for the asset factories (raw, staged, library, marts), keyed by zone and
table name:

* :func:`asset_metadata` - ``dagster/column_schema`` (every column with its Chinese
  label, type, PII class, constraints), ``dagster/column_lineage`` (derived and
  staged tables: each column's upstream columns as ``TableColumnDep`` s),
  ``dagster/table_name``, the owner department, Chinese name, open-data category,
  sensitivity and the PII columns;
* :func:`tags` - ``zone``, ``pii`` (yes/no), ``pii_class`` (the strongest class),
  ``open_data``, ``sensitivity``, ``table_kind`` and the source system or data set,
  every value valid as a Dagster tag value (``[A-Za-z0-9_.-]{0,63}``);
* :func:`owners` - ``team:<owner department>``, the department's Chinese name as the
  contracts give it (Dagster takes any non-empty text after ``team:``; the users are
  Chinese civil servants, so the UI shows 区民政局（养老服务科）, not a slug);
* :func:`kinds` - storage and engine: ``parquet`` plus ``polars`` / ``duckdb`` /
  ``sql`` / ``python`` by how the zone builds the table;
* :func:`spec_fields` - all four, for ``dg.AssetSpec(..., **spec_fields(...))``.

The lineage graph is built once per process and registry (:func:`lineage_graph`),
from the SQL files on disk when the definitions load. Nothing here imports Great
Expectations (the definitions load without it).
"""

from __future__ import annotations

import re
from typing import Any

import dagster as dg

from catalog.graph import lineage_graph, type_name
from catalog.lineage import ColumnRef, LineageGraph
from catalog.roles import department_slug
from schemas.contract import Column, DerivedTable, Table
from schemas.registry import Registry, load_registry

_TAG_VALUE = re.compile(r"^[A-Za-z0-9_.-]{0,63}$")
PII_RANK = {"none": 0, "quasi_identifier": 1, "sensitive": 2, "direct_identifier": 3}
PII_ZH = {
    "direct_identifier": "直接标识符",
    "quasi_identifier": "准标识符",
    "sensitive": "敏感个人信息",
    "none": "无",
}
ZONES = ("raw", "staged", "library", "marts")




def asset_key(qualified: str) -> dg.AssetKey:
    """``staged.muni_elders`` -> ``AssetKey(["staged", "muni_elders"])`` (the factories' keys)."""
    zone, _, name = qualified.partition(".")
    return dg.AssetKey([zone, name])


def _resolve(table: str, zone: str | None, registry: Registry) -> tuple[str, Table | DerivedTable]:
    """(zone, contract) of ``table``; ``zone`` defaults to where the contracts put it."""
    if "." in table:
        zone, _, table = table.partition(".")
    zone = zone or registry.zone_of(table)
    if zone in ("raw", "staged"):
        return zone, registry.table(table)
    if zone in ("library", "marts"):
        return zone, registry.derived(table)
    raise ValueError(f"no Dagster asset zone {zone!r} (expected one of {ZONES})")


def safe_tag_value(value: str) -> str:
    """A Dagster tag value: ``[A-Za-z0-9_.-]``, at most 63 characters."""
    cleaned = re.sub(r"[^A-Za-z0-9_.-]+", "_", value).strip("_")[:63]
    assert _TAG_VALUE.match(cleaned)
    return cleaned


def _strongest_pii(columns: list[Column]) -> str:
    return max((c.pii for c in columns), key=lambda p: PII_RANK[p], default="none")


def tags(table: str, zone: str | None = None, registry: Registry | None = None) -> dict[str, str]:
    registry = registry or load_registry()
    zone, contract = _resolve(table, zone, registry)
    out = {
        "zone": zone,
        "pii": "yes" if any(c.pii != "none" for c in contract.columns) else "no",
        "pii_class": _strongest_pii(contract.columns),
        "open_data": contract.open_data,
        "sensitivity": contract.sensitivity,
        "table_kind": contract.kind,
    }
    if isinstance(contract, Table):
        out["source_system"] = registry.system_of(contract.name).name
    else:
        out["dataset"] = registry.dataset_of(contract.name).name
        out["build"] = contract.build
    return {k: safe_tag_value(v) for k, v in out.items()}


def owner_department(table: str, zone: str | None = None, registry: Registry | None = None) -> str:
    registry = registry or load_registry()
    _, contract = _resolve(table, zone, registry)
    if isinstance(contract, Table):
        return registry.system_of(contract.name).table_owner(contract)
    return registry.dataset_of(contract.name).table_owner(contract)


def owners(table: str, zone: str | None = None, registry: Registry | None = None) -> list[str]:
    """``["team:区民政局（养老服务科）"]``: Dagster owners are e-mails or ``team:<name>``, any
    non-empty name (``dagster._core.definitions.utils.is_valid_owner``). The ASCII team name
    (``roles.yaml`` ``departments``) is :func:`owner_team`."""
    return [f"team:{owner_department(table, zone, registry)}"]


def owner_team(table: str, zone: str | None = None, registry: Registry | None = None) -> str:
    """The owner department's ASCII team name (``roles.yaml``), e.g. ``yp-mca-elder-services``."""
    return department_slug(owner_department(table, zone, registry))


def kinds(table: str, zone: str | None = None, registry: Registry | None = None) -> set[str]:
    registry = registry or load_registry()
    zone, contract = _resolve(table, zone, registry)
    if zone == "raw":
        return {"polars", "parquet"}
    if zone == "staged":
        return {"polars", "parquet", "duckdb"}
    assert isinstance(contract, DerivedTable)
    return {"duckdb", "parquet", "sql" if contract.build == "sql" else "python"}


def _column_description(c: Column, zone: str) -> str:
    parts = [c.zh]
    if zone == "raw":
        parts.append(f"源字段「{c.source}」，规范类型 {c.type}，原始层保存为文本")
    elif c.source != c.name:
        parts.append(f"源字段「{c.source}」")
    if not c.nullable:
        parts.append("必填")
    if c.codelist:
        parts.append(f"代码表 {c.codelist}")
    parts.append(f"个人信息分类 {PII_ZH[c.pii]}（{c.pii}）")
    if c.description:
        parts.append(c.description)
    return "；".join(parts)


def column_schema(table: str, zone: str | None = None, registry: Registry | None = None) -> dg.TableSchema:
    """The table's columns as it is stored in its zone (raw: all text plus lineage columns;
    staged: typed plus derived identity, lineage and flags; library/marts: the contract)."""
    registry = registry or load_registry()
    zone, contract = _resolve(table, zone, registry)
    declared = {c.name: c for c in contract.columns}
    if zone in ("raw", "staged"):
        from assets.ingest.raw import raw_schema
        from assets.staged_assets import DERIVED_ZH
        from assets.staging.stage import staged_schema

        assert isinstance(contract, Table)
        stored = raw_schema(contract) if zone == "raw" else staged_schema(contract)
        names_types = [
            (n, "string" if zone == "raw" else declared[n].type) if n in declared else (n, type_name(t))
            for n, t in stored.items()
        ]
        extra = {**DERIVED_ZH, "_extra": "合同未声明的字段（JSON 文本）"}
    else:
        names_types = [(c.name, c.type) for c in contract.columns]
        extra = {}
    columns = []
    for name, type_ in names_types:
        c = declared.get(name)
        if c is None:
            columns.append(dg.TableColumn(name=name, type=type_, description=extra.get(name, "")))
            continue
        constraints = (
            dg.TableColumnConstraints(nullable=c.nullable, unique=c.unique) if zone != "raw" else None
        )
        columns.append(
            dg.TableColumn(
                name=name,
                type=type_,
                description=_column_description(c, zone),
                constraints=constraints,
                tags={"pii": c.pii},
            )
        )
    return dg.TableSchema(columns=columns)


def column_lineage(
    table: str, zone: str | None = None, registry: Registry | None = None, graph: LineageGraph | None = None
) -> dg.TableColumnLineage | None:
    """Each column's upstream columns (value and key edges; one hop) as Dagster deps.

    None for raw tables (landing files are not assets) and for tables without lineage.
    The per-key lineage of a key-value table (``value[name]``, catalogue only) is
    given to Dagster as its real column (``value``), which is what the asset stores.
    A KPI formula (``kpi.<id>``, not an asset) stands for the columns it reads.
    """
    registry = registry or load_registry()
    zone, contract = _resolve(table, zone, registry)
    if zone == "raw":
        return None
    graph = graph or lineage_graph(registry)
    lineage = graph.tables.get(f"{zone}.{contract.name}")
    if lineage is None:
        return None
    deps: dict[str, list[dg.TableColumnDep]] = {}
    for column in lineage.columns:
        if "[" in column:
            continue
        refs = sorted(_through_kpis(graph, lineage.deps(column, ("value", "key"))))
        found = []
        for ref in refs:
            if ref.zone not in ZONES:  # operational store, KPI engine: not assets
                continue
            name = ref.column.split("[", 1)[0]
            dep = dg.TableColumnDep(asset_key=asset_key(ref.qualified_table), column_name=name)
            if dep not in found:
                found.append(dep)
        if found:
            deps[column] = found
    return dg.TableColumnLineage(deps_by_column=deps) if deps else None


def _through_kpis(graph: LineageGraph, refs: frozenset[ColumnRef]) -> set[ColumnRef]:
    out: set[ColumnRef] = set()
    for ref in refs:
        out |= set(graph.upstream(ref, ("value", "key"))) if ref.zone == "kpi" else {ref}
    return out


def asset_metadata(
    table: str, zone: str | None = None, registry: Registry | None = None, graph: LineageGraph | None = None
) -> dict[str, Any]:
    """Definition metadata of the asset of ``table`` in ``zone`` (default: its contract's zone)."""
    registry = registry or load_registry()
    zone, contract = _resolve(table, zone, registry)
    pii = [
        {"column": c.name, "zh": c.zh, "pii": c.pii, "semantic": c.semantic}
        for c in contract.columns
        if c.pii != "none"
    ]
    meta: dict[str, Any] = {
        "dagster/column_schema": column_schema(contract.name, zone, registry),
        "dagster/table_name": f"{zone}.{contract.name}",
        "table_zh": contract.zh,
        "table_en": contract.en,
        "owner_department": owner_department(contract.name, zone, registry),
        "open_data": contract.open_data,
        "sensitivity": contract.sensitivity,
        "primary_key": dg.MetadataValue.json(list(contract.primary_key)),
        "pii_columns": dg.MetadataValue.json(pii),
    }
    if isinstance(contract, Table):
        from assets.ingest.raw import template_glob

        system = registry.system_of(contract.name)
        d = contract.delivery
        meta["source_system"] = f"{system.zh}（{system.name}）"
        meta.update(
            {
                "delivery_format": d.format,
                "delivery_encoding": d.encoding,
                "delivery_frequency": d.frequency,
                "landing_template": f"landing/{d.path}",
                "landing_glob": f"landing/{template_glob(d.path)}",
            }
        )
    else:
        dataset = registry.dataset_of(contract.name)
        meta["dataset"] = f"{dataset.zh}（{dataset.name}）"
        meta["build"] = contract.build
        meta["upstream"] = dg.MetadataValue.json(list(contract.upstream))
    lineage = column_lineage(contract.name, zone, registry, graph)
    if lineage is not None:
        meta["dagster/column_lineage"] = lineage
    if graph is not None or zone != "raw":
        g = graph or lineage_graph(registry)
        problems = (
            g.tables[f"{zone}.{contract.name}"].problems if f"{zone}.{contract.name}" in g.tables else []
        )
        if problems:
            meta["lineage_problems"] = dg.MetadataValue.json(list(problems))
    return meta


def spec_fields(
    table: str, zone: str | None = None, registry: Registry | None = None, graph: LineageGraph | None = None
) -> dict[str, Any]:
    """``owners``, ``kinds``, ``tags`` and ``metadata`` of the asset of ``table`` in ``zone``."""
    registry = registry or load_registry()
    return {
        "owners": owners(table, zone, registry),
        "kinds": kinds(table, zone, registry),
        "tags": tags(table, zone, registry),
        "metadata": asset_metadata(table, zone, registry, graph),
    }

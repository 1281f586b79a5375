"""The data resource catalogue (数据资源目录): every dataset of every zone, from contracts + runtime facts.

:func:`build_catalog` reads

* the contracts (names, descriptions, owners, source systems, frequencies, PII
  classes, open-data categories, sensitivity),
* the lake (files, row counts from Parquet footers, last update),
* the ingest ledger through :func:`quality.scorecard.source_health` (last
  delivery against the declared frequency),
* the quality history (latest score per staged table),
* the warehouse's views (opened read-only; skipped when a build holds the lock),
* the lineage graph (:mod:`catalog.graph`), the scenario catalogue and the KPIs,

and returns a :class:`Catalog`; :func:`write_catalog` writes it as JSON, flat
Parquet tables for the dashboards, and a static searchable HTML site
(:mod:`catalog.site`). Nothing here writes to the lake except ``write_catalog``,
and only under its output directory.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import pyarrow as pa
from pydantic import BaseModel, Field

from catalog.graph import KpiFormula, build_lineage_graph, lineage_graph, load_kpi_formulas, type_name
from catalog.lineage import ColumnRef, LineageGraph
from catalog.roles import RoleGrant, RolesConfig, department_slug, load_roles
from catalog.scenarios import (
    ScenarioCatalogue,
    expand_age_bands,
    expanded_streets,
    load_scenarios,
    segment_names,
)
from rainbow.filefacts import row_counts
from rainbow.io import atomic_path
from rainbow.parquet import glob_files
from rainbow.settings import Lake
from schemas.contract import Column, Dataset, DerivedTable, SourceSystem, Table
from schemas.registry import Registry, load_registry

CATALOG_DIR = "catalog"  # under <lake>/marts/
FRESHNESS_ZH = {
    "fresh": "正常",
    "late": "延迟交付",
    "silent": "已沉默",
    "zombie": "僵尸系统",
    "no_delivery": "尚无交付",
    "stale": "待重建（上游已更新）",
    "not_built": "未构建",
    "unknown": "未知",
}
FREQUENCY_ZH = {
    "hourly": "每小时",
    "daily": "每日",
    "weekly": "每周",
    "monthly": "每月",
    "quarterly": "每季度",
    "once": "一次性",
    "nightly": "每日（夜间构建 02:00）",
    "on_demand": "按需",
}
ZONE_ZH = {
    "landing": "接入区（原样交付）",
    "raw": "原始层",
    "staged": "标准化层",
    "quarantine": "隔离区",
    "library": "养老主题库",
    "marts": "集市层",
    "exports": "开放数据包",
}
PII_ZH = {"direct_identifier": "直接标识符", "quasi_identifier": "准标识符", "sensitive": "敏感个人信息"}
# Datasets the platform writes into marts/ without a contract (operational history).
PLATFORM_DATASETS: dict[str, tuple[str, str, str]] = {
    "quality_history": (
        "数据质量评分历史",
        "Quality history",
        "每次质量检查的规则结果（按表、分区、运行日），以及来源系统健康度。",
    ),
    "quality_report": ("数据质量报告", "Quality report", "静态 HTML 质量报告，由每次质量检查重写。"),
}


# ------------------------------------------------------------------ model


class Freshness(BaseModel):
    status: str
    status_zh: str
    last_delivery: date | None = None
    days_since: int | None = None
    as_of: date | None = None
    note: str = ""


class Quality(BaseModel):
    score: float | None
    status: str | None
    partition: str | None = None
    run_date: date | None = None
    families: dict[str, float | None] = Field(default_factory=dict)


class ColumnEntry(BaseModel):
    name: str
    zh: str = ""
    type: str = ""
    pii: str = "none"
    semantic: str | None = None
    codelist: str | None = None
    nullable: bool = True
    description: str = ""
    source_field: str | None = None  # the header / key as the source system delivers it
    upstream: list[str] = Field(default_factory=list)  # one hop: value (and key) deps
    origins: list[str] = Field(default_factory=list)  # traced to staged (value)
    key_origins: list[str] = Field(default_factory=list)  # identity attributes behind a key
    downstream: list[str] = Field(default_factory=list)  # every column its value flows into


class PiiColumn(BaseModel):
    column: str
    zh: str
    pii: str
    pii_zh: str
    semantic: str | None = None


class DatasetEntry(BaseModel):
    id: str  # zone.table
    zone: str
    zone_zh: str
    table: str
    name_zh: str
    name_en: str
    description: str
    declared: bool = True  # in the contracts
    group: str = ""  # source system / library data set
    group_zh: str = ""
    owner_department: str = ""
    owner_team: str = ""
    source_system: str = ""
    source_system_zh: str = ""
    build: str = ""  # delivered / ingest / staging / sql / python / platform
    kind: str = ""
    grain: str = ""
    primary_key: list[str] = Field(default_factory=list)
    frequency: str = ""
    frequency_zh: str = ""
    location: str = ""  # relative to the lake root
    view: str | None = None  # DuckDB view
    exists: bool = False  # files on disk
    view_exists: bool | None = None  # None: warehouse not readable now
    status: str = ""  # built / not built
    files: int = 0
    row_count: int | None = None
    extra_facts: dict[str, Any] = Field(default_factory=dict)
    last_update: datetime | None = None
    freshness: Freshness
    quality: Quality | None = None
    pii: bool = False
    pii_columns: list[PiiColumn] = Field(default_factory=list)
    open_data: str = ""
    sensitivity: str = ""
    roles: list[RoleGrant] = Field(default_factory=list)
    columns: list[ColumnEntry] = Field(default_factory=list)
    upstream_tables: list[str] = Field(default_factory=list)
    downstream_tables: list[str] = Field(default_factory=list)
    row_conditions: list[str] = Field(default_factory=list)  # columns deciding which rows exist
    lineage_source: str = ""
    lineage_problems: list[str] = Field(default_factory=list)
    scenarios: list[str] = Field(default_factory=list)
    kpis: list[str] = Field(default_factory=list)


class KpiEntry(BaseModel):
    id: str
    name_zh: str
    name_en: str
    unit: str
    owner_department: str
    description: str
    formula: str
    reads: list[str]
    value_sources: list[str]  # origins of the value column
    sources: list[str]  # origins of the value and of the rows counted (conditions)
    problems: list[str]
    scenarios: list[str]


class ScenarioEntry(BaseModel):
    id: str
    annex: int | None
    name: str
    en: str
    class_: str = Field(alias="class")
    description: str
    age_bands: list[str]  # 5-year band codes
    age_label: str  # as declared, e.g. 80+
    vitality: list[str]  # segment codes of assets/marts/portrait_rules.yaml (VITAL, ASSISTED, CARE)
    vitality_zh: list[str]  # 活力 / 介助 / 介护
    datasets: list[str]  # zone.table
    kpis: list[str]
    lead_department: str
    partner_departments: list[str]
    pilot_streets: list[str]
    pilot_streets_zh: list[str]
    legal_basis: list[str]

    model_config = {"populate_by_name": True}


class Catalog(BaseModel):
    generated_at: datetime
    lake_root: str
    as_of: date | None
    datasets: list[DatasetEntry]
    kpis: list[KpiEntry]
    scenarios: list[ScenarioEntry]
    roles: dict[str, str]
    problems: list[str]
    warnings: list[str]

    def dataset(self, dataset_id: str) -> DatasetEntry:
        for d in self.datasets:
            if d.id == dataset_id:
                return d
        raise KeyError(dataset_id)


# ------------------------------------------------------------------ runtime facts


def _parquet_facts(files: Sequence[Path], lake: Lake) -> tuple[int | None, datetime | None]:
    """(rows from the Parquet footers, newest modification time) of ``files`` (decrypting footers)."""
    if not files:
        return None, None
    unreadable = (OSError, ValueError, pa.ArrowException)  # a file being replaced: count the rest
    # footers are read only for files changed since the last catalogue (a year is ~20,000 files)
    try:
        rows = sum(row_counts(lake, files))
    except unreadable:
        rows = 0
        for f in files:
            with contextlib.suppress(*unreadable):
                rows += row_counts(lake, [f])[0]
    newest = max(f.stat().st_mtime for f in files)
    return rows, datetime.fromtimestamp(newest, UTC)


def _files_facts(files: Sequence[Path]) -> tuple[int, datetime | None]:
    if not files:
        return 0, None
    return sum(f.stat().st_size for f in files), datetime.fromtimestamp(
        max(f.stat().st_mtime for f in files), UTC
    )


def warehouse_views(lake: Lake) -> set[str] | None:
    """``schema.view`` of every view in the warehouse, or None when it cannot be opened now."""
    if not lake.warehouse.exists():
        return set()
    try:
        con = duckdb.connect(str(lake.warehouse), read_only=True)
    except duckdb.Error:  # a build holds the write lock
        return None
    try:
        rows = con.execute("SELECT schema_name, view_name FROM duckdb_views() WHERE NOT internal").fetchall()
    finally:
        con.close()
    return {f"{s}.{v}" for s, v in rows}


def _quality_by_table(lake: Lake) -> dict[str, Quality]:
    from quality.scorecard import latest_partition_per_table, load_thresholds, read_history, scorecard

    history = read_history(lake, newest_partitions=1)
    if history.is_empty():
        return {}
    card = scorecard(latest_partition_per_table(history), load_thresholds())
    out: dict[str, Quality] = {}
    rank = {"green": 0, "amber": 1, "red": 2}
    for table in card["table"].unique().to_list():
        rows = card.filter(pl.col("table") == table)
        scores = [s for s in rows["score"].to_list() if s is not None]
        statuses = [s for s in rows["status"].to_list() if s is not None]
        out[table] = Quality(
            score=round(sum(scores) / len(scores), 4) if scores else None,
            status=max(statuses, key=lambda s: rank.get(s, 0)) if statuses else None,
            partition=rows["partition"][0],
            run_date=rows["run_date"][0],
            families={
                f: (round(s, 4) if s is not None else None)
                for f, s in rows.select("family", "score").iter_rows()
            },
        )
    return out


def _health_by_table(lake: Lake, registry: Registry) -> tuple[dict[str, dict[str, Any]], date | None]:
    from quality.scorecard import load_thresholds, source_health

    if not (lake.raw / "_ledger").exists():
        return {}, None
    health = source_health(lake, registry, load_thresholds())
    rows = {r["table"]: r for r in health.iter_rows(named=True)}
    as_of = health["as_of"][0] if health.height else None
    return rows, as_of


def _source_freshness(health: dict[str, Any] | None, as_of: date | None) -> Freshness:
    if health is None or health.get("last_delivery") is None:
        return Freshness(status="no_delivery", status_zh=FRESHNESS_ZH["no_delivery"], as_of=as_of)
    if health["system_zombie"]:
        status = "zombie"
    elif health["silent"]:
        status = "silent"
    elif health["late"]:
        status = "late"
    else:
        status = "fresh"
    note = "数据量异常" if health.get("volume_anomaly") else ""
    return Freshness(
        status=status,
        status_zh=FRESHNESS_ZH[status],
        last_delivery=health["last_delivery"],
        days_since=health["days_since"],
        as_of=health["as_of"],
        note=note,
    )


# ------------------------------------------------------------------ columns and lineage


def _pii_columns(columns: Iterable[Column]) -> list[PiiColumn]:
    return [
        PiiColumn(column=c.name, zh=c.zh, pii=c.pii, pii_zh=PII_ZH[c.pii], semantic=c.semantic)
        for c in columns
        if c.pii != "none"
    ]


def _strs(refs: Iterable[ColumnRef]) -> list[str]:
    return sorted(str(r) for r in refs)


def _column_entries(
    zone: str,
    table: str,
    names_types: Sequence[tuple[str, str]],
    contract: dict[str, Column],
    graph: LineageGraph,
    extra_zh: dict[str, str] | None = None,
    source_fields: bool = False,
) -> list[ColumnEntry]:
    extra_zh = extra_zh or {}
    out = []
    has_lineage = f"{zone}.{table}" in graph.tables
    for name, type_ in names_types:
        c = contract.get(name)
        entry = ColumnEntry(
            name=name,
            zh=c.zh if c else extra_zh.get(name, ""),
            type=type_,
            pii=c.pii if c else "none",
            semantic=c.semantic if c else None,
            codelist=c.codelist if c else None,
            nullable=c.nullable if c else True,
            description=c.description if c else "",
            source_field=c.source if (c and source_fields) else None,
        )
        ref = ColumnRef(zone, table, name)
        if has_lineage:
            entry.upstream = _strs(graph.upstream(ref, ("value", "key")))
            entry.origins = _strs(graph.trace(f"{zone}.{table}", name))
            keyed = graph.trace(f"{zone}.{table}", name, keys=True)
            entry.key_origins = _strs(keyed - set(graph.trace(f"{zone}.{table}", name)))
        if zone in ("raw", "staged", "library", "marts"):
            entry.downstream = _strs(graph.impact(f"{zone}.{table}", name))
        out.append(entry)
    return out


# ------------------------------------------------------------------ the entries


def _glob(folder: Path, pattern: str) -> list[Path]:
    """Files (no dot files) under ``folder`` matching ``pattern``: the lake's scandir walk, not
    ``Path.glob`` (a year is ~30,000 files over the zones; every entry globs its folders)."""
    return sorted(glob_files(folder / pattern))


class _Builder:
    def __init__(
        self,
        lake: Lake,
        registry: Registry,
        graph: LineageGraph,
        roles: RolesConfig,
        scenarios: ScenarioCatalogue,
        kpi_reads: dict[str, list[str]],
    ) -> None:
        self.lake = lake
        self.registry = registry
        self.graph = graph
        self.roles = roles
        self.scenarios = scenarios
        self.kpi_reads = kpi_reads
        self.views = warehouse_views(lake)
        self.quality = _quality_by_table(lake)
        self.health, self.as_of = _health_by_table(lake, registry)

    def _common(self, zone: str, table: str, view: str | None) -> dict[str, Any]:
        view_exists = None if self.views is None or view is None else view in self.views
        uses = self.scenarios.using_dataset(table) if zone in ("staged", "library", "marts") else []
        kpis = sorted(k for k, reads in self.kpi_reads.items() if f"{zone}.{table}" in reads)
        return {
            "zone": zone,
            "zone_zh": ZONE_ZH[zone],
            "view": view,
            "view_exists": view_exists,
            "scenarios": uses,
            "kpis": kpis,
        }

    def _lineage_fields(self, qualified: str) -> dict[str, Any]:
        lin = self.graph.tables.get(qualified)
        if lin is None:
            return {"downstream_tables": self.graph.downstream_tables(qualified)}
        return {
            "upstream_tables": lin.upstream_tables(),
            "downstream_tables": self.graph.downstream_tables(qualified),
            "row_conditions": _strs(lin.conditions),
            "lineage_source": lin.source,
            "lineage_problems": list(lin.problems),
        }

    def source_entries(self, system: SourceSystem, table: Table) -> list[DatasetEntry]:
        from assets.ingest.raw import raw_schema, template_glob
        from assets.staged_assets import DERIVED_ZH
        from assets.staging.stage import quarantine_schema, staged_schema

        owner = system.table_owner(table)
        base: dict[str, Any] = {
            "table": table.name,
            "name_zh": table.zh,
            "name_en": table.en,
            "description": table.description,
            "group": system.name,
            "group_zh": system.zh,
            "owner_department": owner,
            "owner_team": department_slug(owner, self.roles),
            "source_system": system.name,
            "source_system_zh": system.zh,
            "kind": table.kind,
            "grain": table.grain,
            "primary_key": list(table.primary_key),
            "frequency": table.delivery.frequency,
            "frequency_zh": FREQUENCY_ZH[table.delivery.frequency],
            "open_data": table.open_data,
            "sensitivity": table.sensitivity,
            "pii": any(c.pii != "none" for c in table.columns),
            "pii_columns": _pii_columns(table.columns),
        }
        contract = {c.name: c for c in table.columns}
        freshness = _source_freshness(self.health.get(table.name), self.as_of)
        out = []

        # landing: the files as delivered
        landing_files = _glob(self.lake.landing, template_glob(table.delivery.path))
        size, newest = _files_facts(landing_files)
        by_header = [(c.source, c.type) for c in table.columns]
        out.append(
            DatasetEntry(
                id=f"landing.{table.name}",
                **base,
                **self._common("landing", table.name, None),
                build="delivered",
                location=f"landing/{table.delivery.path}",
                exists=bool(landing_files),
                status="delivered" if landing_files else "not delivered",
                files=len(landing_files),
                extra_facts={
                    "bytes": size,
                    "format": table.delivery.format,
                    "encoding": table.delivery.encoding,
                },
                last_update=newest,
                freshness=freshness,
                roles=self.roles.roles_for("landing", table.sensitivity, table.kind, table.columns),
                columns=[
                    ColumnEntry(
                        name=header,
                        zh=c.zh,
                        type=type_,
                        pii=c.pii,
                        semantic=c.semantic,
                        source_field=header,
                        description=f"规范字段 {c.name}",
                    )
                    for (header, type_), c in zip(by_header, table.columns, strict=True)
                ],
            )
        )

        # raw
        raw_dir = self.lake.raw / table.name
        raw_files = _glob(raw_dir, "*.parquet")
        broken, _ = _parquet_facts(_glob(raw_dir / "_broken", "*.parquet"), self.lake)
        rows, newest = _parquet_facts(raw_files, self.lake)
        raw_cols = [(n, "string" if n in contract else type_name(t)) for n, t in raw_schema(table).items()]
        out.append(
            DatasetEntry(
                id=f"raw.{table.name}",
                **base,
                **self._common("raw", table.name, f"raw.{table.name}"),
                build="ingest",
                location=f"raw/{table.name}/",
                exists=bool(raw_files),
                status="built" if raw_files else "not built",
                files=len(raw_files),
                row_count=rows,
                extra_facts={"broken_rows": broken or 0},
                last_update=newest,
                freshness=freshness,
                roles=self.roles.roles_for("raw", table.sensitivity, table.kind, table.columns),
                columns=_column_entries(
                    "raw", table.name, raw_cols, contract, self.graph, source_fields=True
                ),
                **self._lineage_fields(f"raw.{table.name}"),
            )
        )

        # staged
        staged_files = _glob(self.lake.staged / table.name, "**/*.parquet")
        rows, newest = _parquet_facts(staged_files, self.lake)
        partitions = len({f.parent.name for f in staged_files if f.parent.name.startswith("date=")})
        staged_cols = [
            (n, contract[n].type if n in contract else type_name(t)) for n, t in staged_schema(table).items()
        ]
        out.append(
            DatasetEntry(
                id=f"staged.{table.name}",
                **base,
                **self._common("staged", table.name, f"staged.{table.name}"),
                build="staging",
                location=f"staged/{table.name}/",
                exists=bool(staged_files),
                status="built" if staged_files else "not built",
                files=len(staged_files),
                row_count=rows,
                extra_facts={"partitions": partitions} if table.delivery.partitioned else {},
                last_update=newest,
                freshness=freshness,
                quality=self.quality.get(table.name),
                roles=self.roles.roles_for("staged", table.sensitivity, table.kind, table.columns),
                columns=_column_entries(
                    "staged",
                    table.name,
                    staged_cols,
                    contract,
                    self.graph,
                    extra_zh=DERIVED_ZH,
                    source_fields=True,
                ),
                **self._lineage_fields(f"staged.{table.name}"),
            )
        )

        # quarantine
        q_files = _glob(self.lake.staged / "_quarantine" / table.name, "**/*.parquet")
        rows, newest = _parquet_facts(q_files, self.lake)
        q_cols = [(n, type_name(t)) for n, t in quarantine_schema(table).items()]
        out.append(
            DatasetEntry(
                id=f"quarantine.{table.name}",
                **{
                    **base,
                    "name_zh": f"{table.zh}（隔离行）",
                    "name_en": f"{table.en} (quarantined rows)",
                    "description": "违反硬性规则、未进入标准化层的行：原始文本、血缘与原因代码。"
                    + table.description,
                },
                **self._common("quarantine", table.name, f"staged.{table.name}__quarantine"),
                build="staging",
                location=f"staged/_quarantine/{table.name}/",
                exists=bool(q_files),
                status="built" if q_files else "empty",
                files=len(q_files),
                row_count=rows if q_files else 0,
                last_update=newest,
                freshness=freshness,
                roles=self.roles.roles_for("quarantine", table.sensitivity, table.kind, table.columns),
                columns=[
                    ColumnEntry(
                        name=n,
                        zh=contract[n].zh if n in contract else "",
                        type=t,
                        pii=contract[n].pii if n in contract else "none",
                        semantic=contract[n].semantic if n in contract else None,
                        description="原始文本" if n in contract else "",
                    )
                    for n, t in q_cols
                ],
            )
        )
        return out

    def derived_entry(
        self, dataset: Dataset, table: DerivedTable, updated: dict[str, datetime | None]
    ) -> DatasetEntry:
        zone = dataset.zone
        owner = dataset.table_owner(table)
        files = _glob(self.lake.zone(zone) / table.name, "**/*.parquet")
        rows, newest = _parquet_facts(files, self.lake)
        contract = {c.name: c for c in table.columns}
        upstream_updates = [updated.get(u) for u in table.upstream]
        newest_upstream = max((u for u in upstream_updates if u is not None), default=None)
        if not files:
            freshness = Freshness(status="not_built", status_zh=FRESHNESS_ZH["not_built"], as_of=self.as_of)
        elif newest_upstream is not None and newest is not None and newest < newest_upstream:
            freshness = Freshness(
                status="stale",
                status_zh=FRESHNESS_ZH["stale"],
                as_of=self.as_of,
                note=f"上游最近更新 {newest_upstream:%Y-%m-%d %H:%M} UTC",
            )
        else:
            freshness = Freshness(status="fresh", status_zh=FRESHNESS_ZH["fresh"], as_of=self.as_of)
        lineage = self.graph.tables.get(f"{zone}.{table.name}")
        columns = _column_entries(
            zone, table.name, [(c.name, c.type) for c in table.columns], contract, self.graph
        )
        if lineage is not None:  # key-value tables: the per-key lineage as extra (virtual) columns
            for name in sorted(c for c in lineage.columns if "[" in c):
                columns.append(
                    ColumnEntry(
                        name=name,
                        zh=f"{name.split('[')[0]}（属性 {name.split('[')[1].rstrip(']')}）",
                        type="(virtual)",
                        pii=contract[name.split("[")[0]].pii if name.split("[")[0] in contract else "none",
                        upstream=_strs(lineage.deps(name)),
                        origins=_strs(self.graph.trace(f"{zone}.{table.name}", name)),
                        downstream=_strs(self.graph.impact(f"{zone}.{table.name}", name)),
                        description="键值表中该属性取值的血缘",
                    )
                )
        return DatasetEntry(
            id=f"{zone}.{table.name}",
            table=table.name,
            name_zh=table.zh,
            name_en=table.en,
            description=table.description,
            group=dataset.name,
            group_zh=dataset.zh,
            owner_department=owner,
            owner_team=department_slug(owner, self.roles),
            source_system="rainbow_bridge",
            source_system_zh="彩虹桥平台（加工）",
            build=table.build,
            kind=table.kind,
            grain=table.grain,
            primary_key=list(table.primary_key),
            frequency="nightly",
            frequency_zh=FREQUENCY_ZH["nightly"],
            location=f"{zone}/{table.name}/",
            exists=bool(files),
            status="built" if files else "not built",
            files=len(files),
            row_count=rows,
            last_update=newest,
            freshness=freshness,
            open_data=table.open_data,
            sensitivity=table.sensitivity,
            pii=any(c.pii != "none" for c in table.columns),
            pii_columns=_pii_columns(table.columns),
            roles=self.roles.roles_for(zone, table.sensitivity, table.kind, table.columns),
            columns=columns,
            **self._common(zone, table.name, f"{zone}.{table.name}"),
            **self._lineage_fields(f"{zone}.{table.name}"),
        )

    def undeclared_entries(self, declared_marts: set[str], skip: set[str]) -> list[DatasetEntry]:
        """Folders under marts/ and exports/ no contract declares (quality history, export packages)."""
        out = []
        for zone in ("marts", "exports"):
            root = self.lake.zone(zone)
            if not root.is_dir():
                continue
            for folder in sorted(
                p for p in root.iterdir() if p.is_dir() and not p.name.startswith((".", "_"))
            ):
                if folder.name in declared_marts or folder.name in skip:
                    continue
                files = _glob(folder, "**/*")
                parquet = [f for f in files if f.suffix == ".parquet"]
                rows, _ = _parquet_facts(parquet, self.lake)
                _, newest = _files_facts(files)
                zh, en, description = PLATFORM_DATASETS.get(
                    folder.name,
                    (folder.name, folder.name, "未在契约中声明的数据集（由平台或导出流程写入）。"),
                )
                manifest = folder / "manifest.json"
                facts: dict[str, Any] = {}
                if manifest.is_file():
                    try:
                        facts["manifest"] = json.loads(manifest.read_text(encoding="utf-8"))
                    except (ValueError, OSError):
                        facts["manifest"] = "unreadable"
                sensitivity = "internal"
                out.append(
                    DatasetEntry(
                        id=f"{zone}.{folder.name}",
                        zone=zone,
                        zone_zh=ZONE_ZH[zone],
                        table=folder.name,
                        name_zh=zh,
                        name_en=en,
                        description=description,
                        declared=False,
                        owner_department="区民政局（彩虹桥数据管理组）",
                        owner_team=department_slug("区民政局（彩虹桥数据管理组）", self.roles),
                        source_system="rainbow_bridge",
                        source_system_zh="彩虹桥平台",
                        build="platform",
                        frequency="on_demand" if zone == "exports" else "nightly",
                        frequency_zh=FREQUENCY_ZH["on_demand" if zone == "exports" else "nightly"],
                        location=f"{zone}/{folder.name}/",
                        exists=True,
                        status="built",
                        files=len(files),
                        row_count=rows,
                        extra_facts=facts,
                        last_update=newest,
                        freshness=Freshness(
                            status="unknown", status_zh=FRESHNESS_ZH["unknown"], as_of=self.as_of
                        ),
                        open_data="non_open",
                        sensitivity=sensitivity,
                        roles=self.roles.roles_for(zone, sensitivity, None, []),
                    )
                )
        return out


def _kpi_entries(
    formulas: Sequence[KpiFormula], graph: LineageGraph, scenarios: ScenarioCatalogue
) -> list[KpiEntry]:
    out = []
    for k in formulas:
        lineage = graph.tables.get(f"kpi.{k.id}")
        value_col = "value" if lineage and "value" in lineage.columns else None
        reads = lineage.upstream_tables() if lineage else []
        value_sources: set[ColumnRef] = set()
        sources: set[ColumnRef] = set()
        if lineage is not None and value_col:
            value_sources = graph.trace(f"kpi.{k.id}", value_col)
            sources = set(value_sources)
            for column in lineage.columns:
                sources |= graph.trace(f"kpi.{k.id}", column, conditions=True)
        out.append(
            KpiEntry(
                id=k.id,
                name_zh=k.zh,
                name_en=k.en,
                unit=k.unit,
                owner_department=k.owner_department,
                description=k.description,
                formula=k.sql,
                reads=[t for t in reads if not t.startswith("engine.")],
                value_sources=_strs(r for r in value_sources if r.zone != "engine"),
                sources=_strs(r for r in sources if r.zone != "engine"),
                problems=list(lineage.problems) if lineage else ["no lineage"],
                scenarios=scenarios.using_kpi(k.id),
            )
        )
    return out


def _scenario_entries(scenarios: ScenarioCatalogue, registry: Registry) -> list[ScenarioEntry]:
    bands = [v.code for v in registry.codelist("age_band").values]
    street_zh = {v.code: v.zh for v in registry.codelist("street").values}
    segment_zh = segment_names()
    out = []
    for s in scenarios.scenarios:
        streets = expanded_streets(s, registry)
        out.append(
            ScenarioEntry.model_validate(
                {
                    "id": s.id,
                    "annex": s.annex,
                    "name": s.name,
                    "en": s.en,
                    "class": s.class_,
                    "description": s.description,
                    "age_bands": expand_age_bands(s.segment.age_bands, bands),
                    "age_label": "、".join(s.segment.age_bands),
                    "vitality": list(s.segment.vitality),
                    "vitality_zh": [segment_zh.get(v, v) for v in s.segment.vitality],
                    "datasets": [f"{registry.zone_of(d)}.{d}" for d in s.datasets],
                    "kpis": list(s.kpis),
                    "lead_department": s.lead_department,
                    "partner_departments": list(s.partner_departments),
                    "pilot_streets": streets,
                    "pilot_streets_zh": [street_zh.get(c, c) for c in streets],
                    "legal_basis": list(s.legal_basis),
                }
            )
        )
    return out


def build_catalog(
    lake: Lake,
    registry: Registry | None = None,
    *,
    graph: LineageGraph | None = None,
    scenarios: ScenarioCatalogue | None = None,
    kpis: Sequence[KpiFormula] | None = None,
    now: datetime | None = None,
) -> Catalog:
    """The catalogue of ``lake``. Raises :class:`~catalog.scenarios.ScenarioError` when the
    scenario catalogue names a dataset or KPI that does not exist."""
    registry = registry or load_registry()
    warnings: list[str] = []
    formulas = list(kpis) if kpis is not None else load_kpi_formulas()
    if formulas is None:
        warnings.append("KPI 目录（schemas/kpis.yaml）尚不存在：场景中的指标未校验")
        formulas = []
    scenarios = scenarios or load_scenarios(
        registry, kpi_ids={k.id for k in formulas} if formulas else None, check_kpis=bool(formulas)
    )
    # the KPI formulas on disk: the graph the asset definitions already built in this process
    if graph is None:
        graph = lineage_graph(registry) if kpis is None else build_lineage_graph(registry, kpis=formulas)
    roles = load_roles()
    kpi_entries = _kpi_entries(formulas, graph, scenarios)
    builder = _Builder(lake, registry, graph, roles, scenarios, {k.id: k.reads for k in kpi_entries})
    datasets: list[DatasetEntry] = []
    for system, source in registry.tables():
        datasets += builder.source_entries(system, source)
    updated: dict[str, datetime | None] = {d.table: d.last_update for d in datasets if d.zone == "staged"}
    # library before marts, each in contract order; upstream times of earlier derived tables are known
    for zone in ("library", "marts"):
        for dataset, table in registry.derived_tables(zone):
            entry = builder.derived_entry(dataset, table, updated)
            updated[table.name] = entry.last_update
            datasets.append(entry)
    declared_marts = {t.name for _, t in registry.derived_tables("marts")}
    datasets += builder.undeclared_entries(declared_marts, skip={CATALOG_DIR})
    return Catalog(
        generated_at=now or datetime.now(UTC),
        lake_root=str(lake.root),
        as_of=builder.as_of,
        datasets=datasets,
        kpis=kpi_entries,
        scenarios=_scenario_entries(scenarios, registry),
        roles={name: r.zh for name, r in roles.roles.items()},
        problems=graph.problems(),
        warnings=warnings + (["数据仓库正被构建占用：视图是否存在未核对"] if builder.views is None else []),
    )


# ------------------------------------------------------------------ writing


def catalog_frames(catalog: Catalog) -> dict[str, pl.DataFrame]:
    """Flat tables for the dashboards: one row per dataset, per column, per scenario, per KPI."""
    datasets = pl.DataFrame(
        [
            {
                "id": d.id,
                "zone": d.zone,
                "table": d.table,
                "name_zh": d.name_zh,
                "name_en": d.name_en,
                "owner_department": d.owner_department,
                "source_system_zh": d.source_system_zh,
                "frequency": d.frequency,
                "status": d.status,
                "row_count": d.row_count,
                "last_update": d.last_update,
                "freshness": d.freshness.status,
                "freshness_zh": d.freshness.status_zh,
                "quality_score": d.quality.score if d.quality else None,
                "quality_status": d.quality.status if d.quality else None,
                "pii": d.pii,
                "pii_columns": len(d.pii_columns),
                "open_data": d.open_data,
                "sensitivity": d.sensitivity,
                "roles": ",".join(r.role for r in d.roles),
                "scenarios": ",".join(d.scenarios),
            }
            for d in catalog.datasets
        ],
        schema_overrides={
            "row_count": pl.Int64,
            "quality_score": pl.Float64,
            "last_update": pl.Datetime("us", "UTC"),
        },
    )
    columns = pl.DataFrame(
        [
            {
                "dataset_id": d.id,
                "column": c.name,
                "zh": c.zh,
                "type": c.type,
                "pii": c.pii,
                "semantic": c.semantic,
                "origins": "\n".join(c.origins),
                "downstream": "\n".join(c.downstream),
            }
            for d in catalog.datasets
            for c in d.columns
        ],
        schema_overrides={"semantic": pl.String},
    )
    scenarios = pl.DataFrame(
        [
            {
                "id": s.id,
                "annex": s.annex,
                "name": s.name,
                "en": s.en,
                "class": s.class_,
                "lead_department": s.lead_department,
                "datasets": ",".join(s.datasets),
                "kpis": ",".join(s.kpis),
                "pilot_streets": ",".join(s.pilot_streets_zh),
            }
            for s in catalog.scenarios
        ],
        schema_overrides={"annex": pl.Int64},
    )
    kpis = pl.DataFrame(
        [
            {
                "id": k.id,
                "name_zh": k.name_zh,
                "unit": k.unit,
                "owner_department": k.owner_department,
                "reads": ",".join(k.reads),
                "sources": "\n".join(k.sources),
            }
            for k in catalog.kpis
        ],
        schema={
            "id": pl.String,
            "name_zh": pl.String,
            "unit": pl.String,
            "owner_department": pl.String,
            "reads": pl.String,
            "sources": pl.String,
        },
    )
    return {"datasets": datasets, "columns": columns, "scenarios": scenarios, "kpis": kpis}


def default_out_dir(lake: Lake) -> Path:
    return lake.marts / CATALOG_DIR


def write_catalog(
    lake: Lake, out_dir: Path | None = None, registry: Registry | None = None, catalog: Catalog | None = None
) -> Path:
    """Write ``catalog.json``, flat Parquet tables and the HTML site under ``out_dir``
    (default ``<lake>/marts/catalog/``), every file atomically; returns ``out_dir``."""
    from catalog.site import write_site

    catalog = catalog or build_catalog(lake, registry)
    out = out_dir or default_out_dir(lake)
    out.mkdir(parents=True, exist_ok=True)
    for name, frame in catalog_frames(catalog).items():
        with atomic_path(out / f"{name}.parquet") as tmp:
            frame.write_parquet(tmp)
    write_site(catalog, out)
    with atomic_path(out / "catalog.json") as tmp:  # last: its presence means the rest is there
        tmp.write_text(catalog.model_dump_json(indent=1, by_alias=True), encoding="utf-8")
    return out

"""Raw zone assets: one per contract table, landing -> raw (thin over :mod:`assets.ingest`).

Every asset is generated from the table's contract: key ``raw/<table>``, group
``raw``, owner ``team:<owner department>`` (Dagster accepts any text after
``team:``, Chinese included; asset *tags* only take ``[A-Za-z0-9_.-]`` values,
so the Chinese department also goes to metadata), a Chinese + English
description, the column schema, and a blocking ``reconciles`` check.
"""

# No `from __future__ import annotations` here: Dagster inspects the annotations of
# asset functions (context type, resource parameters) and rejects them as strings.
import json
from datetime import UTC, datetime
from typing import Any

import dagster as dg

from assets.ingest.raw import (
    BROKEN_DIR,
    IngestReport,
    ingest_table,
    reconcile_table,
    summarise,
    table_dir,
    template_glob,
)
from assets.ingest.views import create_raw_views
from pipelines.resources import LakeResource
from schemas import Registry, load_registry
from schemas.contract import SourceSystem, Table

GROUP = "raw"
RECONCILES = "reconciles"

_LINEAGE_COLUMNS: list[tuple[str, str, str]] = [
    (
        "_extra",
        "string",
        "合同未声明的字段，JSON 文本 {源表头: 值}；无则为空。Fields the contract does not declare.",
    ),
    ("_source_file", "string", "来源文件（相对 landing/ 的路径）。Delivered file, relative to landing/."),
    (
        "_row_number",
        "integer",
        "文件内数据行号（从 1 开始：CSV/XLSX 为表头后的行序号，JSON 为记录序号，JSONL 为物理行号）。"
        "1-based row number within the file.",
    ),
    ("_file_sha256", "string", "来源文件的 SHA-256 校验和。Checksum of the delivered file."),
    ("_ingested_at", "timestamp", "首次入湖时间（UTC）。When the file was first ingested (UTC)."),
]


def raw_asset_key(table: Table | str) -> dg.AssetKey:
    return dg.AssetKey([GROUP, table if isinstance(table, str) else table.name])


def asset_owner(system: SourceSystem, table: Table) -> str:
    return f"team:{system.table_owner(table)}"


def column_schema(table: Table) -> dg.TableSchema:
    """The raw table's columns: every contract column as text, then the lineage columns."""
    columns = []
    for c in table.columns:
        parts = [f"{c.zh}（源字段「{c.source}」，规范类型 {c.type}，原始层保存为文本）"]
        if not c.nullable:
            parts.append("必填")
        if c.codelist:
            parts.append(f"代码表 {c.codelist}")
        parts.append(f"个人信息分类 {c.pii}")
        if c.description:
            parts.append(c.description)
        columns.append(
            dg.TableColumn(name=c.name, type="string", description="；".join(parts), tags={"pii": c.pii})
        )
    columns.extend(dg.TableColumn(name=n, type=t, description=d) for n, t, d in _LINEAGE_COLUMNS)
    return dg.TableSchema(columns=columns)


def asset_description(system: SourceSystem, table: Table) -> str:
    d = table.delivery
    return (
        f"{table.zh}（{system.zh}）原始层：按交付原样保存每个字段为文本，附带血缘列。\n\n"
        f"{table.en} ({system.en}), raw zone: every delivered field kept as text, with lineage columns. "
        f"{table.description}\n\n"
        f"- 粒度 grain: {table.grain}\n"
        f"- 交付 delivery: {d.format}, {d.encoding}, {d.frequency}, `landing/{d.path}`\n"
        f"- 责任部门 owner: {system.table_owner(table)}\n"
        f"- DuckDB: `raw.{table.name}`, broken rows in `raw.{table.name}__broken`"
    )


def asset_tags(system: SourceSystem, table: Table) -> dict[str, str]:
    """Tag values must match ``[A-Za-z0-9_.-]{0,63}``: only ASCII codes here."""
    return {
        "zone": "raw",
        "pii": "yes" if any(c.pii != "none" for c in table.columns) else "no",
        "open_data": table.open_data,
        "sensitivity": table.sensitivity,
        "source_system": system.name,
        "table_kind": table.kind,
    }


def definition_metadata(system: SourceSystem, table: Table) -> dict[str, Any]:
    d = table.delivery
    return {
        "dagster/column_schema": column_schema(table),
        "dagster/table_name": f"raw.{table.name}",
        "owner_department": system.table_owner(table),
        "source_system": f"{system.zh}（{system.name}）",
        "table_zh": table.zh,
        "delivery_format": d.format,
        "delivery_encoding": d.encoding,
        "delivery_frequency": d.frequency,
        "landing_template": f"landing/{d.path}",
        "landing_glob": f"landing/{template_glob(d.path)}",
        "primary_key": ", ".join(table.primary_key),
    }


def materialization_metadata(report: IngestReport, table_path: str) -> dict[str, Any]:
    return {
        "dagster/row_count": report.raw_rows_total,
        "files_ingested": len(report.ingested),
        "duplicates_skipped": len(report.duplicates),
        "files_failed": len(report.failed),
        "files_already_known": report.known_files,
        "delivered_rows": report.delivered_rows,
        "rows_ingested": report.raw_rows,
        "broken_rows": report.broken_rows,
        "files_unmatched": dg.MetadataValue.json(list(report.unmatched)),
        "parts_rewritten": dg.MetadataValue.json(list(report.healed)),
        "files": dg.MetadataValue.md(summarise(report)),
        "raw_path": dg.MetadataValue.path(table_path),
    }


def build_raw_asset(system: SourceSystem, table: Table) -> dg.AssetsDefinition:
    """The ``raw/<table>`` asset: ingest new landing files, refresh the DuckDB views."""

    @dg.asset(
        key=raw_asset_key(table),
        group_name=GROUP,
        kinds={"polars", "parquet"},
        owners=[asset_owner(system, table)],
        tags=asset_tags(system, table),
        description=asset_description(system, table),
        metadata=definition_metadata(system, table),
    )
    def _raw(context: dg.AssetExecutionContext, lake: LakeResource) -> dg.MaterializeResult:
        report = ingest_table(lake.lake, table, now=datetime.now(UTC))
        with lake.warehouse() as con:
            create_raw_views(con, lake.lake, table)
        for f in report.files:
            context.log.info(
                f"{f.source_file}: {f.status} delivered={f.delivered_rows} "
                f"raw={f.raw_rows} broken={f.broken_rows}"
                + (f" duplicate_of={f.duplicate_of}" if f.duplicate_of else "")
                + (f" error={f.error}" if f.error else "")
            )
        for rel in report.unmatched:
            context.log.warning(
                f"{rel} is next to landing/{table.delivery.path} but does not fit it: not ingested"
            )
        metadata = materialization_metadata(report, str(table_dir(lake.lake, table)))
        if report.failed:
            raise dg.Failure(
                description=(
                    f"{len(report.failed)} file(s) of {table.name} could not be read and were not ingested "
                    "(they stay in landing/ and are retried next run): "
                    + "; ".join(f"{f.source_file}: {f.error}" for f in report.failed)
                ),
                metadata=metadata,
            )
        return dg.MaterializeResult(metadata=metadata)

    return _raw


def build_reconciles_check(system: SourceSystem, table: Table) -> dg.AssetChecksDefinition:
    """``reconciles``: delivered rows = raw rows + broken rows for every ingested file."""

    @dg.asset_check(
        asset=raw_asset_key(table),
        name=RECONCILES,
        blocking=True,
        description=(
            "每个已入湖文件：交付行数 = 原始层行数 + 损坏行数，且原始层无账外文件。"
            "For every ingested file, delivered rows = raw rows + broken rows (counted from the Parquet "
            "parts on disk), and no part outside the ledger. Fails (ERROR) otherwise; warns when a JSON "
            "dump holds fewer or more records than its declared total."
        ),
    )
    def _reconciles(lake: LakeResource) -> dg.AssetCheckResult:
        rec = reconcile_table(lake.lake, table)
        metadata: dict[str, Any] = {
            "files_checked": rec.files_checked,
            "mismatched_files": len(rec.mismatches),
            "mismatches": dg.MetadataValue.json(list(rec.mismatches)),
            "orphan_parts": dg.MetadataValue.json(list(rec.orphan_parts)),
            "declared_total_mismatches": dg.MetadataValue.json(
                json.loads(json.dumps(list(rec.declared_total_mismatches), default=str))
            ),
            "broken_dir": f"raw/{table.name}/{BROKEN_DIR}",
        }
        if not rec.passed:
            return dg.AssetCheckResult(passed=False, severity=dg.AssetCheckSeverity.ERROR, metadata=metadata)
        if rec.declared_total_mismatches:
            return dg.AssetCheckResult(passed=False, severity=dg.AssetCheckSeverity.WARN, metadata=metadata)
        return dg.AssetCheckResult(passed=True, metadata=metadata)

    return _reconciles


def build_raw_assets(
    registry: Registry | None = None,
) -> tuple[list[dg.AssetsDefinition], list[dg.AssetChecksDefinition]]:
    """One raw asset and one ``reconciles`` check per contract table."""
    reg = registry or load_registry()
    assets = [build_raw_asset(s, t) for s, t in reg.tables()]
    checks = [build_reconciles_check(s, t) for s, t in reg.tables()]
    return assets, checks

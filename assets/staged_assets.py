"""Dagster assets of the staged zone: one ``staged/<table>`` asset per contract table.

Thin wrappers over :mod:`assets.staging.stage`; partitioned exactly like the raw
asset they read (event tables by delivery date), with a blocking
``staged_reconciles`` check: raw rows + broken rows = staged + quarantined, per file.
Owners, kinds, tags and metadata (the staged column schema, column lineage from the
raw columns) come from :func:`catalog.dagster_meta.spec_fields`.
"""

import warnings
from typing import Any

import dagster as dg

from assets.partitions import daily_partitions, partition_date, partitions_for
from assets.raw_assets import raw_asset_key
from assets.staging.stage import (
    StageReport,
    create_staged_views,
    reconcile_staged,
    stage_new_dates,
    stage_partitions,
    staged_dir,
)
from catalog.dagster_meta import spec_fields
from pipelines.resources import LakeResource
from rainbow.filefacts import row_counts
from rainbow.parquet import glob_files
from schemas import load_registry
from schemas.contract import SourceSystem, Table
from schemas.registry import Registry

GROUP = "staged"
RECONCILES = "staged_reconciles"
# Chinese descriptions of the staged columns that are not contract columns (schema: stage.staged_schema).
DERIVED_ZH = {
    "id_birth_date": "由身份证号码推导的出生日期",
    "id_sex": "由身份证号码推导的性别（1 男 / 2 女）",
    "_source_file": "来源文件（landing/ 下的相对路径）",
    "_row_number": "来源文件中的数据行号",
    "_file_sha256": "来源文件 SHA-256",
    "_ingested_at": "入湖时间（UTC）",
    "_delivery_date": "交付日期",
    "_flags": "软性问题标记（已标准化并保留入库）",
}


def staged_asset_key(table: Table | str) -> dg.AssetKey:
    return dg.AssetKey(["staged", table if isinstance(table, str) else table.name])


def _metadata(report: StageReport, path: str) -> dict[str, Any]:
    bad = [f for f in report.files if not f.reconciles]
    lines = ["| 文件 file | raw | broken | staged | quarantined |", "|---|---:|---:|---:|---:|"]
    for f in bad[:50]:
        lines.append(
            f"| {f.source_file} | {f.raw_rows} | {f.broken_rows} | {f.staged_rows} | {f.quarantined_rows} |"
        )
    return {
        "dagster/row_count": report.staged_rows,
        "quarantined_rows": report.quarantined_rows,
        "files": len(report.files),
        "files_not_reconciling": len(bad),
        "quarantine_reasons": dg.MetadataValue.json(report.reasons),
        "soft_flags": dg.MetadataValue.json(report.flags),
        "reconciliation": dg.MetadataValue.md(
            f"{len(report.files)} files, all reconcile (raw + broken = staged + quarantined)"
            if not bad
            else "\n".join(lines)
        ),
        "staged_path": dg.MetadataValue.path(path),
    }


def build_staged_asset(
    system: SourceSystem, table: Table, registry: Registry, daily: dg.PartitionsDefinition
) -> dg.AssetsDefinition:
    partitions_def = partitions_for(table, daily)

    def _staged(context: dg.AssetExecutionContext, lake: LakeResource) -> dg.MaterializeResult:
        if partitions_def is not None:
            days = [partition_date(k) for k in context.partition_keys]
            reports = stage_partitions(lake.lake, table, registry, days)
        else:
            # only the delivery dates with new or changed files; the rest is on disk already
            reports = stage_new_dates(lake.lake, table, registry)
            days = [partition_date(r.partition) for r in reports if r.partition]
        with lake.warehouse() as con:
            create_staged_views(con, lake.lake, table)
        merged = StageReport.merge(table.name, reports)
        context.log.info(
            f"staged {merged.staged_rows} rows, quarantined {merged.quarantined_rows} "
            f"({merged.reasons}) over {len(days)} delivery date(s)"
        )
        metadata = _metadata(merged, str(staged_dir(lake.lake, table)))
        if partitions_def is None:  # the table's rows, not only those of the dates staged now
            parts = glob_files(staged_dir(lake.lake, table) / "**" / "*.parquet")
            metadata["dagster/row_count"] = sum(row_counts(lake.lake, parts))
            metadata["staged_rows_this_run"] = merged.staged_rows
            metadata["delivery_dates_staged"] = dg.MetadataValue.json([d.isoformat() for d in days])
        return dg.MaterializeResult(metadata=metadata)

    description = (
        f"{table.zh}（标准化层）：按契约类型化、标准化、码值统一；违反硬性规则的行进入隔离表并注明原因。\n\n"
        f"{table.en} (staged): typed and normalised per its contract; rows breaking a hard rule go to "
        f"`staged/_quarantine/{table.name}` with reason codes. Source system: {system.zh} ({system.en})."
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.BetaWarning)
        return dg.asset(
            key=staged_asset_key(table),
            deps=[raw_asset_key(table)],
            group_name=GROUP,
            description=description,
            **spec_fields(table.name, GROUP, registry),
            partitions_def=partitions_def,
            backfill_policy=dg.BackfillPolicy.single_run() if partitions_def is not None else None,
        )(_staged)


def build_staged_reconciles_check(table: Table) -> dg.AssetChecksDefinition:
    @dg.asset_check(
        asset=staged_asset_key(table),
        name=RECONCILES,
        blocking=True,
        description=(
            "每个已入湖文件：原始行数 + 损坏行数 = 标准化行数 + 隔离行数。"
            "For every ingested file, raw rows + broken rows = staged rows + quarantined rows "
            "(counted from the Parquet on disk). Fails (ERROR) otherwise."
        ),
    )
    def _check(lake: LakeResource) -> dg.AssetCheckResult:
        rec = reconcile_staged(lake.lake, table)
        return dg.AssetCheckResult(
            passed=rec.passed,
            severity=dg.AssetCheckSeverity.ERROR,
            metadata={
                "files_checked": rec.files_checked,
                "mismatched_files": len(rec.mismatches),
                "mismatches": dg.MetadataValue.json([m.__dict__ for m in rec.mismatches[:50]]),
            },
        )

    return _check


def build_staged_assets(
    registry: Registry | None = None, daily: dg.PartitionsDefinition | None = None
) -> tuple[list[dg.AssetsDefinition], list[dg.AssetChecksDefinition]]:
    reg = registry or load_registry()
    daily = daily or daily_partitions()
    assets = [build_staged_asset(s, t, reg, daily) for s, t in reg.tables()]
    checks = [build_staged_reconciles_check(t) for _, t in reg.tables()]
    return assets, checks

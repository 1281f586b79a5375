"""Raw zone assets: one per contract table, landing -> raw (thin over :mod:`assets.ingest`).

Every asset is generated from the table's contract: key ``raw/<table>``, group
``raw``, owners, kinds, tags and metadata (column schema, owner department, source
system, delivery) from :func:`catalog.dagster_meta.spec_fields` (owner
``team:<owner department>``: Dagster accepts any text after ``team:``, Chinese
included; asset *tags* only take ``[A-Za-z0-9_.-]`` values, so the Chinese department
also goes to metadata), a Chinese + English description, and a blocking
``reconciles`` check.

Tables whose contract says ``delivery.partitioned`` are partitioned by delivery
date (:mod:`assets.partitions`): a run ingests only the files of its partition
keys - one day, or a whole range in one run (``BackfillPolicy.single_run()``) -
and reports its counts per date.
"""

# No `from __future__ import annotations` here: Dagster inspects the annotations of
# asset functions (context type, resource parameters) and rejects them as strings.
import json
import warnings
from collections.abc import Sequence
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
    worth_a_look,
)
from assets.ingest.views import create_raw_views
from assets.partitions import daily_partitions, partition_date, partitions_for
from catalog.dagster_meta import spec_fields
from pipelines.resources import LakeResource
from schemas import Registry, load_registry
from schemas.contract import SourceSystem, Table

GROUP = "raw"
RECONCILES = "reconciles"


def raw_asset_key(table: Table | str) -> dg.AssetKey:
    return dg.AssetKey([GROUP, table if isinstance(table, str) else table.name])


def asset_description(system: SourceSystem, table: Table) -> str:
    d = table.delivery
    partitioning = (
        "- 分区 partitions: 按交付日（文件名中的日期，北京时间）每日一个分区 daily, by delivery date\n"
        if d.partitioned
        else ""
    )
    return (
        f"{table.zh}（{system.zh}）原始层：按交付原样保存每个字段为文本，附带血缘列。\n\n"
        f"{table.en} ({system.en}), raw zone: every delivered field kept as text, with lineage columns. "
        f"{table.description}\n\n"
        f"- 粒度 grain: {table.grain}\n"
        f"- 交付 delivery: {d.format}, {d.encoding}, {d.frequency}, `landing/{d.path}`\n"
        f"- 责任部门 owner: {system.table_owner(table)}\n"
        f"{partitioning}"
        f"- DuckDB: `raw.{table.name}`, broken rows in `raw.{table.name}__broken`"
    )


def per_date_markdown(rows: Sequence[dict[str, object]]) -> str:
    lines = [
        "| date | files | duplicates | failed | known | rows ingested | broken | rows of the date |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        cells = (
            r["date"],
            r["files_ingested"],
            r["duplicates_skipped"],
            r["files_failed"],
            r["files_already_known"],
            r["rows_ingested"],
            r["broken_rows"],
            r["date_rows"],
        )
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(lines)


def materialization_metadata(report: IngestReport, table_path: str) -> dict[str, Any]:
    """Counts of one run. Partitioned runs: ``dagster/row_count`` is the rows of the run's dates.

    (A ranged run records the same metadata on every partition it materialises;
    the ``per_date`` table tells the dates apart. It is kept small on purpose:
    Dagster stores it once per partition, and the ledger, ``raw.ingest_ledger``,
    holds every count per file anyway.)
    """
    partitioned: dict[str, Any] = {}
    if report.dates is not None:
        partitioned = {
            "partition_count": len(report.dates),
            "partition_range": f"{report.dates[0]}..{report.dates[-1]}" if report.dates else "",
            "per_date": dg.MetadataValue.md(per_date_markdown(report.per_date())),
        }
    return {
        "dagster/row_count": report.rows_in_dates if report.dates is not None else report.raw_rows_total,
        "table_rows": report.raw_rows_total,
        **partitioned,
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


def build_raw_asset(
    system: SourceSystem,
    table: Table,
    daily: dg.PartitionsDefinition | None = None,
    registry: Registry | None = None,
) -> dg.AssetsDefinition:
    """The ``raw/<table>`` asset: ingest new landing files, refresh the DuckDB views.

    ``daily``: the lake's daily partitions (default :func:`daily_partitions`),
    used when the table is partitioned.
    """
    partitions_def = partitions_for(table, daily or daily_partitions())

    def _raw(context: dg.AssetExecutionContext, lake: LakeResource) -> dg.MaterializeResult:
        dates = [partition_date(k) for k in context.partition_keys] if partitions_def is not None else None
        report = ingest_table(lake.lake, table, now=datetime.now(UTC), dates=dates)
        with lake.warehouse() as con:
            rewritten = create_raw_views(con, lake.lake, table)
        if rewritten:
            context.log.info("DuckDB views (re)created: " + ", ".join(f"raw.{v}" for v in rewritten))
        # a ranged run (a backfill, the first build) logs only the files worth a look: every log
        # line is an event in Dagster's event log, and the per-file counts are in the metadata
        several_days = dates is not None and len(dates) > 1
        shown = [f for f in report.files if worth_a_look(f)] if several_days else list(report.files)
        if len(shown) < len(report.files):
            context.log.info(
                f"{len(report.files)} new file(s) over {len(dates or [])} delivery date(s); "
                f"{len(report.files) - len(shown)} clean ingest(s) not listed here (see the metadata)"
            )
        for f in shown:
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

    with warnings.catch_warnings():
        # backfill_policy is "beta" in dagster 1.13; single-run backfills are relied on knowingly
        warnings.simplefilter("ignore", dg.BetaWarning)
        return dg.asset(
            key=raw_asset_key(table),
            group_name=GROUP,
            description=asset_description(system, table),
            **spec_fields(table.name, GROUP, registry),
            partitions_def=partitions_def,
            backfill_policy=dg.BackfillPolicy.single_run() if partitions_def is not None else None,
        )(_raw)


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
    registry: Registry | None = None, daily: dg.PartitionsDefinition | None = None
) -> tuple[list[dg.AssetsDefinition], list[dg.AssetChecksDefinition]]:
    """One raw asset and one ``reconciles`` check per contract table (event tables partitioned)."""
    reg = registry or load_registry()
    daily = daily or daily_partitions()
    assets = [build_raw_asset(s, t, daily, reg) for s, t in reg.tables()]
    checks = [build_reconciles_check(s, t) for s, t in reg.tables()]
    return assets, checks

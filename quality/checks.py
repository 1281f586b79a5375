"""Dagster asset checks: one ``expectations`` check per staged asset.

:func:`build_quality_checks` is the one factory the definitions call. The
library and mart checks (``library_contract``, ``mart_contract``, built in
``assets/library_assets.py`` and ``assets/mart_assets.py`` over
:mod:`quality.library_checks`) end with :func:`derived_check_result`: the same
history, report and metadata as the staged checks.

Which data a check validates (:func:`choose_batches`):

* an unpartitioned table (master / reference / monthly): the whole staged table;
* an event table, in a run that carries partitions (the nightly day, a range,
  a backfill): the run's days found on disk. The newest
  ``checks.per_day_partitions`` days (default 1) are validated one by one, so
  the history has a row per day; the older days of a longer run are validated
  together in batches labelled ``first..last`` of at most ``checks.max_batch_rows``
  delivered rows (GX costs ~5 ms per expectation and batch whatever its size, so
  a 30-day backfill is a few runs of the suite instead of 30, and a batch's pandas
  copy stays bounded; every row is still checked);
* an event table, without partitions in the run (the check launched alone):
  the newest ``checks.latest_partitions`` days on disk.

An event table's batches are validated ``checks.parallel_batches`` at a time (at most
``$RAINBOW_WORKERS``), on threads with a GX context each; results keep the batches' order.
Each batch is validated (:func:`quality.runner.validate`), recorded in the
history (idempotent per table, partition and run date), the source-system
health recomputed, and the HTML report rewritten; the check's metadata lists
the failures with masked example rows and links the report. A failure of a
rule that guards the library gives severity ERROR (the check is blocking, so
downstream assets wait); other failures give WARN.
"""

import contextlib
import gc
import json
import warnings
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import dagster as dg
import polars as pl

from assets.partitions import PARTITION_TIMEZONE, daily_partitions, partition_date, partitions_for
from assets.staged_assets import staged_asset_key
from assets.staging.stage import day_chunks, staged_dir, staged_schema
from pipelines.resources import LakeResource
from quality.redact import scrub
from quality.report import write_report
from quality.rules import FAMILY_ZH
from quality.runner import EnginePool, Outcome, QualityResult, validate
from quality.scorecard import (
    CheckSettings,
    Thresholds,
    family_scores,
    load_thresholds,
    read_history,
    record_results,
    record_source_health,
    source_health,
)
from quality.suites import rules_for
from rainbow.parquet import glob_files, read_frame
from rainbow.settings import Lake
from rainbow.workers import ordered_map, release_memory, workers
from schemas import load_registry
from schemas.contract import Table
from schemas.registry import Registry

CHECK_NAME = "expectations"
ALL = "all"


@dataclass(frozen=True)
class Batch:
    """What one validation reads: a label for the history and the days (None: the whole table)."""

    label: str
    days: tuple[date, ...] | None


def partitions_on_disk(lake: Lake, table: Table | str) -> list[date]:
    folder = staged_dir(lake, table)
    days = []
    for part in folder.glob("date=*/data.parquet"):
        try:
            days.append(date.fromisoformat(part.parent.name.removeprefix("date=")))
        except ValueError:
            continue
    return sorted(days)


def choose_batches(
    lake: Lake, table: Table, partitioned: bool, run_days: list[date] | None, settings: CheckSettings
) -> tuple[list[Batch], list[date]]:
    """The batches to validate, and the run's days that have no staged partition on disk.

    ``run_days``: the delivery dates the run staged (None for a table that is not partitioned
    when they are not known: the whole table then). Tables delivered as dated lists are staged
    per date too, so they are validated like event partitions: a night without a new list
    validates the newest one, not every snapshot of the year again.
    """
    if run_days is None:
        if partitioned:
            run_days = []
        else:
            return [Batch(ALL, None)], []
    on_disk = set(partitions_on_disk(lake, table))
    if not run_days:
        newest = sorted(on_disk)[-settings.latest_partitions :]
        return [Batch(d.isoformat(), (d,)) for d in newest], []
    days = sorted(d for d in set(run_days) if d in on_disk)
    missing = sorted(d for d in set(run_days) if d not in on_disk)
    split = max(len(days) - settings.per_day_partitions, 0)
    older, newest = days[:split], days[split:]
    # older days together, in batches of at most max_batch_rows delivered rows (GX validates a
    # pandas copy: a month of district water readings in one batch would not fit in memory)
    batches = [
        Batch(f"{run[0].isoformat()}..{run[-1].isoformat()}", tuple(run))
        for run in (day_chunks(lake, table, older, settings.max_batch_rows) if older else [])
    ]
    batches += [Batch(d.isoformat(), (d,)) for d in newest]
    return batches, missing


def load_batch(lake: Lake, table: Table, batch: Batch) -> pl.DataFrame:
    folder = staged_dir(lake, table)
    if batch.days is None:  # the whole table: every delivery date's part
        paths = glob_files(folder / "**" / "*.parquet")
    else:
        paths = [p for d in batch.days if (p := folder / f"date={d.isoformat()}" / "data.parquet").exists()]
    if not paths:
        return pl.DataFrame(schema=staged_schema(table))
    return read_frame(paths, lake)


def load_related(lake: Lake, table: Table, registry: Registry) -> dict[str, pl.DataFrame]:
    """The staged tables the table's cross-table rules read (whole; they are small reference tables)."""
    needs = {n for rule in rules_for(table, registry) for n in rule.needs}
    out = {}
    for name in sorted(needs):
        files = sorted(staged_dir(lake, name).rglob("*.parquet"))
        if files:
            out[name] = read_frame(files, lake)
    return out


def validate_staged(
    lake: Lake,
    table: Table,
    registry: Registry,
    *,
    partitioned: bool,
    run_days: list[date] | None = None,
    thresholds: Thresholds | None = None,
) -> tuple[list[QualityResult], list[date]]:
    """Validate what a check of ``table`` validates (see :func:`choose_batches`); no Dagster needed."""
    settings = (thresholds or load_thresholds()).checks
    batches, missing = choose_batches(lake, table, partitioned, run_days, settings)
    related = load_related(lake, table, registry)
    width = min(settings.parallel_batches, workers()) if partitioned else 1
    engines = EnginePool()  # dropped with this call, and the frames its engines last saw

    def one(batch: Batch) -> QualityResult:
        with engines.borrow() if width > 1 else contextlib.nullcontext(None) as gx_engine:
            return validate(
                load_batch(lake, table, batch),
                table,
                registry,
                related=related,
                partition=batch.label,
                slice_rows=settings.gx_slice_rows,
                gx_engine=gx_engine,
            )

    results = list(ordered_map(one, batches, width=width))
    if width > 1 and len(batches) > 1:
        # the engines (GX contexts hold reference cycles) and the frames they last saw: measured
        # after 12 district water days, 1,239 MB resident without the collection, 721-1,010 MB with it
        del engines
        gc.collect()
        release_memory()
    return results, missing


# ------------------------------------------------------------------ metadata


def _examples_text(examples: tuple[dict[str, str | None], ...], limit: int = 3) -> str:
    parts = []
    for row in examples[:limit]:
        parts.append("; ".join(f"{k}={v}" for k, v in row.items() if v is not None))
    return " / ".join(parts)


def check_metadata(
    results: list[QualityResult],
    missing: list[date],
    health: dict[str, Any] | None,
    report: str,
) -> dict[str, Any]:
    """Metadata of one check evaluation; every text is masked (:func:`quality.redact.scrub`)."""
    failures = [(r, o) for r in results for o in r.failed()]
    lines = [
        "| 分区 partition | 规则 rule | 维度 | 级别 | 不符合行数 | 示例（已脱敏） |",
        "|---|---|---|---|---:|---|",
    ]
    for r, o in failures[:50]:
        example = _examples_text(o.examples).replace("|", "\\|")
        lines.append(
            f"| {r.partition} | {o.rule_id}：{o.zh} | {FAMILY_ZH[o.family]} | {o.severity} "
            f"| {o.unexpected_count} | {example or (o.observed or o.note or '')} |"
        )
    batches = [
        {
            "partition": r.partition,
            "rows": r.rows,
            "rows_validated": r.rows if r.validated_rows is None else r.validated_rows,
            "rules": len(r.outcomes),
            "not_evaluated": sum(not o.evaluated for o in r.outcomes),
            "failed_error": len(r.failed("ERROR")),
            "failed_warn": len(r.failed("WARN")),
            "scores": {k: None if v is None else round(v, 6) for k, v in family_scores(r).items()},
            "seconds": round(r.seconds, 3),
        }
        for r in results
    ]
    examples = [
        {"partition": r.partition, "rule_id": o.rule_id, "examples": list(o.examples)}
        for r, o in failures
        if o.examples
    ][:50]
    metadata: dict[str, Any] = {
        "dagster/row_count": sum(r.rows for r in results),
        "partitions_validated": dg.MetadataValue.json([r.partition for r in results]),
        "partitions_missing": dg.MetadataValue.json([d.isoformat() for d in missing]),
        "rules": len(results[0].outcomes) if results else 0,
        "failed_error_rules": sum(len(r.failed("ERROR")) for r in results),
        "failed_warn_rules": sum(len(r.failed("WARN")) for r in results),
        "batches": dg.MetadataValue.json(batches),
        "failures": dg.MetadataValue.md("\n".join(lines) if failures else "全部规则通过 / every rule passed"),
        "failure_examples": dg.MetadataValue.json(examples),
        "quality_report": dg.MetadataValue.path(report),
        "quality_report_url": dg.MetadataValue.url(Path(report).as_uri()),
    }
    if health is not None:
        metadata["source_health"] = dg.MetadataValue.json(health)
    return scrub_metadata(metadata)


def scrub_metadata(value: Any) -> Any:
    """Mask IDs and phones in every text of a metadata tree (the last line of defence)."""
    if isinstance(value, dg.JsonMetadataValue):  # records are tuples: test them first
        return dg.MetadataValue.json(scrub_metadata(value.value))
    if isinstance(value, dg.MarkdownMetadataValue):
        return dg.MetadataValue.md(scrub(value.value))
    if isinstance(value, dg.MetadataValue):
        return value
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, dict):
        return {k: scrub_metadata(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [scrub_metadata(v) for v in value]
    return value


def _health_of(health: pl.DataFrame, table: str) -> dict[str, Any] | None:
    row = health.filter(pl.col("table") == table)
    if row.is_empty():
        return None
    rec = row.to_dicts()[0]
    return {k: (v.isoformat() if isinstance(v, date) else v) for k, v in rec.items()}


# ------------------------------------------------------------------ the checks


def unchanged_list_result(
    lake: Lake, table: Table, registry: Registry
) -> tuple[QualityResult, dict[str, Any]] | None:
    """The recorded validation of the newest list of an unpartitioned table, when it can stand for
    this run's: the run staged nothing (the caller knows), the table has no cross-table rule (the
    other table may have changed), and the newest list's latest record in the quality history has
    exactly the current suite's rules. Returns (that result, where it comes from) or None."""
    rules = rules_for(table, registry)
    if any(r.needs for r in rules):
        return None
    days = partitions_on_disk(lake, table)
    if not days:
        return None
    label = days[-1].isoformat()
    history = read_history(lake, newest_partitions=1).filter(
        (pl.col("table") == table.name) & (pl.col("partition") == label)
    )
    if history.is_empty():
        return None
    latest = history.filter(pl.col("run_at") == pl.col("run_at").max())
    order = {r.id: i for i, r in enumerate(rules)}
    if set(latest["rule_id"]) != set(order) or latest.height != len(order):
        return None
    outcomes = tuple(
        Outcome(
            rule_id=row["rule_id"],
            family=row["family"],
            severity=row["severity"],
            zh=row["rule_zh"],
            expectation_type=row["expectation_type"],
            columns=(),
            evaluated=row["evaluated"],
            success=row["success"],
            element_count=row["element_count"] or 0,
            unexpected_count=row["unexpected_count"] or 0,
            unexpected_percent=row["unexpected_percent"],
            observed=row["observed"],
            examples=tuple(json.loads(row["examples_json"])) if row["examples_json"] else (),
            note=row["note"],
        )
        for row in sorted(latest.iter_rows(named=True), key=lambda r: order[r["rule_id"]])
    )
    result = QualityResult(table.name, label, int(latest["rows"][0] or 0), outcomes, seconds=0.0)
    source = {
        "partition": label,
        "run_id": latest["run_id"][0],
        "run_date": str(latest["run_date"][0]),
        "why": "本次运行无新交付，沿用最新一期的校验结果 / "
        "nothing new in this run: the newest list's last validation stands",
    }
    return result, source


def dates_staged_in_run(context: dg.AssetCheckExecutionContext, table: Table) -> list[date] | None:
    """The delivery dates the staged asset of an unpartitioned table staged in this run (its
    ``delivery_dates_staged`` metadata), or None when it did not materialise in this run."""
    event = context.instance.get_latest_materialization_event(staged_asset_key(table))
    if event is None or event.run_id != context.run.run_id or event.asset_materialization is None:
        return None
    staged = event.asset_materialization.metadata.get("delivery_dates_staged")
    if staged is None:
        return None
    return [date.fromisoformat(str(d)) for d in staged.value]


def build_expectations_check(
    table: Table, registry: Registry, daily: dg.PartitionsDefinition, thresholds: Thresholds
) -> dg.AssetChecksDefinition:
    partitioned = partitions_for(table, daily) is not None
    guards = sum(r.guards_library for r in rules_for(table, registry))
    total = len(rules_for(table, registry))

    @dg.asset_check(
        asset=staged_asset_key(table),
        name=CHECK_NAME,
        blocking=True,
        description=(
            f"{table.zh}：按契约与业务规则生成的 {total} 条质量规则"
            f"（其中 {guards} 条守护主题库，失败为 ERROR 并阻断下游；其余失败为 WARN）。"
            + (
                "校验本次运行的分区（最新分区逐日，较早分区合并为一批）。"
                if partitioned
                else "校验本次运行新标准化的交付日期（无新交付时校验最新一期）。"
            )
            + f"\n\n{table.en}: {total} expectations from the contract and the domain rules; "
            f"{guards} guard the library (failure: ERROR, blocks downstream), the rest warn. "
            + (
                "Validates the run's partitions (newest day by day, older days as one batch)."
                if partitioned
                else "Validates the delivery dates staged in this run (the newest one when none was "
                "new; the whole table when the check runs without its asset)."
            )
        ),
    )
    def _check(context: dg.AssetCheckExecutionContext, lake: LakeResource) -> dg.AssetCheckResult:
        run_days: list[date] | None = []
        if partitioned and (context.has_partition_key or context.has_partition_key_range):
            run_days = [partition_date(k) for k in context.partition_keys]
        elif not partitioned:
            run_days = dates_staged_in_run(context, table)
        # a dated list with nothing new in the run: last validation of its newest list stands
        reused = None
        if run_days == [] and not partitioned:
            reused = unchanged_list_result(lake.lake, table, registry)
        missing: list[date] = []
        if reused is not None:
            results = [reused[0]]
        else:
            results, missing = validate_staged(
                lake.lake, table, registry, partitioned=partitioned, run_days=run_days, thresholds=thresholds
            )
            run_at = datetime.now(UTC)
            run_date = run_at.astimezone(ZoneInfo(PARTITION_TIMEZONE)).date()
            record_results(
                lake.lake, registry, results, run_date=run_date, run_at=run_at, run_id=context.run.run_id
            )
        health = source_health(lake.lake, registry, thresholds)
        record_source_health(lake.lake, health)
        report = write_report(lake.lake, registry, thresholds, health=health, run_id=context.run.run_id)
        errors = sum(len(r.failed("ERROR")) for r in results)
        warns = sum(len(r.failed("WARN")) for r in results)
        context.log.info(
            f"{table.name}: {len(results)} batch(es), {sum(r.rows for r in results)} rows, "
            f"{errors} ERROR and {warns} WARN rule failures"
        )
        metadata = check_metadata(results, missing, _health_of(health, table.name), str(report))
        if reused is not None:
            metadata["validation_reused"] = dg.MetadataValue.json(reused[1])
        return dg.AssetCheckResult(
            passed=errors == 0 and warns == 0,
            severity=dg.AssetCheckSeverity.ERROR if errors else dg.AssetCheckSeverity.WARN,
            metadata=metadata,
        )

    return _check


def build_quality_checks(
    registry: Registry | None = None,
    daily: dg.PartitionsDefinition | None = None,
    thresholds: Thresholds | None = None,
) -> list[dg.AssetChecksDefinition]:
    """One blocking ``expectations`` check per staged asset (``staged/<table>``)."""
    reg = registry or load_registry()
    daily = daily or daily_partitions()
    limits = thresholds or load_thresholds()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.BetaWarning)
        return [build_expectations_check(t, reg, daily, limits) for _, t in reg.tables()]


def derived_check_result(
    lake: Lake,
    registry: Registry,
    results: list[QualityResult],
    *,
    run_id: str | None,
    as_of: str,
    thresholds: Thresholds | None = None,
    blocking_problems: dict[str, Any] | None = None,
) -> dg.AssetCheckResult:
    """Record a library / mart table's results in the history, rewrite the report, and give the
    check's result: ERROR when a guarding rule failed (or ``blocking_problems`` holds one), WARN
    when only other rules failed; metadata as the staged checks', masked."""
    limits = thresholds or load_thresholds()
    run_at = datetime.now(UTC)
    run_date = run_at.astimezone(ZoneInfo(PARTITION_TIMEZONE)).date()
    record_results(lake, registry, results, run_date=run_date, run_at=run_at, run_id=run_id)
    report = write_report(lake, registry, limits, run_id=run_id)
    problems = {k: v for k, v in (blocking_problems or {}).items() if v}
    errors = sum(len(r.failed("ERROR")) for r in results) + len(problems)
    warns = sum(len(r.failed("WARN")) for r in results)
    metadata = check_metadata(results, [], None, str(report))
    metadata["as_of"] = as_of
    for name, value in (blocking_problems or {}).items():
        metadata[name] = dg.MetadataValue.json(value)
    return dg.AssetCheckResult(
        passed=errors == 0 and warns == 0,
        severity=dg.AssetCheckSeverity.ERROR if errors else dg.AssetCheckSeverity.WARN,
        metadata=scrub_metadata(metadata),
    )


__all__ = ["CHECK_NAME", "build_quality_checks", "choose_batches", "derived_check_result", "validate_staged"]

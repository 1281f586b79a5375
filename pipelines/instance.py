"""The persistent Dagster instance under the lake, and the nightly run from the command line.

``ensure_dagster_home`` writes ``<lake>/dagster_home/dagster.yaml`` (telemetry
off, SQLite storage, logs and artifacts under that home); ``run_nightly`` runs
the ``nightly_build`` job in this process against that instance, so the run,
its materialisations and check results show in ``dagster dev`` started with
the same ``DAGSTER_HOME`` afterwards.

``run_nightly`` makes at most two runs: when landing holds event files the
ledgers do not know, ONE ranged run of the partitioned assets over their
delivery dates (min..max); then one run of the unpartitioned assets. A second
build without new files makes only the second, ingests nothing and writes no
byte of the lake's data (only Dagster's records of the run).

A run over many partitions (the first build, a backfill: more than
:data:`SUBSET_PLANNED_ABOVE`) records Dagster's "materialisation planned" event once
per asset with the partition range instead of once per partition and asset
(``DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS``): a year of daily partitions
over ~40 assets and 8,760 alert hours is ~23,000 SQLite commits otherwise. Dagster's
caveat: if such a run fails, its partitions show as missing, not failed, in the UI
(the run itself shows failed). Nightly runs of a few days keep one event per partition.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

import dagster as dg
import yaml
from rich.console import Console
from rich.table import Table as RichTable

from assets.ingest.raw import PendingFile, pending_deliveries
from assets.marts.alert_assets import SAFETY_ALERTS_JOB
from assets.partitions import partition_date, partition_key
from pipelines.jobs import ALERTS_RUN, EVENTS_RUN, NIGHTLY_BUILD, UNPARTITIONED_RUN, keys_by_partitioning
from rainbow.io import write_bytes_atomic
from rainbow.parquet import listing_scope
from rainbow.settings import Lake
from schemas import Registry, load_registry


def dagster_yaml(home: Path) -> dict[str, Any]:
    """Instance settings for a local, single-machine deployment rooted at ``home``."""
    return {
        "telemetry": {"enabled": False},
        "nux": {"enabled": False},
        "storage": {"sqlite": {"base_dir": str(home / "storage")}},
        "local_artifact_storage": {
            "module": "dagster._core.storage.root",
            "class": "LocalArtifactStorage",
            "config": {"base_dir": str(home)},
        },
        "compute_logs": {
            "module": "dagster._core.storage.local_compute_log_manager",
            "class": "LocalComputeLogManager",
            "config": {"base_dir": str(home / "logs")},
        },
        # DuckDB takes one writer at a time and the machine is small: one run at a time.
        "run_queue": {"max_concurrent_runs": 1},
    }


def ensure_dagster_home(lake: Lake) -> Path:
    """Create ``<lake>/dagster_home/dagster.yaml`` (rewritten only when its content differs)."""
    home = lake.dagster_home.resolve()
    home.mkdir(parents=True, exist_ok=True)
    text = "# Written by pipelines.instance.ensure_dagster_home; edits are overwritten.\n" + yaml.safe_dump(
        dagster_yaml(home), sort_keys=False, allow_unicode=True
    )
    target = home / "dagster.yaml"
    if not target.exists() or target.read_text(encoding="utf-8") != text:
        write_bytes_atomic(target, text.encode("utf-8"))
    return home


def _progress_hooks(console: Console) -> set[dg.HookDefinition]:
    @dg.success_hook(name="rich_progress_success")
    def _ok(context: dg.HookContext) -> None:
        console.print(f"[green]✓[/] {context.step_key}")

    @dg.failure_hook(name="rich_progress_failure")
    def _failed(context: dg.HookContext) -> None:
        err = context.op_exception
        console.print(f"[red]✗[/] {context.step_key}: {type(err).__name__ if err else 'failed'}: {err}")

    return {_ok, _failed}


def _meta_value(metadata: dict[str, Any], key: str) -> str:
    value = metadata.get(key)
    return "" if value is None else str(getattr(value, "value", value))


def _summary(results: Sequence[dg.ExecuteInProcessResult]) -> RichTable:
    """One line per asset (a ranged run records one materialisation per partition, same counts)."""
    table = RichTable(title=NIGHTLY_BUILD)
    for col in ("asset", "days", "files", "duplicates", "rows", "broken", "total rows"):
        table.add_column(col, justify="left" if col == "asset" else "right")
    first: dict[dg.AssetKey, dict[str, Any]] = {}
    for event in (e for r in results for e in r.get_asset_materialization_events()):
        mat = event.materialization
        first.setdefault(mat.asset_key, dict(mat.metadata))
    for key in sorted(first, key=lambda k: list(k.path)):
        md = first[key]
        table.add_row(
            key.to_user_string(),
            _meta_value(md, "partition_count"),
            _meta_value(md, "files_ingested"),
            _meta_value(md, "duplicates_skipped"),
            _meta_value(md, "rows_ingested"),
            _meta_value(md, "broken_rows"),
            _meta_value(md, "table_rows") or _meta_value(md, "dagster/row_count"),
        )
    return table


@dataclass(frozen=True)
class NightlyPlan:
    """What the nightly run covers: the range of event delivery dates not yet ingested."""

    pending: tuple[PendingFile, ...]  # event files the ledgers do not know (path, size, mtime)
    first: date | None  # first and last delivery date among them that has a partition
    last: date | None
    outside: tuple[PendingFile, ...]  # pending event files dated outside the partitions

    @property
    def tags(self) -> dict[str, str]:
        if self.first is None or self.last is None:
            return {}
        return {
            "dagster/asset_partition_range_start": partition_key(self.first),
            "dagster/asset_partition_range_end": partition_key(self.last),
        }


def plan_nightly(
    lake: Lake, registry: Registry, partitioned: Sequence[str], daily: dg.TimeWindowPartitionsDefinition
) -> NightlyPlan:
    """The delivery dates of the ``partitioned`` tables' files not yet in their ledgers."""
    first_key, last_key = daily.get_first_partition_key(), daily.get_last_partition_key()
    lo = partition_date(first_key) if first_key else date.min
    hi = partition_date(last_key) if last_key else date.max
    pending = [f for name in partitioned for f in pending_deliveries(lake, registry.table(name))]
    inside = [
        f.delivered_date for f in pending if f.delivered_date is not None and lo <= f.delivered_date <= hi
    ]
    outside = tuple(f for f in pending if f.delivered_date is None or not lo <= f.delivered_date <= hi)
    return NightlyPlan(tuple(pending), min(inside, default=None), max(inside, default=None), outside)


def alert_hours(plan: NightlyPlan) -> dict[str, str]:
    """Range tags of the hourly alert partitions covering the plan's delivery days (Shanghai hours)."""
    if plan.first is None or plan.last is None:
        return {}
    return {
        "dagster/asset_partition_range_start": f"{plan.first.isoformat()}T00",
        "dagster/asset_partition_range_end": f"{plan.last.isoformat()}T23",
    }


SUBSET_PLANNED_ENV = "DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS"
SUBSET_PLANNED_ABOVE = 62  # partitions in one run: about two months of days, under three days of hours


def range_size(tags: dict[str, str]) -> int:
    """Partitions in a run's range tags (daily ``YYYY-MM-DD`` or hourly ``YYYY-MM-DDTHH`` keys)."""
    start = tags.get("dagster/asset_partition_range_start")
    end = tags.get("dagster/asset_partition_range_end")
    if not start or not end:
        return 0
    if "T" in start:
        first, last = (datetime.strptime(k, "%Y-%m-%dT%H") for k in (start, end))
        return int((last - first).total_seconds() // 3600) + 1
    return (partition_date(end) - partition_date(start)).days + 1


@contextmanager
def planned_events_as_ranges(partitions: int) -> Iterator[bool]:
    """Within: Dagster records one planned event per asset for the run's range when the run
    covers more than :data:`SUBSET_PLANNED_ABOVE` partitions (yields whether it does)."""
    on = partitions > SUBSET_PLANNED_ABOVE
    before = os.environ.get(SUBSET_PLANNED_ENV)
    if on:
        os.environ[SUBSET_PLANNED_ENV] = "true"
    try:
        yield on
    finally:
        if before is None:
            os.environ.pop(SUBSET_PLANNED_ENV, None)
        else:
            os.environ[SUBSET_PLANNED_ENV] = before


def run_nightly(lake: Lake, console: Console | None = None) -> bool:
    """Run the nightly build in this process on the lake's persistent instance.

    Two runs of ``nightly_build``: first ONE ranged run of the partitioned
    assets over the delivery dates (min..max) of the event files not yet
    ingested - skipped when there are none - then a run of the unpartitioned
    assets. Sets ``DAGSTER_HOME`` to ``<lake>/dagster_home``. Returns True when
    every run succeeded and no asset check failed with severity ERROR.
    """
    from pipelines.definitions import build_definitions  # builds the code location: not at import

    console = console or Console()
    home = ensure_dagster_home(lake)
    os.environ["DAGSTER_HOME"] = str(home)
    defs = build_definitions(lake_root=str(lake.root))
    job = defs.resolve_job_def(NIGHTLY_BUILD).with_hooks(_progress_hooks(console))
    alerts_job = defs.resolve_job_def(SAFETY_ALERTS_JOB).with_hooks(_progress_hooks(console))
    in_job = set(job.asset_layer.executable_asset_keys)
    partitioned, unpartitioned = keys_by_partitioning(
        s for s in defs.resolve_all_asset_specs() if s.key in in_job
    )
    console.print(f"nightly_build on {lake.root} (DAGSTER_HOME={home})")

    runs: list[tuple[str, dict[str, Any]]] = []
    alert_tags: dict[str, str] = {}
    daily = job.partitions_def
    if partitioned and isinstance(daily, dg.TimeWindowPartitionsDefinition):
        raw_tables = [k.path[-1] for k in partitioned if k.path[0] == "raw"]
        plan = plan_nightly(lake, load_registry(), raw_tables, daily)
        for f in plan.outside:
            console.print(
                f"[yellow]not ingested[/] {f.source_file}: dated {f.delivered_date}, outside the partitions "
                f"({daily.get_first_partition_key()}..{daily.get_last_partition_key()})"
            )
        if plan.tags:
            console.print(
                f"events: partitions {plan.first}..{plan.last} in one run ({len(plan.pending)} new file(s))"
            )
            runs.append((EVENTS_RUN, {"asset_selection": partitioned, "tags": plan.tags}))
            alert_tags = alert_hours(plan)
        else:
            console.print("events: no new delivery")
    if unpartitioned:
        runs.append((UNPARTITIONED_RUN, {"asset_selection": unpartitioned, "tags": {}}))
    if alert_tags:
        # the safety alerts of every hour of the new delivery days, in one run (after the library:
        # they read library/elder_devices)
        runs.append((ALERTS_RUN, {"asset_selection": None, "tags": alert_tags}))

    results: list[dg.ExecuteInProcessResult] = []
    # the steps run in this process, one after another: the lake's file listings are shared
    # by every step, each dropped when a step commits a file under its folder
    with dg.DagsterInstance.get() as instance, listing_scope():
        for kind, selection in runs:
            with planned_events_as_ranges(range_size(selection["tags"])):
                results.append(
                    (alerts_job if kind == ALERTS_RUN else job).execute_in_process(
                        instance=instance,
                        raise_on_error=False,
                        # step logs stay in the instance (UI); the console shows progress lines only
                        run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}},
                        asset_selection=selection["asset_selection"],
                        tags={
                            **selection["tags"],
                            "rainbow/nightly": kind,
                            "rainbow/trigger": "rainbow build",
                        },
                    )
                )
    failed_checks = [
        ev
        for result in results
        for ev in result.get_asset_check_evaluations()
        if not ev.passed and ev.severity == dg.AssetCheckSeverity.ERROR
    ]
    for ev in failed_checks:
        console.print(f"[red]check failed[/] {ev.asset_key.to_user_string()} {ev.check_name}")
    console.print(_summary(results))
    ok = all(r.success for r in results) and not failed_checks
    for (kind, _), result in zip(runs, results, strict=True):
        console.print(
            f"run {result.run_id} ({kind}): {'[green]success[/]' if result.success else '[red]failure[/]'}"
        )
    return ok

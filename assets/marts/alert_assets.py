"""Dagster wiring of the safety alerts: the hourly ``marts/safety_alerts`` asset, its job and schedule.

A thin wrapper over :mod:`assets.marts.alerts`. Hourly partitions (Asia/Shanghai,
keys ``YYYY-MM-DDTHH`` = the mart's folder names) from ``$RAINBOW_PARTITION_START``;
the schedule runs every hour, five minutes past, for the hour that just ended, so an
alert appears in the next hourly run (stopped by default, like the nightly schedule:
turn it on where the daemon should run it). Each hour reads the staged telemetry of the
delivery days its look-back overlaps (the daily deps map each hour to those days)
and the device list of the library. A backfill runs in one run, hours in time order,
so each hour chains to the alerts of the hours before it.

This module builds its own hourly partitions; ``assets/partitions.py`` stays daily.
(No ``from __future__ import annotations``: Dagster reads the asset function's
``context`` annotation at definition time.)
"""

import os
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING, Any

import dagster as dg
import duckdb

from assets.ingest.views import ensure_views
from assets.marts.alert_rules import AlertRules, load_rules
from assets.marts.alerts import (
    HOUR_FORMAT,
    MART,
    AlertTally,
    Pseudonymise,
    iter_hours,
    load_devices,
    mart_dir,
)
from assets.partitions import DEFAULT_PARTITION_START, PARTITION_START_ENV, PARTITION_TIMEZONE
from assets.staged_assets import staged_asset_key
from masking.pseudonym import load_pseudonym_key, pseudonym
from pipelines.resources import LakeResource
from rainbow.settings import Lake
from schemas import load_registry
from schemas.registry import Registry

if TYPE_CHECKING:  # what define_asset_job / build_schedule_from_partitioned_job return
    from dagster._core.definitions.partitions.partitioned_schedule import (
        UnresolvedPartitionedAssetScheduleDefinition,
    )
    from dagster._core.definitions.unresolved_asset_job_definition import UnresolvedAssetJobDefinition

SAFETY_ALERTS_KEY = dg.AssetKey(["marts", MART])
ELDER_DEVICES_KEY = dg.AssetKey(["library", "elder_devices"])
SAFETY_ALERTS_JOB = "safety_alerts_hourly"
SAFETY_ALERTS_SCHEDULE = "safety_alerts_hourly_schedule"
SCHEDULE_MINUTE = 5
GROUP = "marts"
# daily-partitioned staged telemetry and the unpartitioned device lists it is read with
STAGED_EVENTS = ("wristband_vitals", "wristband_events", "water_readings")
STAGED_LISTS = ("wristband_devices", "water_meters")
PSEUDONYM_PURPOSE = "marts"
MARTS_SCHEMA = "marts"  # the DuckDB schema of the mart views (as assets.marts.common)


def hourly_partitions(start: str | None = None) -> dg.HourlyPartitionsDefinition:
    """Hourly partitions from ``start`` (default ``$RAINBOW_PARTITION_START`` or 2024-01-01),
    Asia/Shanghai; the newest partition is the last complete hour."""
    first = start or os.environ.get(PARTITION_START_ENV) or DEFAULT_PARTITION_START
    day = date.fromisoformat(first)  # fail early on a malformed setting
    return dg.HourlyPartitionsDefinition(
        start_date=f"{day.isoformat()}T00", timezone=PARTITION_TIMEZONE, fmt=HOUR_FORMAT
    )


def alert_view_statement(lake: Lake) -> str:
    """``marts.safety_alerts``: every hour's rows (the partition folder is not read as a column)."""
    glob = str(mart_dir(lake) / "hour=*" / "data.parquet").replace("'", "''")
    return (
        f'CREATE OR REPLACE VIEW {MARTS_SCHEMA}."{MART}" AS SELECT * '
        f"FROM read_parquet('{glob}', hive_partitioning = false, union_by_name = true)"
    )


def create_alert_view(con: duckdb.DuckDBPyConnection, lake: Lake) -> list[str]:
    """(Re)create the view when changed (the dashboards read alert rows through it)."""
    return ensure_views(
        con, lake, MARTS_SCHEMA, f"CREATE SCHEMA IF NOT EXISTS {MARTS_SCHEMA}", [alert_view_statement(lake)]
    )


def marts_pseudonymiser(lake: Lake) -> Pseudonymise:
    """Elder key -> the marts' pseudonym (masking.pseudonym, purpose ``marts``)."""
    key = load_pseudonym_key(lake)
    return lambda elder_key: pseudonym(elder_key, key, PSEUDONYM_PURPOSE)


@dataclass(frozen=True)
class AlertDefinitions:
    assets: list[dg.AssetsDefinition]
    jobs: list["UnresolvedAssetJobDefinition"]
    schedules: list["dg.ScheduleDefinition | UnresolvedPartitionedAssetScheduleDefinition"]


def _metadata(tally: AlertTally, keys: Sequence[str], lake: Lake) -> dict[str, Any]:
    return {
        "dagster/row_count": tally.rows,
        "hours": len(keys),
        "alert_rows": tally.rows,
        "new_alerts": tally.new_alerts,
        "alerts_by_type": dg.MetadataValue.json(dict(sorted(tally.by_type.items()))),
        "new_by_severity": dg.MetadataValue.json(dict(sorted(tally.new_by_severity.items()))),
        "mart_path": dg.MetadataValue.path(str(mart_dir(lake))),
    }


def build_alert_assets(
    hourly: dg.HourlyPartitionsDefinition | None = None,
    rules: AlertRules | None = None,
    pseudonymiser: Callable[[Lake], Pseudonymise] = marts_pseudonymiser,
    device_list_key: dg.AssetKey | None = ELDER_DEVICES_KEY,
    registry: Registry | None = None,
) -> AlertDefinitions:
    """The ``marts/safety_alerts`` asset (hourly), a job selecting it and its hourly schedule.

    ``device_list_key``: the library asset of the device list (``library/elder_devices``);
    None to depend on the staged device lists only.
    """
    hourly = hourly or hourly_partitions()
    rules = rules or load_rules()
    reg = registry or load_registry()
    table, dataset = reg.derived(MART), reg.dataset_of(MART)
    lookback = rules.max_lookback_hours
    # hour H reads the delivery days of [H - look-back, H + 1h)
    daily_map = dg.TimeWindowPartitionMapping(start_offset=-lookback)
    deps: list[dg.AssetDep] = [
        dg.AssetDep(staged_asset_key(t), partition_mapping=daily_map) for t in STAGED_EVENTS
    ]
    deps += [dg.AssetDep(staged_asset_key(t)) for t in STAGED_LISTS]
    if device_list_key is not None:
        deps.append(dg.AssetDep(device_list_key))

    def _safety_alerts(context: dg.AssetExecutionContext, lake: LakeResource) -> dg.MaterializeResult:
        keys = sorted(context.partition_keys)
        devices = load_devices(lake.lake)
        tally = AlertTally()
        for _, rows in iter_hours(lake.lake, keys, rules, devices, pseudonymiser(lake.lake)):
            tally.add(rows)
        with lake.warehouse() as con:
            create_alert_view(con, lake.lake)
        context.log.info(f"{len(keys)} hour(s): {tally.rows} alert rows, {tally.new_alerts} new alerts")
        return dg.MaterializeResult(metadata=_metadata(tally, keys, lake.lake))

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.BetaWarning)
        asset = dg.asset(
            key=SAFETY_ALERTS_KEY,
            deps=deps,
            group_name=GROUP,
            kinds={"polars", "parquet"},
            owners=[f"team:{dataset.table_owner(table)}"],
            tags={
                "zone": "marts",
                "sensitivity": table.sensitivity,
                "open_data": table.open_data,
                "pii": "yes",
            },
            description=(
                "异常告警（每小时）：独居老人12小时用水过少、SOS、跌倒、持续心率异常、低血氧、离开电子围栏；"
                "同一老人同类告警在去重窗口内合并；处置状态见运营库。\n\n"
                "Safety alerts, one partition per hour (Asia/Shanghai): water inactivity of elders living "
                "alone, SOS, falls, sustained abnormal heart rate, low SpO2, geofence exits; thresholds in "
                "`assets/marts/alert_rules.yaml`. An ongoing episode is one alert (same alert_id) across "
                "hours; lifecycle (OPEN/ACKNOWLEDGED/CLOSED) in the operational store."
            ),
            metadata={
                "owner_department": dataset.table_owner(table),
                "rules_version": rules.version_hash,
                "primary_key": dg.MetadataValue.json(["alert_id", "hour"]),
                "lookback_hours": lookback,
            },
            partitions_def=hourly,
            backfill_policy=dg.BackfillPolicy.single_run(),
        )(_safety_alerts)

    job = dg.define_asset_job(
        name=SAFETY_ALERTS_JOB,
        selection=dg.AssetSelection.assets(SAFETY_ALERTS_KEY),
        executor_def=dg.in_process_executor,
        description="异常告警：每小时运行上一小时分区。Safety alerts: the previous hour's partition, hourly.",
    )
    schedule = dg.build_schedule_from_partitioned_job(
        job,
        name=SAFETY_ALERTS_SCHEDULE,
        minute_of_hour=SCHEDULE_MINUTE,
        default_status=dg.DefaultScheduleStatus.STOPPED,
    )
    return AlertDefinitions(assets=[asset], jobs=[job], schedules=[schedule])

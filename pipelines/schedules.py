"""Schedules: the nightly build at 02:00 Asia/Shanghai, for yesterday's deliveries."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, timedelta
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

import dagster as dg

from assets.partitions import PARTITION_TIMEZONE, partition_date, partition_key
from pipelines.jobs import EVENTS_RUN, NIGHTLY_BUILD, UNPARTITIONED_RUN

if TYPE_CHECKING:
    from dagster._core.definitions.unresolved_asset_job_definition import UnresolvedAssetJobDefinition

NIGHTLY_SCHEDULE = "nightly_build_schedule"
NIGHTLY_CRON = "0 2 * * *"
TIMEZONE = PARTITION_TIMEZONE


def nightly_run_requests(
    day: date,
    partitioned: Sequence[dg.AssetKey],
    unpartitioned: Sequence[dg.AssetKey],
    daily: dg.TimeWindowPartitionsDefinition | None,
) -> list[dg.RunRequest]:
    """The night's two runs: ``day``'s partition of the event assets, then the unpartitioned assets.

    The events run is left out when nothing is partitioned or ``day`` lies
    before the first partition.
    """
    key = partition_key(day)
    requests = []
    first = daily.get_first_partition_key() if daily is not None else None
    if partitioned and first is not None and partition_date(first) <= day:
        requests.append(
            dg.RunRequest(
                run_key=f"{NIGHTLY_BUILD}:{key}:{EVENTS_RUN}",
                partition_key=key,
                asset_selection=list(partitioned),
                tags={"rainbow/nightly": EVENTS_RUN},
            )
        )
    if unpartitioned:
        requests.append(
            dg.RunRequest(
                run_key=f"{NIGHTLY_BUILD}:{key}:{UNPARTITIONED_RUN}",
                asset_selection=list(unpartitioned),
                tags={"rainbow/nightly": UNPARTITIONED_RUN},
            )
        )
    return requests


def build_nightly_schedule(
    job: UnresolvedAssetJobDefinition,
    daily: dg.TimeWindowPartitionsDefinition | None,
    partitioned: Sequence[dg.AssetKey],
    unpartitioned: Sequence[dg.AssetKey],
) -> dg.ScheduleDefinition:
    """Every night at 02:00 Shanghai time: yesterday's event partition, then everything unpartitioned.

    Two runs of ``nightly_build`` (:func:`nightly_run_requests`). Files
    delivered for other days are ``landing_sensor``'s (or ``rainbow build``'s)
    business. Stopped by default: turn it on in the UI (or set
    ``default_status``) where the daemon should run the nightly build.
    """

    @dg.schedule(
        name=NIGHTLY_SCHEDULE,
        job=job,
        cron_schedule=NIGHTLY_CRON,
        execution_timezone=TIMEZONE,
        description=(
            "每日 02:00（北京时间）：昨日分区的事件表一次运行，全部非分区资产一次运行。"
            "Daily at 02:00 Asia/Shanghai: yesterday's partition of the event assets, then every "
            "unpartitioned asset (two runs of nightly_build)."
        ),
    )
    def _nightly(context: dg.ScheduleEvaluationContext) -> list[dg.RunRequest]:
        now = context.scheduled_execution_time.astimezone(ZoneInfo(TIMEZONE))
        return nightly_run_requests(now.date() - timedelta(days=1), partitioned, unpartitioned, daily)

    return _nightly

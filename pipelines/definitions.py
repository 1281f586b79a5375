"""The Dagster code location: ``dagster dev -m pipelines.definitions``.

Wiring only. The lake root (``$RAINBOW_LAKE_ROOT``, default ``./data``) and the
first partition (``$RAINBOW_PARTITION_START``, default 2024-01-01) are read from
the environment when the definitions are built here; tests build their own
with :func:`build_definitions`.

A new asset layer (staged, ...) is built with the same ``daily`` partitions
object and appended to ``assets`` / ``checks``: the jobs, the schedule and
``run_nightly`` split the keys by partitions, and the sensor follows each raw
asset downstream within its partitions - none needs a change.
"""

from __future__ import annotations

import dagster as dg

from assets.library_assets import build_library_assets
from assets.mart_assets import build_mart_assets
from assets.marts.alert_assets import build_alert_assets, hourly_partitions
from assets.partitions import daily_partitions
from assets.raw_assets import build_raw_assets
from assets.staged_assets import build_staged_assets
from pipelines.jobs import build_jobs, keys_by_partitioning
from pipelines.resources import LakeResource
from pipelines.schedules import build_nightly_schedule
from pipelines.sensors import build_landing_sensor
from quality.checks import build_quality_checks
from schemas import load_registry


def build_definitions(lake_root: str | None = None, partition_start: str | None = None) -> dg.Definitions:
    """All assets, checks, jobs, the schedule and the sensor, bound to a lake (default: from the env)."""
    registry = load_registry()
    daily = daily_partitions(partition_start)
    raw_assets, raw_checks = build_raw_assets(registry, daily)
    staged_assets, staged_checks = build_staged_assets(registry, daily)
    library_assets, library_checks = build_library_assets(registry)
    mart_assets, mart_checks = build_mart_assets(registry)
    assets: list[dg.AssetsDefinition] = [*raw_assets, *staged_assets, *library_assets, *mart_assets]
    checks: list[dg.AssetChecksDefinition] = [
        *raw_checks,
        *staged_checks,
        *build_quality_checks(registry, daily),
        *library_checks,
        *mart_checks,
    ]
    # daily event assets and unpartitioned ones; the hourly safety alerts have their own job and schedule
    partitioned, unpartitioned = keys_by_partitioning(spec for a in assets for spec in a.specs)
    jobs = build_jobs(partitioned, unpartitioned)
    alerts = build_alert_assets(hourly_partitions(partition_start), registry=registry)
    lake = LakeResource(root=lake_root) if lake_root is not None else LakeResource()
    return dg.Definitions(
        assets=[*assets, *alerts.assets],
        asset_checks=checks,
        jobs=[*jobs.all, *alerts.jobs],
        schedules=[
            build_nightly_schedule(jobs.nightly_build, daily, partitioned, unpartitioned),
            *alerts.schedules,
        ],
        sensors=[build_landing_sensor(registry, assets, daily, jobs)],
        resources={"lake": lake},
        # project-wide: runs launched from the UI (asset materialisations, backfills) run in-process too
        executor=dg.in_process_executor,
    )


defs = build_definitions()

"""Dagster wiring of the safety alerts: hourly partitions, deps on the staged telemetry, the
hourly schedule, and in-process materialisation through the lake resource."""

from __future__ import annotations

import shutil
from datetime import datetime
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from assets.marts.alert_assets import (
    ELDER_DEVICES_KEY,
    SAFETY_ALERTS_JOB,
    SAFETY_ALERTS_KEY,
    SAFETY_ALERTS_SCHEDULE,
    build_alert_assets,
    hourly_partitions,
)
from assets.marts.alerts import hour_path, read_alerts
from assets.partitions import PARTITION_START_ENV, daily_partitions
from assets.staged_assets import build_staged_assets, staged_asset_key
from masking.pseudonym import PSEUDONYM_KEY_ENV, pseudonym
from pipelines.resources import LakeResource
from rainbow.settings import Lake
from rainbow.warehouse import connect_warehouse
from tests.alerts.alert_support import AlertLake
from tests.lakefiles import read_parquet, use_key_of

KEY_HEX = "ab" * 32


def test_hourly_partitions_are_shanghai_hours_from_the_configured_start(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(PARTITION_START_ENV, "2026-11-01")
    hourly = hourly_partitions()
    assert hourly.get_first_partition_key() == "2026-11-01T00"
    assert hourly.timezone == "Asia/Shanghai"
    window = hourly.time_window_for_partition_key("2026-11-05T13")
    assert (window.start.hour, window.end.hour, str(window.start.tzinfo)) == (13, 14, "Asia/Shanghai")
    with pytest.raises(ValueError):
        hourly_partitions("2026-13-01")


def test_the_asset_depends_on_the_staged_telemetry_and_the_device_list() -> None:
    defs = build_alert_assets(hourly_partitions("2026-11-01"))
    (asset,) = defs.assets
    spec = next(iter(asset.specs))
    assert spec.key == SAFETY_ALERTS_KEY
    assert isinstance(spec.partitions_def, dg.HourlyPartitionsDefinition)
    deps = {d.asset_key for d in spec.deps}
    expected = {
        staged_asset_key(t)
        for t in (
            "wristband_vitals",
            "wristband_events",
            "water_readings",
            "wristband_devices",
            "water_meters",
        )
    }
    assert deps == expected | {ELDER_DEVICES_KEY}
    assert spec.owners == ["team:区民政局（智慧养老）"]


def test_definitions_with_the_staged_assets_load_and_the_schedule_runs_the_previous_hour() -> None:
    daily = daily_partitions("2026-11-01")
    staged, _ = build_staged_assets(daily=daily)
    alerts = build_alert_assets(hourly_partitions("2026-11-01"))
    defs = dg.Definitions(
        assets=[*staged, *alerts.assets],
        jobs=alerts.jobs,
        schedules=alerts.schedules,
        resources={"lake": LakeResource(root="/nonexistent")},
    )
    dg.Definitions.validate_loadable(defs)
    schedule = defs.resolve_schedule_def(SAFETY_ALERTS_SCHEDULE)
    assert (schedule.cron_schedule, schedule.execution_timezone) == ("5 * * * *", "Asia/Shanghai")
    assert schedule.job_name == SAFETY_ALERTS_JOB
    at = datetime.fromisoformat("2026-11-05T14:05:00+08:00")
    with dg.build_schedule_context(scheduled_execution_time=at) as ctx:
        data = schedule.evaluate_tick(ctx)
    assert [r.partition_key for r in data.run_requests or []] == ["2026-11-05T13"]


@pytest.fixture()
def copy_lake(alert_lake: AlertLake, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Lake:
    """The generated lake's staged zone and device list, without its alerts."""
    use_key_of(alert_lake.lake, monkeypatch)  # the copied zones stay encrypted under its key
    lake = Lake(tmp_path / "lake")
    shutil.copytree(alert_lake.lake.staged, lake.staged)
    shutil.copytree(alert_lake.lake.library, lake.library)
    return lake


def test_materialising_hours_in_process_writes_the_mart_with_real_pseudonyms(
    alert_lake: AlertLake, copy_lake: Lake, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(PSEUDONYM_KEY_ENV, KEY_HEX)
    busy = alert_lake.rows.group_by("hour").len().sort("len", "hour", descending=[True, False])["hour"][0]
    alerts = build_alert_assets(hourly_partitions("2026-11-01"))
    resources = {"lake": LakeResource(root=str(copy_lake.root))}
    result = dg.materialize(alerts.assets, partition_key=busy, resources=resources)
    assert result.success
    rows = read_parquet(hour_path(copy_lake, busy))
    expected = alert_lake.rows.filter(pl.col("hour") == busy)
    assert rows.height == expected.height > 0
    # same alerts as the pure run, but under the marts' keyed pseudonyms
    elder_of = dict(zip(alert_lake.devices["device_id"], alert_lake.devices["elder_key"], strict=True))
    key = bytes.fromhex(KEY_HEX)
    for device, ps in rows.select("device_id", "elder_pseudonym").rows():
        assert ps == (pseudonym(elder_of[device], key, "marts") if elder_of.get(device) else None)
    (event,) = result.get_asset_materialization_events()
    assert event.materialization.metadata["alert_rows"].value == rows.height

    # a backfill range runs in one run, hours in order
    first = busy[:10] + "T00"
    last = busy[:10] + "T23"
    defs = dg.Definitions(assets=alerts.assets, jobs=alerts.jobs, resources=resources)
    run = defs.resolve_job_def(SAFETY_ALERTS_JOB).execute_in_process(
        tags={"dagster/asset_partition_range_start": first, "dagster/asset_partition_range_end": last}
    )
    assert run.success
    # the run's counts, folded an hour at a time, are those of the rows it wrote
    day = read_alerts(copy_lake).filter(pl.col("hour").str.starts_with(busy[:10]))
    new = day.filter(pl.col("new_alert"))
    metadata = [e.materialization.metadata for e in run.get_asset_materialization_events()]
    assert metadata and day.height > rows.height
    for meta in metadata:
        assert meta["alert_rows"].value == day.height
        assert meta["new_alerts"].value == new.height
        assert meta["alerts_by_type"].value == dict(sorted(day["alert_type"].value_counts().iter_rows()))
        assert meta["new_by_severity"].value == dict(sorted(new["severity"].value_counts().iter_rows()))
    hours = sorted({h for h in read_alerts(copy_lake)["hour"]})
    assert hours and all(h.startswith(busy[:10]) for h in hours)
    assert len(list((copy_lake.marts / "safety_alerts").glob(f"hour={busy[:10]}T*"))) == 24
    # the dashboards' view over every hour
    with connect_warehouse(copy_lake, read_only=True) as con:
        viewed = con.sql("SELECT count(*), count(DISTINCT hour) FROM marts.safety_alerts").fetchall()
    assert viewed == [(read_alerts(copy_lake).height, len(hours))]

"""Safety alerts over a generated lake, scored against the generator's planted incidents.

Every hour of the 14 days runs once (``alert_lake``). Measured: every planted incident
raises its alert; alerts on elders without any planted incident (false alarms) are
counted, printed and bounded; re-running hours rewrites the same partitions; the mart
holds no direct identifier.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import polars as pl
import pytest

from assets.marts.alert_lifecycle import collapse
from assets.marts.alerts import hour_path, read_alerts, run_hour, run_hours
from sample_data.truth import read_truth
from schemas import load_registry
from tests.alerts.alert_support import CONFIG, AlertLake, test_pseudonym
from tests.lakefiles import read_parquet

KIND_TO_ALERT = {
    "sos": "SOS",
    "fall": "FALL",
    "high_heart_rate": "HEART_RATE_HIGH",
    "low_spo2": "LOW_SPO2",
    "geofence_exit": "GEOFENCE_EXIT",
    "water_inactivity": "WATER_INACTIVITY",
}
SLACK = timedelta(hours=1)
PERIOD_END = datetime.combine(CONFIG.end, datetime.max.time())


def _incidents(al: AlertLake) -> pl.DataFrame:
    inc = read_truth(al.lake.truth, "incidents").filter(pl.col("kind").is_in(list(KIND_TO_ALERT)))
    return inc.with_columns(alert_type=pl.col("kind").replace_strict(KIND_TO_ALERT))


def _detectable(inc: pl.DataFrame, al: AlertLake) -> pl.DataFrame:
    """Incidents the rules can see within the period: water silences need window_hours of data."""
    window = timedelta(hours=al.rules.water_inactivity.window_hours)
    return inc.filter((pl.col("alert_type") != "WATER_INACTIVITY") | (pl.col("start") + window <= PERIOD_END))


def _matches(inc: pl.DataFrame, alerts: pl.DataFrame) -> pl.DataFrame:
    """(incident, alert) pairs: same device and type, the alert's episode overlapping the incident."""
    return inc.join(alerts, on=["device_id", "alert_type"]).filter(
        (pl.col("episode_start") <= pl.col("end") + SLACK)
        & (pl.col("episode_end") >= pl.col("start") - SLACK)
    )


@pytest.fixture(scope="module")
def alerts(alert_lake: AlertLake) -> pl.DataFrame:
    return collapse(read_alerts(alert_lake.lake))


def test_every_planted_incident_raises_its_alert(alert_lake: AlertLake, alerts: pl.DataFrame) -> None:
    inc = _detectable(_incidents(alert_lake), alert_lake)
    assert set(inc["alert_type"]) == set(KIND_TO_ALERT.values())  # every kind was planted
    found = _matches(inc, alerts)["incident_id"].unique()
    missed = inc.filter(~pl.col("incident_id").is_in(found.implode()))
    by_kind = inc.group_by("kind").len().sort("kind").rows()
    print(f"\nplanted incidents by kind: {by_kind}; raised: {found.len()}/{inc.height}")
    print(f"alerts run over {len(alert_lake.hours)} hours in {alert_lake.seconds:.1f} s")
    assert missed.height == 0, missed.select("incident_id", "kind", "device_id", "start", "end").rows()


def test_false_alarms_on_elders_without_planted_incidents_are_rare(
    alert_lake: AlertLake, alerts: pl.DataFrame
) -> None:
    inc = _incidents(alert_lake)
    planted = set(inc["device_id"])
    matched = set(_matches(inc, alerts)["alert_id"])
    days = CONFIG.days
    report = []
    for kind in ("WRISTBAND", "WATER_METER"):
        devices = alert_lake.devices.filter(pl.col("device_kind") == kind)["device_id"]
        clean = [d for d in devices if d not in planted]
        false = alerts.filter(pl.col("device_id").is_in(clean))
        per_type = dict(sorted(false.group_by("alert_type").len().rows()))
        per_device = false.group_by("device_id").len()["len"].sort(descending=True).to_list()
        rate = false.height / (len(clean) * days)
        report.append((kind, len(clean), false.height, rate))
        print(
            f"\n{kind}: {len(clean)} clean devices x {days} days: {false.height} false alarms "
            f"({rate:.4f} per device-day) by type {per_type}, per device {per_device}"
        )
        assert rate < 0.02, (kind, per_type)
    # alerts on devices with a planted incident that match none of them (e.g. a fast heart beat during a fall)
    other = alerts.filter(pl.col("device_id").is_in(list(planted)) & ~pl.col("alert_id").is_in(list(matched)))
    unmatched = dict(sorted(other.group_by("alert_type").len().rows()))
    print(f"unmatched alerts on devices with planted incidents: {unmatched}")


def test_each_planted_episode_is_one_alert_not_one_per_hour(
    alert_lake: AlertLake, alerts: pl.DataFrame
) -> None:
    inc = _detectable(_incidents(alert_lake), alert_lake)
    pairs = _matches(inc, alerts)
    per_incident = pairs.group_by("incident_id").agg(pl.col("alert_id").n_unique().alias("alerts"))
    assert per_incident["alerts"].max() == 1
    long = pairs.filter(pl.col("hours") > 1)
    assert long.height > 0  # water silences span many hours, still one alert each
    assert (alert_lake.rows.filter(~pl.col("new_alert")).height) > 0
    # the silence after a death or a move: one alert over days, CRITICAL after critical_after_hours
    after_end = pairs.filter(pl.col("detail").is_in(["老人去世", "老人迁出"]))
    assert after_end.height >= 1
    assert after_end["severity"].unique().to_list() == ["CRITICAL"]
    assert (after_end["hours"] > 48).all()


def test_rerunning_hours_rewrites_the_same_partitions(alert_lake: AlertLake) -> None:
    lake, rules, devices = alert_lake.lake, alert_lake.rules, alert_lake.devices
    busy = alert_lake.rows.group_by("hour").len().sort("len", "hour", descending=[True, False])["hour"][0]
    before = read_parquet(hour_path(lake, busy))
    again = run_hour(lake, busy, rules, devices, test_pseudonym)
    assert again.equals(before) and read_parquet(hour_path(lake, busy)).equals(before)
    day = [h for h in alert_lake.hours if h.startswith(busy[:10])]
    old = {h: read_parquet(hour_path(lake, h)) for h in day}
    run_hours(lake, day, rules, devices, test_pseudonym)
    assert all(read_parquet(hour_path(lake, h)).equals(old[h]) for h in day)


def test_the_mart_holds_no_direct_identifier(alert_lake: AlertLake) -> None:
    registry = load_registry()
    table = registry.derived("safety_alerts")
    rows = read_alerts(alert_lake.lake)
    assert rows.columns == table.column_names
    assert not [c.name for c in table.columns if c.pii == "direct_identifier"]
    secrets: set[str] = set()
    for name in ("wristband_devices", "water_meters"):
        staged = read_parquet(alert_lake.lake.staged / name / "**" / "*.parquet")
        direct = [c.name for c in registry.table(name).columns if c.pii == "direct_identifier"]
        for col in direct:
            secrets |= {v for v in staged[col].drop_nulls().to_list() if len(v) >= 2}
    secrets |= set(alert_lake.devices["elder_key"].drop_nulls())  # the library's elder keys
    text = rows.select(pl.col(pl.String)).unpivot()["value"].drop_nulls().unique().to_list()
    leaks = [s for s in secrets if any(s in t for t in text)]
    assert not leaks
    assert rows["elder_pseudonym"].null_count() < rows.height

"""Alert rules on small hand-made frames: each rule's threshold, duration and gap; de-duplication
across hours; thresholds from configuration; the evidence text."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime, timedelta

import polars as pl
import pytest

from assets.marts.alert_rules import AlertRules, load_rules
from assets.marts.alerts import (
    ALERTS_SCHEMA,
    DEVICES_SCHEMA,
    EVENTS_SCHEMA,
    VITALS_SCHEMA,
    WATER_SCHEMA,
    AlertInputs,
    alert_id,
    alerts_for_hour,
    detect_hits,
    rescue_events,
)
from tests.alerts.alert_support import test_pseudonym

RULES = load_rules()
T0 = datetime(2026, 11, 5, 8, 0)
BAND, METER = "860000000000001", "SB00000001"
FENCE_LAT, FENCE_LON = 31.27, 121.52


def devices(lives_alone: bool | None = True) -> pl.DataFrame:
    return pl.DataFrame(
        [
            {
                "device_kind": "WRISTBAND",
                "device_id": BAND,
                "elder_key": "E00000001",
                "street": "310110019000",
                "lives_alone": None,
                "fence_lat": FENCE_LAT,
                "fence_lon": FENCE_LON,
                "fence_radius_m": 500,
            },
            {
                "device_kind": "WATER_METER",
                "device_id": METER,
                "elder_key": "E00000002",
                "street": "310110012000",
                "lives_alone": lives_alone,
                "fence_lat": None,
                "fence_lon": None,
                "fence_radius_m": None,
            },
        ],
        schema=DEVICES_SCHEMA,
    )


def vitals(
    start: datetime, n: int, every: int = 10, skip: tuple[int, ...] = (), **over: Sequence[float] | float
) -> pl.DataFrame:
    """``n`` readings of the band every ``every`` minutes from ``start``; columns overridable."""
    rows = []
    for i in range(n):
        if i in skip:
            continue
        row: dict[str, object] = {
            "device_id": BAND,
            "measured_at": start + timedelta(minutes=every * i),
            "heart_rate": 75,
            "spo2": 97,
            "steps": 1000 + 50 * i,
            "lat": FENCE_LAT,
            "lon": FENCE_LON,
        }
        for col, value in over.items():
            row[col] = value if isinstance(value, int | float) else value[i]
        rows.append(row)
    return pl.DataFrame(rows, schema=VITALS_SCHEMA)


def events(*items: tuple[str, datetime]) -> pl.DataFrame:
    return pl.DataFrame(
        [
            {"event_id": f"EV{i}", "device_id": BAND, "occurred_at": t, "event_type": k}
            for i, (k, t) in enumerate(items)
        ],
        schema=EVENTS_SCHEMA,
    )


def water(start: datetime, per_hour: list[float], lost: tuple[int, ...] = ()) -> pl.DataFrame:
    """Cumulative readings every hour from ``start``: reading i = 100 + use of hours before i."""
    total, rows = 100.0, []
    for i, use in enumerate(per_hour):
        if i not in lost:
            rows.append(
                {"meter_id": METER, "read_at": start + timedelta(hours=i), "reading_m3": round(total, 3)}
            )
        total += use
    return pl.DataFrame(rows, schema=WATER_SCHEMA)


def inputs(
    v: pl.DataFrame | None = None,
    e: pl.DataFrame | None = None,
    w: pl.DataFrame | None = None,
    **kw: bool | None,
) -> AlertInputs:
    empty = AlertInputs.empty()
    return AlertInputs(
        vitals=v if v is not None else empty.vitals,
        events=e if e is not None else empty.events,
        water=w if w is not None else empty.water,
        devices=devices(**kw),
    )


def hour(
    start: datetime, inp: AlertInputs, rules: AlertRules = RULES, prior: pl.DataFrame | None = None
) -> pl.DataFrame:
    return alerts_for_hour(start, inp, rules, test_pseudonym, prior)


# ---------------------------------------------------------------- heart rate


def test_when_heart_rate_stays_above_120_for_10_minutes_then_one_high_alert() -> None:
    hr = [80, 80, 130, 135, 140, 80]
    out = hour(T0, inputs(vitals(T0, 6, heart_rate=hr)))
    assert out["alert_type"].to_list() == ["HEART_RATE_HIGH"]
    row = out.row(0, named=True)
    assert row["episode_start"] == T0 + timedelta(minutes=20)
    assert row["episode_end"] == T0 + timedelta(minutes=40)
    assert row["detected_at"] == T0 + timedelta(minutes=30)  # ten minutes after it began
    assert row["evidence"] == "心率持续20分钟高于120次/分（最高140次/分），11月5日08:20起"


@pytest.mark.parametrize(
    ("hr", "skip", "why"),
    [
        ([80, 130, 80, 130, 80, 80], (), "single readings above 120 are spikes"),
        ([80, 120, 120, 120, 80, 80], (), "120 itself is not above 120"),
        ([80, 130, 80, 80, 130, 80], (2, 3), "a 30-minute gap breaks the run"),
    ],
)
def test_when_heart_rate_is_not_sustained_then_no_alert(
    hr: list[float], skip: tuple[int, ...], why: str
) -> None:
    out = hour(T0, inputs(vitals(T0, 6, skip=skip, heart_rate=hr)))
    assert out.height == 0, why


def test_when_one_reading_is_lost_inside_a_run_then_it_still_counts() -> None:
    out = hour(T0, inputs(vitals(T0, 6, skip=(3,), heart_rate=[80, 80, 130, 0, 130, 80])))
    assert out["alert_type"].to_list() == ["HEART_RATE_HIGH"]


def test_when_heart_rate_stays_below_45_then_low_alert() -> None:
    out = hour(T0, inputs(vitals(T0, 6, heart_rate=[60, 42, 40, 41, 60, 60])))
    assert out["alert_type"].to_list() == ["HEART_RATE_LOW"]
    assert "最低40次/分" in out["evidence"][0]


def test_when_the_threshold_changes_in_configuration_then_the_result_changes() -> None:
    v = vitals(T0, 6, heart_rate=[80, 80, 115, 118, 117, 80])
    assert hour(T0, inputs(v)).height == 0
    stricter = RULES.with_changes(heart_rate={"high_bpm": 110})
    out = hour(T0, inputs(v), stricter)
    assert out["alert_type"].to_list() == ["HEART_RATE_HIGH"]
    assert "高于110次/分" in out["evidence"][0]
    assert out["rules_version"][0] != RULES.version_hash
    longer = RULES.with_changes(heart_rate={"min_duration_minutes": 30})
    assert hour(T0, inputs(vitals(T0, 6, heart_rate=[80, 80, 130, 135, 140, 80])), longer).height == 0


# ---------------------------------------------------------------- SpO2, SOS, fall, geofence


def test_when_spo2_stays_below_90_then_alert_and_below_85_is_critical() -> None:
    out = hour(T0, inputs(vitals(T0, 6, spo2=[97, 88, 87, 96, 96, 96])))
    assert out.select("alert_type", "severity").rows() == [("LOW_SPO2", "HIGH")]
    out = hour(T0, inputs(vitals(T0, 6, spo2=[97, 88, 84, 96, 96, 96])))
    assert out.select("alert_type", "severity").rows() == [("LOW_SPO2", "CRITICAL")]
    assert hour(T0, inputs(vitals(T0, 6, spo2=[97, 88, 96, 88, 96, 96]))).height == 0
    relaxed = RULES.with_changes(spo2={"below_pct": 85})
    assert hour(T0, inputs(vitals(T0, 6, spo2=[97, 88, 87, 96, 96, 96])), relaxed).height == 0


def test_when_sos_is_pressed_twice_within_the_dedup_window_then_one_critical_alert() -> None:
    out = hour(T0, inputs(e=events(("SOS", T0 + timedelta(minutes=5)), ("SOS", T0 + timedelta(minutes=25)))))
    assert out.select("alert_type", "severity", "hits").rows() == [("SOS", "CRITICAL", 2)]
    assert out["evidence"][0] == "一键呼叫（SOS）2次，11月5日08:05起"
    apart = hour(
        T0,
        inputs(e=events(("SOS", T0 + timedelta(minutes=1)), ("SOS", T0 + timedelta(minutes=59)))),
        RULES.with_changes(sos={"dedup_minutes": 10}),
    )
    assert apart["alert_type"].to_list() == ["SOS", "SOS"]


def test_when_low_battery_is_reported_then_no_alert() -> None:
    assert hour(T0, inputs(e=events(("LOW_BATTERY", T0 + timedelta(minutes=5))))).height == 0


def test_when_steps_stay_flat_after_a_fall_then_the_fall_alert_is_critical() -> None:
    fall_at = T0 + timedelta(minutes=20, seconds=17)
    flat = [1000, 1050, 1100, 1100, 1100, 1100]
    out = hour(T0, inputs(vitals(T0, 6, steps=flat), events(("FALL", fall_at))))
    assert out.select("alert_type", "severity").rows() == [("FALL", "CRITICAL")]
    assert "跌倒后10分钟以上步数无变化" in out["evidence"][0]
    moving = hour(T0, inputs(vitals(T0, 6), events(("FALL", fall_at))))
    assert moving.select("alert_type", "severity").rows() == [("FALL", "HIGH")]


def test_when_the_band_stays_outside_its_fence_past_the_dwell_then_geofence_alert() -> None:
    far = FENCE_LAT + 0.01  # ~1.1 km north, fence radius 500 m
    lat = [FENCE_LAT, far, far, far, FENCE_LAT, FENCE_LAT]
    out = hour(T0, inputs(vitals(T0, 6, lat=lat)))
    assert out["alert_type"].to_list() == ["GEOFENCE_EXIT"]
    assert out["evidence"][0].startswith("离开电子围栏：距围栏中心最远1113米（围栏半径500米），持续20分钟")
    brief = hour(T0, inputs(vitals(T0, 6, lat=[FENCE_LAT, far, FENCE_LAT, FENCE_LAT, FENCE_LAT, FENCE_LAT])))
    assert brief.height == 0  # one reading outside: under the 10-minute dwell
    longer_dwell = RULES.with_changes(geofence_exit={"dwell_minutes": 30})
    assert hour(T0, inputs(vitals(T0, 6, lat=lat)), longer_dwell).height == 0


def test_when_the_band_reports_a_geofence_exit_then_alert_even_without_positions() -> None:
    out = hour(T0, inputs(e=events(("GEOFENCE_EXIT", T0 + timedelta(minutes=3)))))
    assert out.select("alert_type", "severity").rows() == [("GEOFENCE_EXIT", "MEDIUM")]
    assert out["evidence"][0] == "腕表上报离开电子围栏，11月5日08:03起"
    off = RULES.with_changes(geofence_exit={"use_device_events": False})
    assert hour(T0, inputs(e=events(("GEOFENCE_EXIT", T0 + timedelta(minutes=3)))), off).height == 0


# ---------------------------------------------------------------- water


def _quiet_day() -> list[float]:
    """Use 0.01 m3 an hour from 20:00 (day before) to 08:00, then nothing for 20 hours."""
    return [0.01] * 12 + [0.0] * 20


def test_when_an_elder_living_alone_uses_no_water_for_12_hours_then_one_alert_per_episode() -> None:
    start = T0 - timedelta(hours=12)  # readings from 20:00 the evening before
    w = water(start, _quiet_day())
    first = T0 + timedelta(hours=12)  # 12 quiet hours after 08:00
    out = hour(first, inputs(w=w))
    assert out.select("alert_type", "severity", "device_id").rows() == [("WATER_INACTIVITY", "HIGH", METER)]
    row = out.row(0, named=True)
    assert (row["episode_start"], row["detected_at"]) == (T0, first)
    assert (
        row["evidence"]
        == "12小时用水量0.000立方米（阈值0.01立方米/12小时）；自11月5日08:00起约12小时无明显用水（独居）"
    )
    assert hour(first - timedelta(hours=1), inputs(w=w)).height == 0  # 11 quiet hours: not yet


def test_when_the_meter_holds_a_little_use_then_the_threshold_decides() -> None:
    w = water(T0, [0.0007] * 14)  # 0.008 m3 in 12 h (readings have three decimals)
    out = hour(T0 + timedelta(hours=12), inputs(w=w))
    assert out.height == 1
    assert out["evidence"][0].startswith("12小时用水量0.008立方米（阈值0.01立方米/12小时）")
    w = water(T0, [0.001] * 14)  # 0.012 m3 in 12 h
    assert hour(T0 + timedelta(hours=12), inputs(w=w)).height == 0
    lower = RULES.with_changes(water_inactivity={"min_use_m3": 0.005})
    assert hour(T0 + timedelta(hours=12), inputs(w=water(T0, [0.0007] * 14)), lower).height == 0


def test_when_readings_are_lost_the_window_stretches_to_the_last_reading_before_it() -> None:
    w = water(T0, [0.0] * 16, lost=(1, 2))
    out = hour(T0 + timedelta(hours=13), inputs(w=w))
    assert out.height == 1
    assert out["episode_start"][0] == T0  # 13 h from the 08:00 reading; 09:00-12:00 lost: 12:00 is too late
    gone = water(T0, [0.0] * 20, lost=tuple(range(0, 6)))  # first reading at 14:00
    assert hour(T0 + timedelta(hours=12), inputs(w=gone)).height == 0


def test_when_the_reading_goes_down_then_no_alert() -> None:
    w = water(T0, [0.0] * 14).with_columns(
        reading_m3=pl.when(pl.col("read_at") >= T0 + timedelta(hours=6))
        .then(pl.lit(5.0))
        .otherwise("reading_m3")
    )
    assert hour(T0 + timedelta(hours=12), inputs(w=w)).height == 0


def test_water_rule_applies_to_elders_living_alone() -> None:
    w = water(T0, [0.0] * 14)
    at = T0 + timedelta(hours=12)
    assert hour(at, inputs(w=w, lives_alone=False)).height == 0
    assert hour(at, inputs(w=w, lives_alone=None)).height == 1  # unknown: alert (configurable)
    strict = RULES.with_changes(water_inactivity={"unknown_lives_alone_alerts": False})
    assert hour(at, inputs(w=w, lives_alone=None), strict).height == 0
    everyone = RULES.with_changes(water_inactivity={"lives_alone_only": False})
    assert hour(at, inputs(w=w, lives_alone=False), everyone).height == 1


def test_water_silence_longer_than_critical_after_hours_escalates() -> None:
    w = water(T0, [0.0] * 30)
    rows: list[pl.DataFrame] = []
    for h in range(12, 27):
        rows.append(hour(T0 + timedelta(hours=h), inputs(w=w), prior=pl.concat(rows) if rows else None))
    alerts = pl.concat(rows)
    assert alerts["alert_id"].n_unique() == 1
    assert alerts.filter(pl.col("episode_end") - pl.col("episode_start") < timedelta(hours=24))[
        "severity"
    ].unique().to_list() == ["HIGH"]
    assert alerts.filter(pl.col("episode_end") - pl.col("episode_start") >= timedelta(hours=24))[
        "severity"
    ].unique().to_list() == ["CRITICAL"]
    assert "约26小时无明显用水" in alerts["evidence"][-1]


# ---------------------------------------------------------------- de-duplication across hours


def test_an_ongoing_episode_over_two_hours_is_one_alert_extended_not_duplicated() -> None:
    # heart rate above 120 from 08:40 to 09:30
    v = vitals(T0, 12, heart_rate=[80, 80, 80, 80, 130, 131, 132, 133, 134, 135, 80, 80])
    first = hour(T0, inputs(v))
    second = hour(T0 + timedelta(hours=1), inputs(v), prior=first)
    assert first["alert_id"].to_list() == second["alert_id"].to_list()
    assert (first["new_alert"][0], second["new_alert"][0]) == (True, False)
    assert second["episode_start"][0] == T0 + timedelta(minutes=40)
    assert second["episode_end"][0] == T0 + timedelta(minutes=90)
    assert second["detected_at"][0] == first["detected_at"][0]


def test_an_episode_longer_than_the_lookback_keeps_its_alert_through_the_prior_hours() -> None:
    v = vitals(T0, 6 * 8, heart_rate=130)  # 8 hours above 120; look-back is 3 hours
    rows: list[pl.DataFrame] = []
    for h in range(8):
        rows.append(hour(T0 + timedelta(hours=h), inputs(v), prior=pl.concat(rows) if rows else None))
    alerts = pl.concat(rows)
    assert alerts.height == 8
    assert alerts["alert_id"].n_unique() == 1
    assert alerts["episode_start"].unique().to_list() == [T0]
    assert alerts["new_alert"].to_list() == [True] + [False] * 7


def test_a_new_episode_after_the_dedup_window_is_a_new_alert() -> None:
    early = [("SOS", T0 + timedelta(minutes=1))]
    late = [("SOS", T0 + timedelta(hours=2, minutes=1))]
    first = hour(T0, inputs(e=events(*early)))
    third = hour(T0 + timedelta(hours=2), inputs(e=events(*early, *late)), prior=first)
    assert third.height == 1 and third["new_alert"][0]
    assert third["alert_id"][0] != first["alert_id"][0]


def test_without_the_prior_hours_the_id_still_follows_the_episode_start() -> None:
    v = vitals(T0, 12, heart_rate=[80, 80, 80, 80, 130, 131, 132, 133, 134, 135, 80, 80])
    first = hour(T0, inputs(v))
    alone = hour(T0 + timedelta(hours=1), inputs(v))  # the previous hour never ran
    assert alone["alert_id"].to_list() == first["alert_id"].to_list()
    subject = test_pseudonym("E00000001")
    assert first["alert_id"][0] == alert_id(subject, "HEART_RATE_HIGH", T0 + timedelta(minutes=40))


def test_hits_after_the_hour_are_ignored() -> None:
    v = vitals(T0, 12, heart_rate=[80] * 7 + [130] * 5)  # from 09:10
    assert hour(T0, inputs(v)).height == 0
    assert detect_hits(inputs(v), RULES).height > 0


def test_a_device_without_an_elder_still_alerts_under_its_device() -> None:
    unknown = events(("SOS", T0 + timedelta(minutes=1))).with_columns(device_id=pl.lit("869999999999999"))
    out = hour(T0, inputs(e=unknown))
    assert out.select("elder_pseudonym", "device_id", "street").rows() == [(None, "869999999999999", None)]


def test_mart_rows_hold_the_pseudonym_not_the_elder_key() -> None:
    out = hour(T0, inputs(e=events(("SOS", T0 + timedelta(minutes=1)))))
    assert out.schema == pl.Schema(ALERTS_SCHEMA)
    assert out["elder_pseudonym"][0] == test_pseudonym("E00000001")
    assert "E00000001" not in str(out.rows())


# ---------------------------------------------------------------- quarantined events


def test_an_sos_quarantined_for_its_coordinates_still_raises() -> None:
    q = pl.DataFrame(
        {
            "event_id": ["EV1", "EV2", "EV3", "EV4"],
            "device_id": [BAND, BAND, BAND, BAND],
            "occurred_at": [
                "2026-11-05T08:10:00+08:00",
                "2026-11-05T08:20:00+08:00",
                "not a time",
                "2026-11-05T08:30:00+08:00",
            ],
            "event_type": ["SOS", "一键呼叫", "SOS", "SOS"],
            "_reasons": [["OUT_OF_RANGE"], ["OUT_OF_RANGE"], ["BAD_DATE"], ["UNKNOWN_CODE", "OUT_OF_RANGE"]],
            "_delivery_date": [date(2026, 11, 5)] * 4,
            "_source_file": ["f"] * 4,
            "_row_number": [1, 2, 3, 4],
        }
    )
    codes = {"SOS": "SOS", "一键呼叫": "SOS", "FALL": "FALL"}
    rescued = rescue_events(q, codes)
    assert rescued["event_id"].to_list() == ["EV1", "EV2"]
    assert rescued["occurred_at"].to_list() == [T0 + timedelta(minutes=10), T0 + timedelta(minutes=20)]
    out = hour(T0, inputs(e=rescued))
    assert out.select("alert_type", "hits").rows() == [("SOS", 2)]
    assert out["evidence"][0].endswith("（事件记录因其他字段异常进入隔离区，仍据原始记录告警）")


def test_an_extended_alert_keeps_its_highest_severity() -> None:
    # SpO2 84 (CRITICAL) in the first hour, 88 (HIGH) continuing into the next
    spo2 = [97, 97, 97, 97, 84, 88, 88, 88, 97, 97, 97, 97]
    v = vitals(T0, 12, spo2=spo2)
    first = hour(T0, inputs(v))
    second = hour(T0 + timedelta(hours=1), inputs(v), prior=first)
    assert first.select("severity").item() == "CRITICAL"
    assert second.select("alert_id", "severity").row(0) == (first["alert_id"][0], "CRITICAL")

"""The evidence line (告警依据) of every alert row, built column-wise by Polars, equals the
wording written row by row in Python (the oracle below, the mart's wording before it was
vectorised): every alert type, missing numbers, NaN, rounding at .5 and at three decimals,
every mix of sources."""

from __future__ import annotations

import math
from datetime import datetime, timedelta

import polars as pl
import pytest

from assets.marts.alert_rules import (
    ALERT_TYPES,
    FALL,
    GEOFENCE_EXIT,
    HEART_RATE_HIGH,
    HEART_RATE_LOW,
    LOW_SPO2,
    SOS,
    WATER_INACTIVITY,
    AlertRules,
    load_rules,
)
from assets.marts.alerts import QUARANTINE_NOTE, QUARANTINED_EVENT, evidence_column

RULES = load_rules()
T0 = datetime(2026, 1, 5, 8, 3)


def _fmt(t: datetime) -> str:
    return f"{t.month}月{t.day}日{t:%H:%M}"


def _number(x: object) -> float | None:
    return float(x) if isinstance(x, int | float) else None


def evidence(row: dict[str, object], rules: AlertRules) -> str:
    """The oracle: the Chinese evidence line of one alert row, row by row."""
    t = str(row["alert_type"])
    start, end = row["episode_start"], row["episode_end"]
    assert isinstance(start, datetime) and isinstance(end, datetime)
    minutes = round((end - start).total_seconds() / 60)
    value, aux = _number(row["value"]), _number(row["aux"])
    shown = f"{value:.0f}" if value is not None else "?"
    sources = set(row["sources"]) if isinstance(row["sources"], list) else set()
    note = QUARANTINE_NOTE if QUARANTINED_EVENT in sources else ""
    since = f"，{_fmt(start)}起"
    if t == WATER_INACTIVITY:
        w = rules.water_inactivity
        window = aux if aux is not None else float(w.window_hours)
        quiet = (end - start).total_seconds() / 3600
        return (
            f"{window:.0f}小时用水量{value or 0:.3f}立方米（阈值{w.min_use_m3}立方米/{w.window_hours}小时）；"
            f"自{_fmt(start)}起约{quiet:.0f}小时无明显用水（独居）"
        )
    if t == HEART_RATE_HIGH:
        return f"心率持续{minutes}分钟高于{rules.heart_rate.high_bpm}次/分（最高{shown}次/分）{since}"
    if t == HEART_RATE_LOW:
        return f"心率持续{minutes}分钟低于{rules.heart_rate.low_bpm}次/分（最低{shown}次/分）{since}"
    if t == LOW_SPO2:
        return f"血氧饱和度持续{minutes}分钟低于{rules.spo2.below_pct:g}%（最低{shown}%）{since}"
    if t == SOS:
        return f"一键呼叫（SOS）{row['events']}次{since}{note}"
    if t == FALL:
        text = f"腕表检测到跌倒（{_fmt(start)}）"
        if "immobile" in sources:
            text += f"；跌倒后{rules.fall.no_movement_minutes}分钟以上步数无变化"
        return text + note
    if t == GEOFENCE_EXIT:
        parts = []
        if "vitals" in sources and value is not None:
            radius = f"（围栏半径{aux:.0f}米）" if aux is not None else ""
            parts.append(f"离开电子围栏：距围栏中心最远{shown}米{radius}，持续{minutes}分钟")
        if sources & {"event", QUARANTINED_EVENT}:
            parts.append("腕表上报离开电子围栏")
        return "；".join(parts) + since + note
    raise ValueError(f"unknown alert type {t!r}")


SCHEMA: dict[str, pl.DataType] = {
    "alert_type": pl.String(),
    "episode_start": pl.Datetime("us"),
    "episode_end": pl.Datetime("us"),
    "value": pl.Float64(),
    "aux": pl.Float64(),
    "sources": pl.List(pl.String()),
    "events": pl.Int64(),
}
# .0f rounds half to even (0.5 -> 0, 2.5 -> 2, 3.5 -> 4); 0.0005 is a hair above a half
# thousandth in binary (.3f -> 0.001; Polars round(3) -> 0.0); 0.0095 a hair below (-> 0.009)
VALUES = [
    None,
    0.0,
    0.5,
    1.5,
    2.5,
    3.5,
    37.0,
    140.0,
    1113.4999,
    0.0005,
    0.0015,
    0.0095,
    0.00999,
    math.nan,
    1e21,
]
AUX = [None, 12.0, 500.0, 15.5, 16.0]
SOURCES = [
    None,
    [],
    ["vitals"],
    ["event"],
    [QUARANTINED_EVENT],
    ["event", "vitals"],
    ["event", QUARANTINED_EVENT, "vitals"],
    ["event", "immobile"],
    ["immobile", QUARANTINED_EVENT],
    ["reading"],
]
# spans: 0, 30 s (half a minute: 0 by half-to-even), 90 s (2), 150 s (2), 20 min, 1,800 h 30 min
SPANS = [
    timedelta(0),
    timedelta(seconds=30),
    timedelta(seconds=90),
    timedelta(seconds=150),
    timedelta(minutes=20),
    timedelta(hours=1800, minutes=30),
    timedelta(hours=2, seconds=1),
]


def _rows() -> pl.DataFrame:
    rows = []
    for i, t in enumerate(ALERT_TYPES):
        for j, value in enumerate(VALUES):
            for k, sources in enumerate(SOURCES):
                start = T0 + timedelta(days=37 * i + j, hours=k)
                rows.append(
                    {
                        "alert_type": t,
                        "episode_start": start,
                        "episode_end": start + SPANS[(j + k) % len(SPANS)],
                        "value": value,
                        "aux": AUX[(i + j + k) % len(AUX)],
                        "sources": sources,
                        "events": (j * k) % 4,
                    }
                )
    return pl.DataFrame(rows, schema=SCHEMA)


@pytest.mark.parametrize(
    "rules",
    [RULES, RULES.with_changes(spo2={"below_pct": 88.5}, water_inactivity={"min_use_m3": 0.02})],
    ids=["configured", "changed"],
)
def test_the_evidence_column_equals_the_row_by_row_wording(rules: AlertRules) -> None:
    frame = _rows()
    got = evidence_column(frame, rules)
    want = [evidence(row, rules) for row in frame.iter_rows(named=True)]
    assert got.null_count() == 0
    mismatches = [
        (row, g, w) for row, g, w in zip(frame.iter_rows(named=True), got, want, strict=True) if g != w
    ]
    assert not mismatches, mismatches[:3]
    # the cases the rows hold (a regression in the table above would make this test weak)
    assert set(frame["alert_type"]) == set(ALERT_TYPES)
    assert {"0.001立方米", "0.009立方米", "nan立方米"} <= {
        w[w.index("量") + 1 :].split("（")[0] for w in want if "用水量" in w
    }
    assert any("最高2次/分" in w for w in want) and any("最低4%" in w for w in want)
    assert any("持续0分钟" in w for w in want) and any("持续2分钟" in w for w in want)


def test_an_alert_type_without_wording_is_an_error() -> None:
    frame = _rows().head(1).with_columns(alert_type=pl.lit("SMOKE"))
    with pytest.raises(ValueError, match="SMOKE"):
        evidence_column(frame, RULES)


def test_no_rows_give_no_evidence() -> None:
    assert evidence_column(pl.DataFrame(schema=SCHEMA), RULES).len() == 0


def test_each_type_reads_as_the_mart_shows_it() -> None:
    """Golden lines (the wording leadership and stewards see)."""
    base = {"value": None, "aux": None, "sources": None, "events": 0, "episode_start": T0}
    rows = [
        {**base, "alert_type": HEART_RATE_HIGH, "value": 140.0, "episode_end": T0 + timedelta(minutes=20)},
        {**base, "alert_type": HEART_RATE_LOW, "value": 37.0, "episode_end": T0 + timedelta(minutes=160)},
        {**base, "alert_type": LOW_SPO2, "value": 85.0, "episode_end": T0 + timedelta(minutes=10)},
        {**base, "alert_type": SOS, "events": 2, "sources": ["event"], "episode_end": T0},
        {**base, "alert_type": FALL, "sources": ["event", "immobile"], "episode_end": T0},
        {
            **base,
            "alert_type": GEOFENCE_EXIT,
            "value": 1113.0,
            "aux": 500.0,
            "sources": ["vitals"],
            "episode_end": T0 + timedelta(minutes=20),
        },
        {
            **base,
            "alert_type": WATER_INACTIVITY,
            "value": 0.008,
            "aux": 12.0,
            "sources": ["reading"],
            "episode_end": T0 + timedelta(hours=26),
        },
    ]
    got = evidence_column(pl.DataFrame(rows, schema=SCHEMA), RULES).to_list()
    assert got == [
        "心率持续20分钟高于120次/分（最高140次/分），1月5日08:03起",
        "心率持续160分钟低于45次/分（最低37次/分），1月5日08:03起",
        f"血氧饱和度持续10分钟低于{RULES.spo2.below_pct:g}%（最低85%），1月5日08:03起",
        "一键呼叫（SOS）2次，1月5日08:03起",
        f"腕表检测到跌倒（1月5日08:03）；跌倒后{RULES.fall.no_movement_minutes}分钟以上步数无变化",
        "离开电子围栏：距围栏中心最远1113米（围栏半径500米），持续20分钟，1月5日08:03起",
        "12小时用水量0.008立方米（阈值0.01立方米/12小时）；自1月5日08:03起约26小时无明显用水（独居）",
    ]

"""Alert lifecycle in the operational store: OPEN -> ACKNOWLEDGED -> CLOSED, who/when/note,
invalid transitions refused, state joined at read time, auto-closing of long-ended episodes."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import polars as pl
import pytest

from assets.marts.alert_lifecycle import (
    AlertLifecycleError,
    InvalidTransition,
    UnknownAlert,
    acknowledge,
    alert_history,
    close,
    current_alerts,
)
from assets.marts.alert_rules import load_rules
from assets.marts.alerts import DEVICES_SCHEMA, EVENTS_SCHEMA, hour_key, run_hours
from rainbow.settings import Lake
from tests.alerts.alert_support import test_pseudonym

T0 = datetime(2026, 11, 5, 8, 0)
RULES = load_rules()


@pytest.fixture()
def lake(tmp_path: Path) -> Lake:
    """A lake whose mart holds two SOS alerts (hours 08 and 20) written by run_hours."""
    lake = Lake(tmp_path / "lake")
    day = lake.staged / "wristband_events" / "date=2026-11-05"
    day.mkdir(parents=True)
    pl.DataFrame(
        {
            "event_id": ["EV1", "EV2"],
            "device_id": ["860000000000001", "860000000000002"],
            "occurred_at": [T0 + timedelta(minutes=5), T0 + timedelta(hours=12, minutes=5)],
            "event_type": ["SOS", "SOS"],
        },
        schema=EVENTS_SCHEMA,
    ).write_parquet(day / "data.parquet")
    devices = pl.DataFrame(
        {
            "device_kind": ["WRISTBAND"] * 2,
            "device_id": ["860000000000001", "860000000000002"],
            "elder_key": ["E1", "E2"],
        }
    ).with_columns(
        [
            pl.lit(None, t).alias(c)
            for c, t in DEVICES_SCHEMA.items()
            if c not in ("device_kind", "device_id", "elder_key")
        ]
    )
    hours = [hour_key(T0 + timedelta(hours=h)) for h in range(13)]
    run_hours(lake, hours, RULES, devices.select(list(DEVICES_SCHEMA)), test_pseudonym)
    return lake


def _ids(lake: Lake) -> list[str]:
    return current_alerts(lake).sort("detected_at")["alert_id"].to_list()


def test_a_new_alert_is_open(lake: Lake) -> None:
    cur = current_alerts(lake)
    assert cur.height == 2
    assert cur["state"].to_list() == ["OPEN", "OPEN"]
    assert cur["state_by"].to_list() == [None, None]


def test_acknowledge_then_close_records_who_when_and_note(lake: Lake) -> None:
    first, _ = _ids(lake)
    acknowledge(lake, first, "王社工", "已电话联系家属", at=datetime(2026, 11, 5, 8, 20))
    row = current_alerts(lake).filter(pl.col("alert_id") == first).row(0, named=True)
    assert (row["state"], row["state_by"], row["state_at"], row["state_note"]) == (
        "ACKNOWLEDGED",
        "王社工",
        "2026-11-05T08:20:00",
        "已电话联系家属",
    )
    close(lake, first, "李志愿者", "上门查看，老人安好", at=datetime(2026, 11, 5, 9, 0))
    row = current_alerts(lake).filter(pl.col("alert_id") == first).row(0, named=True)
    assert (row["state"], row["state_by"], row["state_note"]) == ("CLOSED", "李志愿者", "上门查看，老人安好")
    assert row["acknowledged_by"] == "王社工"  # the acknowledgement stays on record
    history = alert_history(lake, first)
    assert history.select("from_state", "to_state", "user").rows() == [
        ("OPEN", "ACKNOWLEDGED", "王社工"),
        ("ACKNOWLEDGED", "CLOSED", "李志愿者"),
    ]


def test_an_open_alert_can_be_closed_directly(lake: Lake) -> None:
    _, second = _ids(lake)
    close(lake, second, "王社工", "误触")
    assert current_alerts(lake).filter(pl.col("alert_id") == second)["state"].item() == "CLOSED"


@pytest.mark.parametrize(
    ("steps", "bad"),
    [
        (["ack"], "ack"),  # acknowledged twice
        (["close"], "ack"),  # closed, then acknowledged
        (["close"], "close"),  # closed twice
        (["ack", "close"], "close"),
    ],
)
def test_invalid_transitions_raise_and_change_nothing(lake: Lake, steps: list[str], bad: str) -> None:
    first, _ = _ids(lake)
    do = {"ack": acknowledge, "close": close}
    for step in steps:
        do[step](lake, first, "王社工", "")
    before = alert_history(lake, first)
    with pytest.raises(InvalidTransition, match=f"alert {first} is"):
        do[bad](lake, first, "张三", "")
    assert alert_history(lake, first).equals(before)


def test_unknown_alerts_and_missing_users_are_refused(lake: Lake) -> None:
    with pytest.raises(UnknownAlert):
        acknowledge(lake, "AL0000000000000000", "王社工")
    first, _ = _ids(lake)
    with pytest.raises(AlertLifecycleError, match="user"):
        close(lake, first, "  ")


def test_episodes_that_ended_long_ago_read_as_closed_by_the_system(lake: Lake) -> None:
    first, second = _ids(lake)
    late = T0 + timedelta(hours=80)
    cur = current_alerts(lake, as_of=late)  # 08:05 + 72 h < 80 h; 20:05 + 72 h > 80 h
    states = dict(zip(cur["alert_id"], cur["state"], strict=True))
    assert states == {first: "CLOSED", second: "OPEN"}
    row = cur.filter(pl.col("alert_id") == first).row(0, named=True)
    assert (row["auto_closed"], row["state_by"]) == (True, "system")
    assert row["state_note"] == "事件结束超过72小时，系统自动关闭"
    never = load_rules().model_copy(update={"auto_close_after_hours": None})
    assert set(current_alerts(lake, rules=never, as_of=late)["state"]) == {"OPEN"}
    # by default as_of is the end of the newest alert hour: nothing is that old yet
    assert set(current_alerts(lake)["state"]) == {"OPEN"}

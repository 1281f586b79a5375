"""The shortcuts of the district-scale alert path give exactly what the plain path gives:
the hashed repeat check (:func:`keys_repeat`) and the water rule's one-key pairing
(``_paired_by_key``) against the as-of join by meter."""

from __future__ import annotations

import random
from datetime import datetime, timedelta

import polars as pl
import pytest

import assets.marts.alerts as alerts
from assets.marts.alert_rules import load_rules
from assets.marts.alerts import DEVICES_SCHEMA, HOUR, WATER_SCHEMA, keys_repeat, water_hits

RULES = load_rules()
T0 = datetime(2026, 11, 5, 0, 0)


def _water(seed: int, meters: int = 30, hours: int = 40) -> pl.DataFrame:
    """Hourly readings with lost hours, minute jitter, quiet stretches, resets and null readings."""
    rng = random.Random(seed)
    rows = []
    for m in range(meters):
        level = rng.uniform(0, 500)
        quiet_from = rng.randrange(hours)
        quiet_for = rng.choice([0, 6, 13, 20, 30])
        for h in range(hours):
            if rng.random() < 0.12:
                continue  # a lost reading
            at = T0 + timedelta(hours=h, minutes=rng.choice([0, 0, 0, 1, 59]), seconds=rng.randrange(3))
            if not quiet_from <= h < quiet_from + quiet_for:
                level += rng.choice([0.0, 0.004, 0.02, 0.3])
            if rng.random() < 0.02:
                level = 0.0  # a meter reset
            value = None if rng.random() < 0.03 else round(level, 3)
            rows.append({"meter_id": f"SB{m:08d}", "read_at": at, "reading_m3": value})
    rng.shuffle(rows)
    return pl.DataFrame(rows, schema=WATER_SCHEMA)


def _devices(meters: int, seed: int) -> pl.DataFrame:
    """Most meters listed: living alone, not, or unknown; some not listed at all."""
    rng = random.Random(seed)
    rows = [
        {
            "device_kind": "WATER_METER",
            "device_id": f"SB{m:08d}",
            "elder_key": f"E{m:08d}",
            "street": "310110019000",
            "lives_alone": rng.choice([True, True, False, None]),
            "fence_lat": None,
            "fence_lon": None,
            "fence_radius_m": None,
        }
        for m in range(meters)
        if rng.random() < 0.85
    ]
    return pl.DataFrame(rows, schema=DEVICES_SCHEMA)


def _as_of(water: pl.DataFrame, devices: pl.DataFrame, rules: object) -> pl.DataFrame:
    """The rule through the as-of join: readings tagged with one evaluated hour take that path."""
    tagged = water.with_columns(pl.lit(T0, dtype=pl.Datetime("us")).alias(HOUR))
    return water_hits(tagged, devices, rules).drop(HOUR)  # type: ignore[arg-type]


def _sorted(hits: pl.DataFrame) -> pl.DataFrame:
    return hits.sort("device_id", "hit_at", "run_start")


@pytest.mark.parametrize("seed", range(6))
def test_water_pairing_by_one_key_equals_the_as_of_join(seed: int) -> None:
    w, dev = _water(seed), _devices(30, seed)
    for rules in (
        RULES,
        RULES.with_changes(water_inactivity={"unknown_lives_alone_alerts": False}),
        RULES.with_changes(water_inactivity={"lives_alone_only": False}),
    ):
        fast = water_hits(w, dev, rules)
        plain = _as_of(w, dev, rules)
        assert fast.height > 0
        assert _sorted(fast).equals(_sorted(plain))


def test_water_pairing_takes_the_fast_path_and_falls_back_when_a_reading_repeats(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    w, dev = _water(7), _devices(30, 7)
    calls: list[bool] = []
    real = alerts._paired_by_key

    def spy(frame: pl.DataFrame, window: timedelta) -> pl.DataFrame | None:
        out = real(frame, window)
        calls.append(out is not None)
        return out

    monkeypatch.setattr(alerts, "_paired_by_key", spy)
    fast = water_hits(w, dev, RULES)
    # the same reading twice: the one key repeats, the as-of join decides (and finds the same)
    doubled = pl.concat([w, w.head(50)])
    again = water_hits(doubled, dev, RULES)
    assert calls == [True, False]
    assert _sorted(again).equals(_sorted(_as_of(doubled, dev, RULES)))
    assert fast.height > 0


def test_water_pairing_falls_back_when_the_span_does_not_fit_the_key() -> None:
    w = _water(3)
    far = w.head(1).with_columns(pl.col("read_at") + timedelta(days=5))  # 3.2 days fit
    both = pl.concat([w, far])
    assert alerts._paired_by_key(both.drop_nulls("reading_m3"), timedelta(hours=12)) is None
    dev = _devices(30, 3)
    assert _sorted(water_hits(both, dev, RULES)).equals(_sorted(_as_of(both, dev, RULES)))


@pytest.mark.parametrize("seed", range(20))
def test_keys_repeat_says_what_the_exact_check_says(seed: int) -> None:
    rng = random.Random(seed)
    n = rng.choice([0, 1, 2, 50, 500])
    frame = pl.DataFrame(
        {
            "a": [rng.choice(["x", "y", None, "长"]) for _ in range(n)],
            "b": [rng.randrange(40) if rng.random() > 0.1 else None for _ in range(n)],
            "t": [T0 + timedelta(minutes=rng.randrange(60)) for _ in range(n)],
        },
        schema={"a": pl.String, "b": pl.Int64, "t": pl.Datetime("us")},
    )
    for keys in (["a"], ["a", "b"], ["a", "b", "t"], ["t"]):
        assert keys_repeat(frame, keys) == bool(frame.select(keys).is_duplicated().any())


def test_keys_repeat_compares_values_when_hashes_collide(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every hash made equal: the answer still comes from the values."""
    frame = pl.DataFrame({"a": ["x", "y", "z"], "b": [1, 2, 3]})
    real_select = pl.DataFrame.select
    faked: list[int] = []

    def colliding(self: pl.DataFrame, *exprs: object, **named: object) -> pl.DataFrame:
        out = real_select(self, *exprs, **named)  # type: ignore[arg-type]
        if out.width == 1 and out.dtypes[0] == pl.UInt32 and out.height == 1:
            faked.append(out.item())
            return pl.DataFrame({out.columns[0]: [1]}, schema={out.columns[0]: pl.UInt32})
        return out

    monkeypatch.setattr(pl.DataFrame, "select", colliding)
    assert keys_repeat(frame, ["a", "b"]) is False
    assert keys_repeat(pl.concat([frame, frame.head(1)]), ["a", "b"]) is True
    assert faked == [3, 3]  # both answers came past a (faked) hash collision

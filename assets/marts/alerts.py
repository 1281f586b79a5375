"""Safety alerts (异常告警): detection rules over wristband and water-meter telemetry, per hour.

Pure functions first (Polars frames in, frames out, no I/O), then the lake paths:

* :func:`detect_hits` applies every rule of :class:`~assets.marts.alert_rules.AlertRules`
  to the readings/events up to the end of one hour and returns *hits*: one row per
  moment a rule's condition held (an SOS event, a heart-rate reading that completes
  ten abnormal minutes, a water reading after twelve quiet hours, ...).
* :func:`group_episodes` merges one elder's hits of one alert type into episodes:
  a hit starting within the rule's ``dedup_minutes`` of the previous hit's end
  belongs to the same episode.
* :func:`alerts_for_hour` keeps the episodes with a hit inside the hour, chains each
  to an alert of an earlier hour (same elder and type, ended within the de-dup
  window: same ``alert_id``, earliest start) and writes the evidence in Chinese.

An ongoing episode is therefore one alert: every hour it lasts adds one row (the
alert's state in that hour) under the same ``alert_id``.

Many hours at once (a backfill, a nightly run of a day): :func:`run_hours` detects a block
of up to a day of hours in one pass. Each reading is repeated once per hour whose look-back
window holds it, tagged with that hour (``_hour``), and every rule groups by device *and*
``_hour``: the result is exactly what the hours would find one by one (same windows, same
delivery days read, same order), at a fraction of the per-call cost. Water readings, with the
longest look-back (16 copies each), are not repeated when the block's deliveries are clean (each
reading in its own day's file, no repeated meter and time): the water rule runs once and each hit
goes to the hours that would find it. Only the chaining to earlier alerts stays hour by hour,
because an hour continues the alerts of the hours before it. The mart is
``<lake>/marts/safety_alerts/hour=YYYY-MM-DDTHH/data.parquet``; an hour's file
depends only on the data up to the end of that hour and on the files of earlier
hours, so re-running an hour rewrites the same file. No names, ID numbers,
phones or addresses: the elder appears only as a pseudonymous key.
"""

from __future__ import annotations

import hashlib
import math
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Literal

import polars as pl

from assets.marts.alert_rules import (
    ALERT_TYPES,
    FALL,
    GEOFENCE_EXIT,
    HEART_RATE_HIGH,
    HEART_RATE_LOW,
    LOW_SPO2,
    SEVERITY_RANK,
    SOS,
    WATER_INACTIVITY,
    AlertRules,
)
from rainbow.frames import keys_repeat
from rainbow.io import atomic_path
from rainbow.parquet import read_frame
from rainbow.settings import Lake
from rainbow.workers import read_ahead
from schemas import load_registry

MART = "safety_alerts"
HOUR_FORMAT = "%Y-%m-%dT%H"  # partition keys and folder names: hour=2026-11-05T13
WRISTBAND = "WRISTBAND"
WATER_METER = "WATER_METER"
HOUR = "_hour"  # the hour a repeated reading/hit is evaluated for (blocks of hours, see run_hours)
BLOCK_HOURS = 24  # hours detected in one pass by run_hours

QUARANTINED_EVENT = "quarantined_event"
# quarantine reasons that leave an event's device, time and type trustworthy (e.g. a GPS value
# out of range): such SOS/FALL/GEOFENCE_EXIT events still raise their alert
RESCUABLE_REASONS = frozenset({"OUT_OF_RANGE", "MISSING_REQUIRED", "BAD_NUMBER"})
RESCUED_EVENT_TYPES = ("SOS", "FALL", "GEOFENCE_EXIT")
EVENT_TIMESTAMP_FORMS = ("%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S", "%Y/%m/%d %H:%M:%S", "%Y-%m-%d %H:%M")

Pseudonymise = Callable[[str], str]

DEVICES_SCHEMA: dict[str, pl.DataType] = {
    "device_kind": pl.String(),
    "device_id": pl.String(),
    "elder_key": pl.String(),
    "street": pl.String(),
    "lives_alone": pl.Boolean(),
    "fence_lat": pl.Float64(),
    "fence_lon": pl.Float64(),
    "fence_radius_m": pl.Int64(),
}
VITALS_SCHEMA: dict[str, pl.DataType] = {
    "device_id": pl.String(),
    "measured_at": pl.Datetime("us"),
    "heart_rate": pl.Int64(),
    "spo2": pl.Int64(),
    "steps": pl.Int64(),
    "lat": pl.Float64(),
    "lon": pl.Float64(),
}
EVENTS_SCHEMA: dict[str, pl.DataType] = {
    "event_id": pl.String(),
    "device_id": pl.String(),
    "occurred_at": pl.Datetime("us"),
    "event_type": pl.String(),
}
WATER_SCHEMA: dict[str, pl.DataType] = {
    "meter_id": pl.String(),
    "read_at": pl.Datetime("us"),
    "reading_m3": pl.Float64(),
}
HITS_SCHEMA: dict[str, pl.DataType] = {
    "device_kind": pl.String(),
    "device_id": pl.String(),
    "alert_type": pl.String(),
    "run_start": pl.Datetime("us"),  # when the condition began (the episode start this hit implies)
    "hit_at": pl.Datetime("us"),  # when the condition held (the alert is due from then)
    "value": pl.Float64(),  # the reading behind the hit (bpm, %, metres, m3; 1 for an event)
    "aux": pl.Float64(),  # geofence radius; water window hours
    "source": pl.String(),  # event / quarantined_event / vitals / immobile / reading
    "severity": pl.String(),
}
# one row per alert and hour in which the alert had a hit (the mart; contract schemas/marts/alerts.yaml)
ALERTS_SCHEMA: dict[str, pl.DataType] = {
    "alert_id": pl.String(),
    "hour": pl.String(),
    "alert_type": pl.String(),
    "severity": pl.String(),
    "elder_pseudonym": pl.String(),
    "street": pl.String(),
    "device_kind": pl.String(),
    "device_id": pl.String(),
    "detected_at": pl.Datetime("us"),
    "episode_start": pl.Datetime("us"),
    "episode_end": pl.Datetime("us"),
    "hits": pl.Int64(),
    "new_alert": pl.Boolean(),
    "evidence": pl.String(),
    "rules_version": pl.String(),
}


@dataclass(frozen=True)
class AlertInputs:
    """What the rules read for one hour (times: Shanghai wall clock, naive)."""

    vitals: pl.DataFrame
    events: pl.DataFrame
    water: pl.DataFrame
    devices: pl.DataFrame
    # (first, end, look-back hours) when vitals and events are repeated per hour of [first, end)
    # but the water readings are not (see hourly_inputs): their hits are spread over the hours.
    # Set only for clean readings: each in its own day's file, no (meter, time) twice
    water_block: tuple[datetime, datetime, int] | None = None

    @classmethod
    def empty(cls) -> AlertInputs:
        return cls(
            pl.DataFrame(schema=VITALS_SCHEMA),
            pl.DataFrame(schema=EVENTS_SCHEMA),
            pl.DataFrame(schema=WATER_SCHEMA),
            pl.DataFrame(schema=DEVICES_SCHEMA),
        )


# ---------------------------------------------------------------- hours


def hour_key(start: datetime) -> str:
    return start.strftime(HOUR_FORMAT)


def hour_start(key: str) -> datetime:
    return datetime.strptime(key, HOUR_FORMAT)


# ---------------------------------------------------------------- rules -> hits


def _empty_hits() -> pl.DataFrame:
    return pl.DataFrame(schema=HITS_SCHEMA)


def _minutes(n: float) -> pl.Expr:
    return pl.duration(microseconds=round(n * 60_000_000))


def _hour_cols(frame: pl.DataFrame) -> list[str]:
    """``[HOUR]`` when the frame holds readings repeated per evaluated hour, else ``[]``."""
    return [HOUR] if HOUR in frame.columns else []


def _sustained(
    frame: pl.DataFrame,
    key: str,
    time: str,
    flag: pl.Expr,
    value: pl.Expr,
    *,
    min_duration_minutes: float,
    min_readings: int,
    max_gap_minutes: float,
    extreme: Literal["min", "max"],
) -> pl.DataFrame:
    """Hits of a sustained condition: the flagged readings of a run of consecutive flagged
    readings (no gap over ``max_gap_minutes``) once it counts ``min_readings`` readings
    spanning ``min_duration_minutes``. Columns: key (and ``_hour``), run_start, hit_at, value
    (the run's ``extreme`` value so far, e.g. its lowest SpO2)."""
    keys = [key, *_hour_cols(frame)]
    empty = pl.DataFrame(
        schema={
            key: pl.String(),
            **({HOUR: pl.Datetime("us")} if HOUR in keys else {}),
            "run_start": pl.Datetime("us"),
            "hit_at": pl.Datetime("us"),
            "value": pl.Float64(),
        }
    )
    if frame.height == 0:
        return empty
    f = frame.select(
        *keys, pl.col(time).alias("hit_at"), flag.alias("_flag"), value.cast(pl.Float64).alias("value")
    )
    if not f["_flag"].any():  # the usual hour: nothing abnormal, skip the run bookkeeping
        return empty
    # runs only form on the keys with a flagged reading: the others are not sorted at all
    f = f.join(f.filter(pl.col("_flag")).select(keys).unique(), on=keys, how="semi")
    f = f.sort(*keys, "hit_at", maintain_order=True).with_columns(
        _brk=(
            (pl.col("_flag") != pl.col("_flag").shift(1).over(keys))
            | ((pl.col("hit_at") - pl.col("hit_at").shift(1).over(keys)) > _minutes(max_gap_minutes))
        ).fill_null(True)
    )
    f = f.with_columns(_run=pl.col("_brk").cum_sum()).filter(pl.col("_flag"))
    f = f.with_columns(
        run_start=pl.col("hit_at").min().over("_run"),
        _n=pl.int_range(1, pl.len() + 1).over("_run"),
        value=(pl.col("value").cum_min() if extreme == "min" else pl.col("value").cum_max()).over("_run"),
    )
    return f.filter(
        (pl.col("_n") >= min_readings)
        & (pl.col("hit_at") - pl.col("run_start") >= _minutes(min_duration_minutes))
    ).select(*keys, "run_start", "hit_at", "value")


def _as_hits(
    frame: pl.DataFrame,
    device_kind: str,
    alert_type: str,
    source: str,
    severity: str,
    aux: pl.Expr | None = None,
) -> pl.DataFrame:
    key = "meter_id" if "meter_id" in frame.columns else "device_id"
    return frame.select(
        *_hour_cols(frame),
        pl.lit(device_kind).alias("device_kind"),
        pl.col(key).alias("device_id"),
        pl.lit(alert_type).alias("alert_type"),
        pl.col("run_start").cast(pl.Datetime("us")),
        pl.col("hit_at").cast(pl.Datetime("us")),
        pl.col("value").cast(pl.Float64),
        (aux if aux is not None else pl.lit(None)).cast(pl.Float64).alias("aux"),
        pl.lit(source).alias("source"),
        pl.lit(severity).alias("severity"),
    )


def heart_rate_hits(vitals: pl.DataFrame, rules: AlertRules) -> pl.DataFrame:
    r = rules.heart_rate
    if not r.enabled:
        return _empty_hits()
    v = vitals.filter(pl.col("heart_rate").is_not_null())
    out = []
    bounds: tuple[tuple[str, pl.Expr, Literal["min", "max"]], ...] = (
        (HEART_RATE_HIGH, pl.col("heart_rate") > r.high_bpm, "max"),
        (HEART_RATE_LOW, pl.col("heart_rate") < r.low_bpm, "min"),
    )
    for alert_type, flag, extreme in bounds:
        runs = _sustained(
            v,
            "device_id",
            "measured_at",
            flag,
            pl.col("heart_rate"),
            min_duration_minutes=r.min_duration_minutes,
            min_readings=r.min_readings,
            max_gap_minutes=r.max_gap_minutes,
            extreme=extreme,
        )
        out.append(_as_hits(runs, WRISTBAND, alert_type, "vitals", r.severity))
    return pl.concat(out)


def spo2_hits(vitals: pl.DataFrame, rules: AlertRules) -> pl.DataFrame:
    r = rules.spo2
    if not r.enabled:
        return _empty_hits()
    runs = _sustained(
        vitals.filter(pl.col("spo2").is_not_null()),
        "device_id",
        "measured_at",
        pl.col("spo2") < r.below_pct,
        pl.col("spo2"),
        min_duration_minutes=r.min_duration_minutes,
        min_readings=r.min_readings,
        max_gap_minutes=r.max_gap_minutes,
        extreme="min",
    )
    hits = _as_hits(runs, WRISTBAND, LOW_SPO2, "vitals", r.severity)
    if r.critical_below_pct is not None:
        hits = hits.with_columns(
            severity=pl.when(pl.col("value") < r.critical_below_pct)
            .then(pl.lit("CRITICAL"))
            .otherwise(pl.col("severity"))
        )
    return hits


def _event_hits(events: pl.DataFrame, event_type: str, alert_type: str, severity: str) -> pl.DataFrame:
    ev = events.filter(pl.col("event_type") == event_type)
    hits = _as_hits(
        ev.select(
            *_hour_cols(ev),
            "device_id",
            pl.col("occurred_at").alias("run_start"),
            pl.col("occurred_at").alias("hit_at"),
            value=pl.lit(1.0),
        ),
        WRISTBAND,
        alert_type,
        "event",
        severity,
    )
    return hits.with_columns(
        source=pl.when(ev["from_quarantine"]).then(pl.lit(QUARANTINED_EVENT)).otherwise(pl.col("source"))
    )


def sos_hits(events: pl.DataFrame, rules: AlertRules) -> pl.DataFrame:
    r = rules.sos
    return _event_hits(events, "SOS", SOS, r.severity) if r.enabled else _empty_hits()


def fall_hits(events: pl.DataFrame, vitals: pl.DataFrame, rules: AlertRules) -> pl.DataFrame:
    """A hit per FALL event; when the band's step count then stays flat for
    ``no_movement_minutes``, a second hit (at the reading that shows it) at the higher severity."""
    r = rules.fall
    if not r.enabled:
        return _empty_hits()
    hits = _event_hits(events, "FALL", FALL, r.severity)
    if r.no_movement_minutes is None or hits.height == 0:
        return hits
    h = _hour_cols(hits)
    dev = ["device_id", *h]  # a fall is judged within the readings of its own evaluated hour
    falls = hits.select(*dev, pl.col("hit_at").alias("fall_at"))
    need = timedelta(minutes=r.no_movement_minutes)
    v = vitals.filter(pl.col("steps").is_not_null()).select(*dev, "measured_at", "steps")
    # readings from the last one before the fall (within half an hour) to the first one at or
    # after fall + no_movement_minutes; flat steps over all of them = no movement
    near = falls.join(v, on=dev).filter(
        (pl.col("measured_at") >= pl.col("fall_at") - timedelta(minutes=30))
        & (pl.col("measured_at") <= pl.col("fall_at") + need + timedelta(minutes=30))
    )
    base = (
        near.filter(pl.col("measured_at") <= pl.col("fall_at"))
        .group_by(*dev, "fall_at")
        .agg(pl.col("measured_at").max().alias("from_at"))
    )
    confirm = (
        near.filter(pl.col("measured_at") >= pl.col("fall_at") + need)
        .group_by(*dev, "fall_at")
        .agg(pl.col("measured_at").min().alias("to_at"))
    )
    spans = confirm.join(base, on=[*dev, "fall_at"], how="left").with_columns(
        from_at=pl.coalesce("from_at", "fall_at")
    )
    flat = (
        spans.join(near, on=[*dev, "fall_at"])
        .filter(pl.col("measured_at").is_between(pl.col("from_at"), pl.col("to_at")))
        .group_by(*dev, "fall_at", "to_at")
        .agg(moved=pl.col("steps").max() - pl.col("steps").min(), readings=pl.len())
        .filter((pl.col("moved") == 0) & (pl.col("readings") >= 2))
        .select(
            *dev,
            pl.col("fall_at").alias("run_start"),
            pl.col("to_at").alias("hit_at"),
            value=pl.lit(0.0),
        )
    )
    return pl.concat([hits, _as_hits(flat, WRISTBAND, FALL, "immobile", r.no_movement_severity)])


def _distance_m(lat: pl.Expr, lon: pl.Expr, lat0: pl.Expr, lon0: pl.Expr) -> pl.Expr:
    """Metres between two nearby points (equirectangular; < 0.1% off within a district)."""
    dy = (lat - lat0) * 111_320.0
    dx = (lon - lon0) * 111_320.0 * (lat0 * math.pi / 180.0).cos()
    return (dx * dx + dy * dy).sqrt()


def geofence_hits(
    vitals: pl.DataFrame, events: pl.DataFrame, devices: pl.DataFrame, rules: AlertRules
) -> pl.DataFrame:
    r = rules.geofence_exit
    if not r.enabled:
        return _empty_hits()
    fences = devices.filter(
        (pl.col("device_kind") == WRISTBAND)
        & pl.col("fence_lat").is_not_null()
        & pl.col("fence_lon").is_not_null()
        & pl.col("fence_radius_m").is_not_null()
    ).select("device_id", "fence_lat", "fence_lon", "fence_radius_m")
    v = vitals.filter(pl.col("lat").is_not_null() & pl.col("lon").is_not_null()).join(fences, on="device_id")
    v = v.with_columns(
        dist=_distance_m(pl.col("lat"), pl.col("lon"), pl.col("fence_lat"), pl.col("fence_lon"))
    )
    runs = _sustained(
        v,
        "device_id",
        "measured_at",
        pl.col("dist") > pl.col("fence_radius_m") + r.margin_m,
        pl.col("dist"),
        min_duration_minutes=r.dwell_minutes,
        min_readings=1,
        max_gap_minutes=r.max_gap_minutes,
        extreme="max",
    ).join(fences.select("device_id", "fence_radius_m"), on="device_id", how="left")
    out = [_as_hits(runs, WRISTBAND, GEOFENCE_EXIT, "vitals", r.severity, aux=pl.col("fence_radius_m"))]
    if r.use_device_events:
        ev = _event_hits(events, "GEOFENCE_EXIT", GEOFENCE_EXIT, r.severity).with_columns(
            value=pl.lit(None, pl.Float64)
        )
        out.append(
            ev.drop("aux")
            .join(
                fences.select("device_id", pl.col("fence_radius_m").cast(pl.Float64).alias("aux")),
                on="device_id",
                how="left",
            )
            .select(*_hour_cols(ev), *HITS_SCHEMA)
        )
    return pl.concat(out)


def water_hits(water: pl.DataFrame, devices: pl.DataFrame, rules: AlertRules) -> pl.DataFrame:
    """A hit per reading after which the meter counted < ``min_use_m3`` over the previous
    ``window_hours`` (measured from the last reading at or before the window's start, at most
    ``max_gap_hours`` earlier), for meters of elders living alone."""
    r = rules.water_inactivity
    if not r.enabled or water.height == 0:
        return _empty_hits()
    h = _hour_cols(water)
    w = water.filter(pl.col("reading_m3").is_not_null() & pl.col("read_at").is_not_null()).select(
        *h, "meter_id", "read_at", "reading_m3"
    )
    if r.lives_alone_only:
        # listed meters whose elder lives alone (or is not known not to, if so set); unlisted
        # meters only when unknown counts (a membership test: a join cost 36 ms a district day)
        meters = devices.filter(pl.col("device_kind") == WATER_METER)
        alone = pl.col("lives_alone").fill_null(r.unknown_lives_alone_alerts)
        kept = meters.filter(alone)["device_id"].drop_nulls()
        if r.unknown_lives_alone_alerts:  # all but the listed meters none of whose rows keep them
            listed = meters["device_id"].drop_nulls().unique()
            w = w.filter(~pl.col("meter_id").is_in(listed.filter(~listed.is_in(kept.implode())).implode()))
        else:
            w = w.filter(pl.col("meter_id").is_in(kept.implode()))
    window = timedelta(hours=r.window_hours)
    paired = None if h else _paired_by_key(w, window)
    if paired is None:
        w = w.sort("meter_id", *h, "read_at", maintain_order=True)
        starts = w.select(
            "meter_id",
            *h,
            pl.col("read_at").alias("from_at"),
            pl.col("reading_m3").alias("from_m3"),
            (pl.col("read_at") + window).alias("_due"),
        ).sort("meter_id", *h, "_due", maintain_order=True)
        paired = w.with_columns(_due=pl.col("read_at")).join_asof(
            starts, on="_due", by=["meter_id", *h], strategy="backward", check_sortedness=False
        )
    quiet = paired.filter(
        pl.col("from_at").is_not_null()
        & (pl.col("read_at") - pl.col("from_at") <= window + timedelta(hours=r.max_gap_hours))
    ).with_columns(used=(pl.col("reading_m3") - pl.col("from_m3")).round(6))
    # a negative difference is a meter reset or a bad reading, not quietness
    quiet = quiet.filter((pl.col("used") >= 0) & (pl.col("used") < r.min_use_m3))
    if "meter_id" not in quiet.columns:  # paired by key: the meter of the hits only
        quiet = quiet.with_columns(meter_id=w["meter_id"].gather(quiet["_row"]))
    quiet = quiet.select(
        *h,
        "meter_id",
        pl.col("from_at").alias("run_start"),
        pl.col("read_at").alias("hit_at"),
        pl.col("used").alias("value"),
        ((pl.col("read_at") - pl.col("from_at")).dt.total_minutes() / 60.0).alias("_hours"),
    )
    return _as_hits(quiet, WATER_METER, WATER_INACTIVITY, "reading", r.severity, aux=pl.col("_hours"))


# _paired_by_key: meter number and microseconds since the first reading in one int64
_TIME_BITS = 38  # 3.2 days of microseconds
_METER_LIMIT = 1 << (62 - _TIME_BITS)


def _paired_by_key(w: pl.DataFrame, window: timedelta) -> pl.DataFrame | None:
    """Each reading of ``w`` (meter_id, read_at, reading_m3; no null time) with the meter's last
    reading at least ``window`` before it (``from_at``, ``from_m3``; null when there is none) and
    its row in ``w`` (``_row``; no ``meter_id``, taken for the few hits only): what the as-of
    join by meter gives, from one integer key (meter number, then time) sorted once and joined
    as of without ``by`` (a district day's water rule 245 -> 86 ms with the filter). None when
    the key does not fit (more meters or a longer span than it holds) or a (meter, time)
    repeats: the caller joins as of by meter instead."""
    if w.height == 0:
        return None
    keyed = w.select(
        _m=pl.col("meter_id").cast(pl.Categorical).to_physical().cast(pl.Int64),
        _t=(pl.col("read_at") - pl.col("read_at").min()).dt.total_microseconds(),
        _row=pl.int_range(pl.len(), dtype=pl.Int64),
        read_at=pl.col("read_at"),
        reading_m3=pl.col("reading_m3"),
    )
    most_meter, most_time = keyed.select(pl.col("_m").max(), pl.col("_t").max()).row(0)
    if most_meter >= _METER_LIMIT or most_time >= 1 << _TIME_BITS:
        return None
    keyed = keyed.select(
        (pl.col("_m") * (1 << _TIME_BITS) + pl.col("_t")).alias("_k"), "_row", "read_at", "reading_m3"
    ).sort("_k")
    if bool((keyed["_k"].diff() == 0).any()):
        return None
    back = int(window / timedelta(microseconds=1))
    starts = keyed.select(
        (pl.col("_k") + back).alias("_due"),
        pl.col("_k").alias("_from_k"),
        pl.col("read_at").alias("from_at"),
        pl.col("reading_m3").alias("from_m3"),
    )
    # the last key <= this key - window; a start of the same meter only if its number matches
    paired = keyed.join_asof(
        starts, left_on="_k", right_on="_due", strategy="backward", check_sortedness=False
    )
    same = (pl.col("_from_k") // (1 << _TIME_BITS)) == (pl.col("_k") // (1 << _TIME_BITS))
    return paired.select(
        "_row",
        "read_at",
        "reading_m3",
        pl.when(same).then(pl.col("from_at")).alias("from_at"),
        pl.when(same).then(pl.col("from_m3")).alias("from_m3"),
    )


def _conform(part: pl.DataFrame, schema: dict[str, pl.DataType]) -> pl.DataFrame:
    """A rule's hits in ``schema``; a disabled rule (or one without rows to read) answers an
    empty frame without ``_hour``."""
    if HOUR in schema and HOUR not in part.columns:
        if part.height:
            raise ValueError("hits of hour-tagged inputs lost their _hour column")
        part = part.with_columns(pl.lit(None, pl.Datetime("us")).alias(HOUR))
    return part.select(list(schema)).cast(schema)  # type: ignore[arg-type]


def _water_hits_per_hour(hits: pl.DataFrame, block: tuple[datetime, datetime, int] | None) -> pl.DataFrame:
    """Water hits found once over a block's readings, tagged with every hour of the block that
    would find them on its own: hour ``H`` sees a hit when its reading is before ``H``'s end
    and the window's start reading is inside ``H``'s look-back (``run_start >= H - look-back``:
    the start reading an hour pairs a reading with is the last one a window before it, the same
    reading the whole block finds, if the hour reads it at all). Exact when every reading lies
    in its own day's delivery file and no (meter, time) repeats (:func:`hourly_inputs` checks)."""
    if block is None or hits.height == 0:
        return hits
    first, end, lookback = block
    return _repeat_hours(hits, "hit_at", lookback).filter(
        (pl.col(HOUR) >= first)
        & (pl.col(HOUR) < end)
        & (pl.col(HOUR) <= pl.col("run_start").dt.truncate("1h") + timedelta(hours=lookback))
    )


def _before_end(frame: pl.DataFrame, time_col: str, end: datetime | None) -> pl.DataFrame:
    """Rows before ``end`` and, for rows repeated per hour, before their hour's end."""
    if end is not None:
        frame = frame.filter(pl.col(time_col) < end)
    if HOUR in frame.columns:
        frame = frame.filter(pl.col(time_col) < pl.col(HOUR) + timedelta(hours=1))
    return frame


def _first_of_each(frame: pl.DataFrame, keys: list[str]) -> pl.DataFrame:
    """The first row of each ``keys`` value, in order (``unique(keep="first")``); a frame whose
    keys do not repeat - the usual case - is returned after a check (:func:`keys_repeat`)."""
    if not keys_repeat(frame, keys):
        return frame
    return frame.unique(keys, keep="first", maintain_order=True)


def detect_hits(inputs: AlertInputs, rules: AlertRules, end: datetime | None = None) -> pl.DataFrame:
    """Every rule's hits over the inputs (readings and events before ``end`` only).

    When the inputs carry ``_hour`` (readings repeated per evaluated hour, :func:`hourly_inputs`),
    each hour is evaluated on its own rows only (readings before the hour's end) and the hits
    carry ``_hour``."""
    vitals, events, water = inputs.vitals, inputs.events, inputs.water
    h = _hour_cols(vitals)
    water_once = inputs.water_block is not None
    repeated = (vitals, events) if water_once else (vitals, events, water)
    if {HOUR in f.columns for f in repeated} != {bool(h)} or (
        water_once and (not h or HOUR in water.columns)
    ):
        raise ValueError("vitals, events and water must all carry _hour or none (water: see water_block)")
    vitals = _before_end(vitals, "measured_at", end)
    events = _before_end(events, "occurred_at", end)
    water = _before_end(water, "read_at", end)
    vitals = _first_of_each(vitals, ["device_id", *h, "measured_at"])
    if "from_quarantine" not in events.columns:
        events = events.with_columns(from_quarantine=pl.lit(False))
    # a staged copy of an event wins over a rescued quarantined one
    events = events.sort(*h, "from_quarantine", "event_id", maintain_order=True).unique(
        ["event_id", *h], keep="first", maintain_order=True
    )
    if not water_once:  # a clean block (hourly_inputs checked it) repeats no (meter, time)
        water = _first_of_each(water, ["meter_id", *_hour_cols(water), "read_at"])
    parts = [
        heart_rate_hits(vitals, rules),
        spo2_hits(vitals, rules),
        sos_hits(events, rules),
        fall_hits(events, vitals, rules),
        geofence_hits(vitals, events, inputs.devices, rules),
        _water_hits_per_hour(water_hits(water, inputs.devices, rules), inputs.water_block),
    ]
    schema = {**({HOUR: pl.Datetime("us")} if h else {}), **HITS_SCHEMA}
    hits = pl.concat([_conform(p, schema) for p in parts])
    return hits.sort(
        *h, "device_kind", "device_id", "alert_type", "hit_at", "run_start", "source", maintain_order=True
    )


# ---------------------------------------------------------------- hits -> episodes -> alerts


def _subjects(hits: pl.DataFrame, devices: pl.DataFrame, pseudonymise: Pseudonymise) -> pl.DataFrame:
    """Hits with the elder's pseudonym, street and the de-dup subject (elder, else device)."""
    dev = devices.select("device_kind", "device_id", "elder_key", "street").unique(
        ["device_kind", "device_id"], keep="last", maintain_order=True
    )
    h = hits.join(dev, on=["device_kind", "device_id"], how="left")
    keys = sorted({k for k in h["elder_key"].to_list() if k is not None})
    mapping = pl.DataFrame(
        {"elder_key": keys, "elder_pseudonym": [pseudonymise(k) for k in keys]},
        schema={"elder_key": pl.String(), "elder_pseudonym": pl.String()},
    )
    h = h.join(mapping, on="elder_key", how="left").drop("elder_key")
    return h.with_columns(
        subject=pl.coalesce("elder_pseudonym", pl.concat_str("device_kind", pl.lit(":"), "device_id"))
    )


def group_episodes(hits: pl.DataFrame, rules: AlertRules) -> pl.DataFrame:
    """Merge each subject's hits of one type: a hit starting more than the type's
    ``dedup_minutes`` after every earlier hit ended opens a new episode. Adds ``episode``."""
    if hits.height == 0:
        return hits.with_columns(episode=pl.lit(None, pl.Int64))
    dedup = pl.col("alert_type").replace_strict(
        {t: rules.dedup_minutes(t) for t in hits["alert_type"].unique().to_list()}, return_dtype=pl.Int64
    )
    by = [*_hour_cols(hits), "subject", "alert_type"]  # episodes never span two evaluated hours
    h = hits.sort(*by, "run_start", "hit_at", maintain_order=True).with_columns(
        _prev_end=pl.col("hit_at").cum_max().shift(1).over(by),
        _dedup=pl.duration(minutes=dedup),
    )
    new = pl.col("_prev_end").is_null() | (pl.col("run_start") > pl.col("_prev_end") + pl.col("_dedup"))
    return h.with_columns(episode=new.cast(pl.Int64).cum_sum()).drop("_prev_end", "_dedup")


def _severity_max(col: str) -> pl.Expr:
    rank = pl.col(col).replace_strict(SEVERITY_RANK, return_dtype=pl.Int64)
    inverse = {v: k for k, v in SEVERITY_RANK.items()}
    return rank.max().replace_strict(inverse, return_dtype=pl.String)


def alert_id(subject: str, alert_type: str, episode_start: datetime) -> str:
    """Stable id of an alert: elder (or device), type, episode start."""
    text = f"{subject}|{alert_type}|{episode_start:%Y-%m-%dT%H:%M:%S}"
    return "AL" + hashlib.sha256(text.encode("utf-8")).hexdigest()[:16].upper()


QUARANTINE_NOTE = "（事件记录因其他字段异常进入隔离区，仍据原始记录告警）"


def _formatted(values: pl.Series, spec: str) -> pl.Series:
    """``format(value, spec)`` of every non-null float, by Python (the same digits as the
    f-strings the wording used row by row): once per distinct value, mapped onto the column."""
    distinct = values.drop_nulls().unique()
    if distinct.len() == 0:
        return pl.Series(values.name, [None] * values.len(), dtype=pl.String)
    text = pl.Series([format(float(v), spec) for v in distinct.to_list()], dtype=pl.String)
    return values.replace_strict(distinct, text, default=None, return_dtype=pl.String)


def evidence_column(eps: pl.DataFrame, rules: AlertRules) -> pl.Series:
    """The Chinese evidence line of every alert row: the numbers behind the alert and the threshold
    they broke. Numbers are formatted by Python once per distinct value (``.0f``, ``.3f``), the
    sentences put together by Polars (the row-by-row wording it replaced is the test's oracle,
    ``tests/alerts/test_alert_evidence.py``).
    ``eps`` needs alert_type, episode_start, episode_end, value, aux, sources and events."""
    unknown = set(eps["alert_type"].unique().to_list()) - set(ALERT_TYPES)
    if unknown:
        raise ValueError(f"unknown alert type {sorted(unknown, key=str)[0]!r}")
    if eps.height == 0:
        return pl.Series("evidence", [], dtype=pl.String)
    w = rules.water_inactivity
    span_us = (eps["episode_end"] - eps["episode_start"]).dt.total_microseconds()
    window = eps["aux"].fill_null(float(w.window_hours))
    used = eps["value"].fill_null(0.0)
    f = eps.select("alert_type", "sources", "events", value_null=pl.col("value").is_null()).with_columns(
        _minutes=_formatted(span_us / 10**6 / 60, ".0f"),  # round() as .0f: half to even alike
        _shown=_formatted(eps["value"], ".0f").fill_null("?"),
        _radius=_formatted(eps["aux"], ".0f"),
        _window=_formatted(window, ".0f"),
        _used=_formatted(used, ".3f"),
        _quiet=_formatted(span_us / 10**6 / 3600, ".0f"),
        _start=eps["episode_start"].dt.strftime("%-m月%-d日%H:%M"),
    )
    t = pl.col("alert_type")
    has = pl.col("sources").list
    quarantined = has.contains(QUARANTINED_EVENT).fill_null(False)
    note = pl.when(quarantined).then(pl.lit(QUARANTINE_NOTE)).otherwise(pl.lit(""))
    since = pl.concat_str(pl.lit("，"), "_start", pl.lit("起"))
    fell = pl.concat_str(pl.lit("腕表检测到跌倒（"), "_start", pl.lit("）"))
    immobile = pl.lit(f"；跌倒后{rules.fall.no_movement_minutes}分钟以上步数无变化")
    by_vitals = has.contains("vitals").fill_null(False) & ~pl.col("value_null")
    by_event = (has.contains("event").fill_null(False)) | quarantined
    fence_vitals = pl.concat_str(
        pl.lit("离开电子围栏：距围栏中心最远"),
        "_shown",
        pl.lit("米"),
        pl.when(pl.col("_radius").is_not_null())
        .then(pl.concat_str(pl.lit("（围栏半径"), "_radius", pl.lit("米）")))
        .otherwise(pl.lit("")),
        pl.lit("，持续"),
        "_minutes",
        pl.lit("分钟"),
    )
    fence = pl.concat_str(
        pl.when(by_vitals & by_event)
        .then(pl.concat_str(fence_vitals, pl.lit("；腕表上报离开电子围栏")))
        .when(by_vitals)
        .then(fence_vitals)
        .when(by_event)
        .then(pl.lit("腕表上报离开电子围栏"))
        .otherwise(pl.lit("")),
        since,
        note,
    )

    def sustained(kind: str, limit: object, extreme: str, unit: str) -> pl.Expr:
        return pl.concat_str(
            pl.lit(f"{kind}持续"),
            "_minutes",
            pl.lit(f"分钟{limit}（{extreme}"),
            "_shown",
            pl.lit(f"{unit}）"),
            since,
        )

    text = (
        pl.when(t == WATER_INACTIVITY)
        .then(
            pl.concat_str(
                "_window",
                pl.lit("小时用水量"),
                "_used",
                pl.lit(f"立方米（阈值{w.min_use_m3}立方米/{w.window_hours}小时）；自"),
                "_start",
                pl.lit("起约"),
                "_quiet",
                pl.lit("小时无明显用水（独居）"),
            )
        )
        .when(t == HEART_RATE_HIGH)
        .then(sustained("心率", f"高于{rules.heart_rate.high_bpm}次/分", "最高", "次/分"))
        .when(t == HEART_RATE_LOW)
        .then(sustained("心率", f"低于{rules.heart_rate.low_bpm}次/分", "最低", "次/分"))
        .when(t == LOW_SPO2)
        .then(sustained("血氧饱和度", f"低于{rules.spo2.below_pct:g}%", "最低", "%"))
        .when(t == SOS)
        .then(
            pl.concat_str(
                pl.lit("一键呼叫（SOS）"), pl.col("events").cast(pl.String), pl.lit("次"), since, note
            )
        )
        .when(t == FALL)
        .then(
            pl.concat_str(
                fell,
                pl.when(has.contains("immobile").fill_null(False)).then(immobile).otherwise(pl.lit("")),
                note,
            )
        )
        .otherwise(fence)
    )
    return f.select(text.alias("evidence")).to_series()


def _value_agg() -> pl.Expr:
    """Per episode: the most abnormal reading (water: the latest window's use)."""
    t = pl.col("alert_type").first()
    latest = pl.col("value").sort_by("hit_at").drop_nulls().last()
    return (
        pl.when(t.is_in([HEART_RATE_HIGH, GEOFENCE_EXIT]))
        .then(pl.col("value").max())
        .when(t.is_in([HEART_RATE_LOW, LOW_SPO2]))
        .then(pl.col("value").min())
        .otherwise(latest)
    )


def alerts_for_hour(
    start: datetime,
    inputs: AlertInputs,
    rules: AlertRules,
    pseudonymise: Pseudonymise,
    prior: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """The alert rows of the hour ``[start, start + 1 h)`` (schema :data:`ALERTS_SCHEMA`).

    ``inputs`` hold the readings of the hour and its look-back (later ones are ignored);
    ``prior`` the mart rows of earlier hours (:func:`read_prior`) to chain ongoing alerts to.
    """
    tagged = AlertInputs(
        vitals=_at_hour(inputs.vitals, start),
        events=_at_hour(inputs.events, start),
        water=_at_hour(inputs.water, start),
        devices=inputs.devices,
    )
    eps = hour_episodes(detect_hits(tagged, rules), inputs.devices, rules, pseudonymise)
    return hour_rows(start, eps, rules, prior)


def _at_hour(frame: pl.DataFrame, start: datetime) -> pl.DataFrame:
    return frame.with_columns(pl.lit(start, dtype=pl.Datetime("us")).alias(HOUR))


def hour_episodes(
    hits: pl.DataFrame, devices: pl.DataFrame, rules: AlertRules, pseudonymise: Pseudonymise
) -> pl.DataFrame:
    """Episodes of hits tagged with their evaluated hour (``_hour``): one row per episode with a
    hit inside its hour, before chaining (:func:`hour_rows`)."""
    if hits.height == 0:
        return pl.DataFrame(schema={HOUR: pl.Datetime("us"), "episode": pl.Int64()})
    hits = group_episodes(_subjects(hits, devices, pseudonymise), rules)
    in_hour = (pl.col("hit_at") >= pl.col(HOUR)) & (pl.col("hit_at") < pl.col(HOUR) + timedelta(hours=1))
    return (
        hits.group_by("episode", maintain_order=True)
        .agg(
            pl.col(HOUR).first(),
            pl.col("subject").first(),
            pl.col("alert_type").first(),
            _severity_max("severity").alias("severity"),
            pl.col("elder_pseudonym").first(),
            pl.col("street").first(),
            pl.col("device_kind").sort_by("hit_at").last(),
            pl.col("device_id").sort_by("hit_at").last(),
            pl.col("hit_at").min().alias("detected_at"),
            pl.col("run_start").min().alias("episode_start"),
            pl.col("hit_at").max().alias("episode_end"),
            in_hour.sum().cast(pl.Int64).alias("hits"),
            _value_agg().alias("value"),
            pl.col("aux").drop_nulls().last().alias("aux"),
            pl.col("source").unique().sort().alias("sources"),
            pl.col("source").is_in(["event", QUARANTINED_EVENT]).sum().cast(pl.Int64).alias("events"),
        )
        .filter(pl.col("hits") > 0)
    )


def hour_rows(
    start: datetime, eps: pl.DataFrame, rules: AlertRules, prior: pl.DataFrame | None
) -> pl.DataFrame:
    """The mart rows of hour ``start`` from its episodes (:func:`hour_episodes` of that hour):
    chained to the alerts of earlier hours (``prior``), escalated, with their evidence."""
    if eps.height == 0:
        return pl.DataFrame(schema=ALERTS_SCHEMA)
    return _with_evidence(_chained(start, eps, rules, prior), rules)


def _chained(
    start: datetime, eps: pl.DataFrame, rules: AlertRules, prior: pl.DataFrame | None
) -> pl.DataFrame:
    """:func:`hour_rows` up to the evidence: the hour's episodes (at least one) chained,
    escalated, in the mart's order, with ``hour``. What a later hour chains to is all here
    (:func:`_as_prior`); the evidence can wait for the other hours of a block."""
    eps = _escalate(_chain(eps, prior, rules), rules)
    return eps.sort("alert_type", "subject", "episode_start", maintain_order=True).with_columns(
        hour=pl.lit(hour_key(start))
    )


def _as_prior(chained: pl.DataFrame) -> pl.DataFrame:
    """Chained episodes as mart rows without their evidence (what :func:`_chain` reads of them)."""
    return chained.select(
        (pl.lit(None) if c in ("evidence", "rules_version") else pl.col(c)).cast(dtype).alias(c)
        for c, dtype in ALERTS_SCHEMA.items()
    )


def _with_evidence(chained: pl.DataFrame, rules: AlertRules) -> pl.DataFrame:
    """Chained episodes (:func:`_chained`, of one hour or several) -> mart rows."""
    return chained.with_columns(
        evidence=evidence_column(chained, rules),
        rules_version=pl.lit(rules.version_hash),  # a hash of every setting: once per call
    ).select(pl.col(c).cast(dtype) for c, dtype in ALERTS_SCHEMA.items())


def _new_ids(eps: pl.DataFrame, where: pl.Series | None = None) -> pl.Series:
    """:func:`alert_id` of the episodes (null where ``where`` is false: those continue an
    earlier alert and take its id, so theirs is never hashed)."""
    cols = [eps[c].to_list() for c in ("subject", "alert_type", "episode_start")]
    wanted = [True] * eps.height if where is None else where.to_list()
    ids = [alert_id(*row) if want else None for want, *row in zip(wanted, *cols, strict=True)]
    return pl.Series("alert_id", ids, dtype=pl.String)


def _chain(eps: pl.DataFrame, prior: pl.DataFrame | None, rules: AlertRules) -> pl.DataFrame:
    """Give each episode the id of the earlier alert it continues (same subject and type, that
    alert ended within the de-dup window before this episode began), else a new id."""
    if prior is None or prior.height == 0:
        return eps.with_columns(alert_id=_new_ids(eps), new_alert=pl.lit(True))
    p = (
        prior.with_columns(
            subject=pl.coalesce("elder_pseudonym", pl.concat_str("device_kind", pl.lit(":"), "device_id"))
        )
        .group_by("alert_id")
        .agg(
            pl.col("subject").last(),
            pl.col("alert_type").first(),
            pl.col("episode_start").min().alias("p_start"),
            pl.col("episode_end").max().alias("p_end"),
            pl.col("detected_at").min().alias("p_detected"),
            pl.col("severity").sort_by("hour").last().alias("p_severity"),
        )
        .rename({"alert_id": "p_alert_id"})
    )
    dedup = pl.col("alert_type").replace_strict(
        {t: rules.dedup_minutes(t) for t in eps["alert_type"].unique().to_list()}, return_dtype=pl.Int64
    )
    match = (
        eps.select(
            "episode",
            "subject",
            "alert_type",
            "episode_start",
            "episode_end",
            _dedup=pl.duration(minutes=dedup),
        )
        .join(p, on=["subject", "alert_type"])
        .filter(
            (pl.col("p_end") >= pl.col("episode_start") - pl.col("_dedup"))
            & (pl.col("p_start") <= pl.col("episode_end"))
        )
        .sort("episode", "p_start", "p_alert_id")
        .unique("episode", keep="first", maintain_order=True)
        .select("episode", "p_alert_id", "p_start", "p_detected", "p_severity")
    )
    eps = eps.join(match, on="episode", how="left")
    chained = pl.col("p_alert_id").is_not_null()
    rank = SEVERITY_RANK
    worst = pl.max_horizontal(
        pl.col("severity").replace_strict(rank, return_dtype=pl.Int64),
        pl.col("p_severity").replace_strict(rank, default=0, return_dtype=pl.Int64),
    )
    return eps.with_columns(
        alert_id=pl.coalesce("p_alert_id", _new_ids(eps, eps["p_alert_id"].is_null())),
        new_alert=~chained,
        episode_start=pl.min_horizontal("episode_start", "p_start"),
        detected_at=pl.min_horizontal("detected_at", "p_detected"),
        # an alert never drops its severity while it lasts
        severity=worst.replace_strict({v: k for k, v in rank.items()}, return_dtype=pl.String),
    ).drop("p_alert_id", "p_start", "p_detected", "p_severity")


def _escalate(eps: pl.DataFrame, rules: AlertRules) -> pl.DataFrame:
    """Water: still quiet ``critical_after_hours`` after the quiet began -> CRITICAL."""
    w = rules.water_inactivity
    if w.critical_after_hours is None:
        return eps
    long_quiet = (pl.col("alert_type") == WATER_INACTIVITY) & (
        pl.col("episode_end") - pl.col("episode_start") >= timedelta(hours=w.critical_after_hours)
    )
    return eps.with_columns(
        severity=pl.when(long_quiet).then(pl.lit("CRITICAL")).otherwise(pl.col("severity"))
    )


# ---------------------------------------------------------------- the lake


def mart_dir(lake: Lake) -> Path:
    return lake.marts / MART


def hour_path(lake: Lake, key: str) -> Path:
    return mart_dir(lake) / f"hour={key}" / "data.parquet"


def _days(start: datetime, end: datetime) -> list[date]:
    first, last = start.date(), (end - timedelta(microseconds=1)).date()
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


DayCache = dict[tuple[str, date], pl.DataFrame]


def _time_slice(day: pl.DataFrame, time_col: str, start: datetime, end: datetime) -> pl.DataFrame:
    """Rows of ``day`` (sorted by ``time_col``, no nulls) with ``start <= time_col < end``."""
    col = day.get_column(time_col)
    bounds = pl.Series([start, end]).cast(col.dtype)
    lo, hi = (int(i) for i in col.search_sorted(bounds, side="left"))
    return day.slice(lo, hi - lo)


def _staged_day(
    lake: Lake, table: str, time_col: str, schema: dict[str, pl.DataType], d: date, cache: DayCache
) -> pl.DataFrame | None:
    """The staged rows of delivery day ``d`` (the columns of ``schema``), without null times,
    sorted by time (stable, so an hour's window is a slice); None when the day has no file."""
    if (table, d) in cache:
        return cache[(table, d)]
    path = lake.staged / table / f"date={d.isoformat()}" / "data.parquet"
    if not path.exists():
        return None
    day = read_frame(path, lake, columns=list(schema)).cast(schema)  # type: ignore[arg-type]
    day = day.filter(pl.col(time_col).is_not_null())
    if not day.get_column(time_col).is_sorted():  # staging writes a day in time order
        day = day.sort(time_col, maintain_order=True)
    cache[(table, d)] = day
    return day


def _window_by_day(
    lake: Lake,
    table: str,
    time_col: str,
    schema: dict[str, pl.DataType],
    start: datetime,
    end: datetime,
    cache: DayCache,
) -> list[tuple[date, pl.DataFrame]]:
    """Per delivery day the window overlaps: its rows with ``start <= time_col < end``."""
    out = []
    for d in _days(start, end):
        day = _staged_day(lake, table, time_col, schema, d, cache)
        if day is not None:
            out.append((d, _time_slice(day, time_col, start, end)))
    return out


def read_staged_window(
    lake: Lake,
    table: str,
    time_col: str,
    schema: dict[str, pl.DataType],
    start: datetime,
    end: datetime,
    cache: DayCache | None = None,
) -> pl.DataFrame:
    """Rows of a daily-partitioned staged table with ``start <= time_col < end``: reads the
    delivery days the window overlaps (``staged/<table>/date=YYYY-MM-DD/data.parquet``), in
    day order and by time within a day. ``cache`` keeps whole days for the next hours of a run."""
    frames = [
        f
        for _, f in _window_by_day(lake, table, time_col, schema, start, end, {} if cache is None else cache)
    ]
    return pl.concat(frames) if frames else pl.DataFrame(schema=schema)


def rescue_events(quarantined: pl.DataFrame, event_codes: dict[str, str]) -> pl.DataFrame:
    """Quarantined wristband events that still mean an SOS, a fall or a geofence exit: device,
    time and type readable, quarantined only for another column (:data:`RESCUABLE_REASONS`)
    and not later than their delivery day. ``event_codes``: every spelling -> code
    (``registry.codelist("wristband_event").lookup()``). Returns :data:`EVENTS_SCHEMA` +
    ``from_quarantine``."""
    schema = {**EVENTS_SCHEMA, "from_quarantine": pl.Boolean()}
    if quarantined.height == 0:
        return pl.DataFrame(schema=schema)
    text = pl.col("occurred_at").str.strip_chars()
    with_offset = (
        text.str.strptime(pl.Datetime("us", "UTC"), "%Y-%m-%dT%H:%M:%S%z", strict=False)
        .dt.convert_time_zone("Asia/Shanghai")
        .dt.replace_time_zone(None)
    )
    parsed = pl.coalesce(
        with_offset, *[text.str.strptime(pl.Datetime("us"), f, strict=False) for f in EVENT_TIMESTAMP_FORMS]
    )
    q = quarantined.with_columns(
        occurred=parsed,
        code=pl.col("event_type")
        .str.strip_chars()
        .replace_strict(event_codes, default=None, return_dtype=pl.String),
        device=pl.col("device_id").str.strip_chars(),
        ok=pl.col("_reasons").list.eval(pl.element().is_in(list(RESCUABLE_REASONS))).list.all(),
    )
    q = q.filter(
        pl.col("ok")
        & pl.col("code").is_in(list(RESCUED_EVENT_TYPES))
        & pl.col("occurred").is_not_null()
        & (pl.col("device").str.len_chars() > 0)
        & (pl.col("occurred") < pl.col("_delivery_date").cast(pl.Datetime("us")) + timedelta(days=1))
    )
    return q.select(
        pl.coalesce(
            pl.col("event_id"), pl.concat_str(pl.lit("Q:"), "_source_file", pl.lit(":"), "_row_number")
        ).alias("event_id"),
        pl.col("device").alias("device_id"),
        pl.col("occurred").alias("occurred_at"),
        pl.col("code").alias("event_type"),
        from_quarantine=pl.lit(True),
    ).cast(schema)  # type: ignore[arg-type]


QUARANTINED_EVENTS = "_quarantine/wristband_events"
QUARANTINE_COLUMNS = (
    "event_id",
    "device_id",
    "occurred_at",
    "event_type",
    "_reasons",
    "_delivery_date",
    "_source_file",
    "_row_number",
)


def _rescued_day(lake: Lake, d: date, event_codes: dict[str, str], cache: DayCache) -> pl.DataFrame | None:
    """:func:`rescue_events` of delivery day ``d``'s quarantined wristband events (None: no file)."""
    key = (QUARANTINED_EVENTS, d)
    if key in cache:
        return cache[key]
    path = lake.staged / QUARANTINED_EVENTS / f"date={d.isoformat()}" / "data.parquet"
    if not path.exists():
        return None
    q = read_frame(path, lake)
    need = list(QUARANTINE_COLUMNS)
    cache[key] = rescue_events(
        q.select(need) if all(c in q.columns for c in need) else pl.DataFrame(), event_codes
    )
    return cache[key]


def _rescued_by_day(
    lake: Lake, start: datetime, end: datetime, event_codes: dict[str, str], cache: DayCache
) -> list[tuple[date, pl.DataFrame]]:
    window = (pl.col("occurred_at") >= start) & (pl.col("occurred_at") < end)
    return [
        (d, day.filter(window))
        for d in _days(start, end)
        if (day := _rescued_day(lake, d, event_codes, cache)) is not None
    ]


def read_quarantined_events(
    lake: Lake, start: datetime, end: datetime, event_codes: dict[str, str], cache: DayCache | None = None
) -> pl.DataFrame:
    """:func:`rescue_events` over the quarantined wristband events of the days of ``[start, end)``."""
    frames = [f for _, f in _rescued_by_day(lake, start, end, event_codes, {} if cache is None else cache)]
    return pl.concat(frames) if frames else rescue_events(pl.DataFrame(), event_codes)


def source_lookbacks(rules: AlertRules) -> tuple[int, int, int]:
    """Hours of look-back the rules read of (vitals, events, water)."""
    return (
        max(rules.vitals_lookback_hours, rules.fall.lookback_hours),
        max(rules.sos.lookback_hours, rules.fall.lookback_hours, rules.geofence_exit.lookback_hours),
        rules.water_inactivity.lookback_hours,
    )


def read_inputs(
    lake: Lake,
    start: datetime,
    rules: AlertRules,
    devices: pl.DataFrame,
    event_codes: dict[str, str] | None = None,
    cache: DayCache | None = None,
) -> AlertInputs:
    """The staged telemetry one hour's rules need: each source from its longest look-back.
    (:func:`hourly_inputs` reads the same for a block of hours at once.)"""
    cache = {} if cache is None else cache
    end = start + timedelta(hours=1)
    vitals_lb, events_lb, water_lb = source_lookbacks(rules)
    events_from = start - timedelta(hours=events_lb)
    events = read_staged_window(
        lake, "wristband_events", "occurred_at", EVENTS_SCHEMA, events_from, end, cache
    )
    events = events.with_columns(from_quarantine=pl.lit(False))
    if rules.rescue_quarantined_events and event_codes is not None:
        events = pl.concat([events, read_quarantined_events(lake, events_from, end, event_codes, cache)])
    return AlertInputs(
        vitals=read_staged_window(
            lake,
            "wristband_vitals",
            "measured_at",
            VITALS_SCHEMA,
            start - timedelta(hours=vitals_lb),
            end,
            cache,
        ),
        events=events,
        water=read_staged_window(
            lake, "water_readings", "read_at", WATER_SCHEMA, start - timedelta(hours=water_lb), end, cache
        ),
        devices=devices,
    )


def _tag_days(by_day: list[tuple[date, pl.DataFrame]], schema: dict[str, pl.DataType]) -> pl.DataFrame:
    """The frames of ``by_day`` in one, each row with its delivery day (``_day``)."""
    if not by_day:
        return pl.DataFrame(schema={**schema, "_day": pl.Date()})
    return pl.concat([frame.with_columns(pl.lit(d, dtype=pl.Date).alias("_day")) for d, frame in by_day])


def _repeat_hours(frame: pl.DataFrame, time_col: str, lookback_hours: int) -> pl.DataFrame:
    """Each row once per hour ``h(time) .. h(time) + look-back`` (the hours whose look-back can
    hold it), in ``_hour``; rows keep their order, each row's copies together."""
    ks = pl.DataFrame({"_k": list(range(lookback_hours + 1))}, schema={"_k": pl.Int64()})
    hour = pl.col(time_col).dt.truncate("1h") + pl.duration(hours=pl.col("_k"))
    return (
        frame.join(ks, how="cross", maintain_order="left_right")
        .with_columns(hour.cast(pl.Datetime("us")).alias(HOUR))
        .drop("_k")
    )


def _per_hour(
    by_day: list[tuple[date, pl.DataFrame]],
    time_col: str,
    schema: dict[str, pl.DataType],
    lookback_hours: int,
    first: datetime,
    end: datetime,
) -> pl.DataFrame:
    """The rows of ``by_day`` repeated once per hour ``H`` of ``[first, end)`` that would read
    them on its own: ``H - look-back <= time < H + 1 h`` and the row's delivery day among the
    days of that window (what :func:`read_staged_window` reads for ``H``). Adds ``_hour``;
    within an hour the rows keep their order."""
    out_schema = {**schema, HOUR: pl.Datetime("us")}
    if not by_day:
        return pl.DataFrame(schema=out_schema)
    f = _repeat_hours(_tag_days(by_day, schema), time_col, lookback_hours)
    back = timedelta(hours=lookback_hours)
    return f.filter(
        (pl.col(HOUR) >= first)
        & (pl.col(HOUR) < end)
        & (pl.col("_day") >= (pl.col(HOUR) - back).dt.date())
        & (pl.col("_day") <= pl.col(HOUR).dt.date())
    ).select(list(out_schema))


def hourly_inputs(
    lake: Lake,
    first: datetime,
    hours: int,
    rules: AlertRules,
    devices: pl.DataFrame,
    event_codes: dict[str, str] | None = None,
    cache: DayCache | None = None,
) -> AlertInputs:
    """What :func:`read_inputs` gives each hour of ``[first, first + hours)``, all at once: every
    row once per hour that reads it, tagged with that hour (``_hour``)."""
    cache = {} if cache is None else cache
    end = first + timedelta(hours=hours)
    vitals_lb, events_lb, water_lb = source_lookbacks(rules)

    def repeat(table: str, time_col: str, schema: dict[str, pl.DataType], lb: int) -> pl.DataFrame:
        by_day = _window_by_day(lake, table, time_col, schema, first - timedelta(hours=lb), end, cache)
        return _per_hour(by_day, time_col, schema, lb, first, end)

    events = repeat("wristband_events", "occurred_at", EVENTS_SCHEMA, events_lb).with_columns(
        from_quarantine=pl.lit(False)
    )
    if rules.rescue_quarantined_events and event_codes is not None:
        rescued = _rescued_by_day(lake, first - timedelta(hours=events_lb), end, event_codes, cache)
        schema = {**EVENTS_SCHEMA, "from_quarantine": pl.Boolean()}
        events = pl.concat(
            [events, _per_hour(rescued, "occurred_at", schema, events_lb, first, end)], how="diagonal"
        )
    # water: the rule reads the longest look-back (16 copies of every reading). When every reading
    # of the block lies in its own day's file and no (meter, time) repeats, the hours differ only
    # in where their window starts: the rule runs once and its hits are spread over the hours
    # (_water_hits_per_hour); otherwise the readings are repeated per hour like the others
    water_days = _window_by_day(
        lake, "water_readings", "read_at", WATER_SCHEMA, first - timedelta(hours=water_lb), end, cache
    )
    water = _tag_days(water_days, WATER_SCHEMA)
    clean = bool((water["_day"] == water["read_at"].dt.date()).all()) and not keys_repeat(
        water, ["meter_id", "read_at"]
    )
    return AlertInputs(
        vitals=repeat("wristband_vitals", "measured_at", VITALS_SCHEMA, vitals_lb),
        events=events.select(*EVENTS_SCHEMA, "from_quarantine", HOUR),
        water=water.drop("_day")
        if clean
        else _per_hour(water_days, "read_at", WATER_SCHEMA, water_lb, first, end),
        devices=devices,
        water_block=(first, end, water_lb) if clean else None,
    )


def load_devices(lake: Lake) -> pl.DataFrame:
    """Monitoring devices and their elders from the library (``library/elder_devices``); an
    elder lives alone when the device list says so or ``library/dim_elder`` has ``ALONE``."""
    path = lake.library / "elder_devices" / "data.parquet"
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: build library/elder_devices before the safety alerts")
    dev = read_frame(path, lake)
    for col, dtype in DEVICES_SCHEMA.items():
        if col not in dev.columns:
            dev = dev.with_columns(pl.lit(None, dtype).alias(col))
    dev = dev.select(list(DEVICES_SCHEMA)).cast(DEVICES_SCHEMA)  # type: ignore[arg-type]
    dim = lake.library / "dim_elder" / "data.parquet"
    if dim.exists():
        alone = read_frame(dim, lake, columns=["elder_key", "living_arrangement"]).select(
            "elder_key", _alone=pl.col("living_arrangement") == "ALONE"
        )
        dev = (
            dev.join(alone, on="elder_key", how="left")
            .with_columns(
                lives_alone=pl.when(pl.col("lives_alone") | pl.col("_alone"))
                .then(True)
                .otherwise(pl.coalesce("lives_alone", "_alone"))
            )
            .drop("_alone")
        )
    return dev


def chain_hours(rules: AlertRules) -> int:
    """How many earlier hours an episode may continue an alert of (:func:`prior_hours`)."""
    return math.ceil(rules.max_dedup_minutes / 60) + rules.max_lookback_hours + 1


def prior_hours(start: datetime, rules: AlertRules) -> list[str]:
    """Earlier hours whose alerts an episode in hour ``start`` may continue."""
    return [hour_key(start - timedelta(hours=k)) for k in range(chain_hours(rules), 0, -1)]


def read_prior(
    lake: Lake, start: datetime, rules: AlertRules, cache: dict[str, pl.DataFrame] | None = None
) -> pl.DataFrame:
    """The mart rows of :func:`prior_hours` (from ``cache`` when it holds an hour, else from disk)."""
    cache = cache or {}
    keys = prior_hours(start, rules)
    frames = [cache[k] for k in keys if k in cache and cache[k].height]
    files = [p for k in keys if k not in cache and (p := hour_path(lake, k)).exists()]
    if files:
        frames.append(pl.scan_parquet(files, hive_partitioning=False).collect().cast(ALERTS_SCHEMA))  # type: ignore[arg-type]
    if not frames:
        return pl.DataFrame(schema=ALERTS_SCHEMA)
    return pl.concat(frames)


def write_hour(lake: Lake, key: str, rows: pl.DataFrame) -> Path:
    """Replace the hour's file atomically (an hour without alerts gets an empty file)."""
    out = hour_path(lake, key)
    with atomic_path(out) as tmp:
        rows.select(list(ALERTS_SCHEMA)).write_parquet(tmp, compression="zstd", statistics=True)
    return out


def run_hour(
    lake: Lake, key: str, rules: AlertRules, devices: pl.DataFrame, pseudonymise: Pseudonymise
) -> pl.DataFrame:
    """Detect, chain and write one hour partition; returns its rows."""
    return run_hours(lake, [key], rules, devices, pseudonymise)


def hour_blocks(keys: Iterable[str], block_hours: int = BLOCK_HOURS) -> list[list[str]]:
    """Hour keys in time order, cut into blocks of consecutive hours of one day (at most
    ``block_hours`` each)."""
    blocks: list[list[str]] = []
    for key in sorted(set(keys)):
        last = blocks[-1][-1] if blocks else None
        if (
            last is not None
            and len(blocks[-1]) < block_hours
            and hour_start(key) - hour_start(last) == timedelta(hours=1)
            and key[:10] == last[:10]
        ):
            blocks[-1].append(key)
        else:
            blocks.append([key])
    return blocks


def _detected_blocks(
    lake: Lake,
    blocks: list[list[str]],
    rules: AlertRules,
    devices: pl.DataFrame,
    pseudonymise: Pseudonymise,
) -> Iterator[tuple[list[str], dict[tuple[object, ...], pl.DataFrame], pl.DataFrame]]:
    """Each block's episodes by hour, before chaining: ``(block, {(hour start,): episodes},
    an empty episodes frame)``. Needs nothing of earlier blocks' results, so :func:`iter_hours`
    detects the next block on a second thread while it chains and writes this one. Staged days
    are read once and dropped when the blocks have moved past them."""
    days: DayCache = {}
    codes = load_registry().codelist("wristband_event").lookup()
    back = timedelta(hours=rules.max_lookback_hours + 1)
    for block in blocks:
        first = hour_start(block[0])
        oldest = (first - back).date()
        for stale in [k for k in days if k[1] < oldest]:
            del days[stale]
        inputs = hourly_inputs(lake, first, len(block), rules, devices, codes, days)
        eps = hour_episodes(detect_hits(inputs, rules), devices, rules, pseudonymise)
        by_hour = eps.partition_by(HOUR, as_dict=True, maintain_order=True) if eps.height else {}
        yield block, by_hour, eps.clear()


def iter_hours(
    lake: Lake,
    keys: Iterable[str],
    rules: AlertRules,
    devices: pl.DataFrame,
    pseudonymise: Pseudonymise,
    block_hours: int = BLOCK_HOURS,
) -> Iterator[tuple[str, pl.DataFrame]]:
    """Several hours in time order, each chained to the ones before it (also those of this run),
    written and yielded as ``(hour key, its rows)``.

    Detection runs per block of up to ``block_hours`` consecutive hours (:func:`hourly_inputs`);
    the result equals running the hours one by one. The next block is detected on a second
    thread (:func:`rainbow.workers.read_ahead`) while this one is chained and written. Staged
    days are read once per run and dropped when the blocks have moved past them; an hour's rows
    are held only while a later hour may chain to them (:func:`prior_hours`), so a year's
    backfill holds a day or two of rows, not the year's."""
    cache: dict[str, pl.DataFrame] = {}
    chained_back = timedelta(hours=chain_hours(rules))
    detected = _detected_blocks(lake, hour_blocks(keys, block_hours), rules, devices, pseudonymise)
    no_rows = pl.DataFrame(schema=ALERTS_SCHEMA)
    for block, by_hour, no_episodes in read_ahead(detected):
        # each hour chained to the ones before it (those of this block as rows without evidence)
        chained: list[pl.DataFrame] = []
        for key in block:
            start = hour_start(key)
            mine = by_hour.get((start,), no_episodes)
            if mine.height:
                chained.append(_chained(start, mine, rules, read_prior(lake, start, rules, cache)))
                cache[key] = _as_prior(chained[-1])
            else:
                cache[key] = no_rows
            # the next hour reads back to (its start - chained_back); later hours less far
            horizon = hour_key(start + timedelta(hours=1) - chained_back)
            for done in [k for k in cache if k < horizon]:
                del cache[done]
        # the evidence of the block's alerts at once (per hour it cost as much as the chaining)
        rows = _with_evidence(pl.concat(chained), rules) if chained else no_rows
        by_key = rows.partition_by("hour", as_dict=True, maintain_order=True) if rows.height else {}
        for key in block:
            mine_rows = by_key.get((key,), no_rows)
            write_hour(lake, key, mine_rows)
            if key in cache:
                cache[key] = mine_rows
            yield key, mine_rows


def run_hours(
    lake: Lake,
    keys: Iterable[str],
    rules: AlertRules,
    devices: pl.DataFrame,
    pseudonymise: Pseudonymise,
    block_hours: int = BLOCK_HOURS,
) -> pl.DataFrame:
    """:func:`iter_hours`, every hour's rows in one frame (a few hours; a backfill folds them
    as they come, see :class:`AlertTally`)."""
    frames = [rows for _, rows in iter_hours(lake, keys, rules, devices, pseudonymise, block_hours)]
    return pl.concat(frames) if frames else pl.DataFrame(schema=ALERTS_SCHEMA)


@dataclass
class AlertTally:
    """Counts over the rows of a run's hours, added an hour at a time."""

    rows: int = 0
    new_alerts: int = 0
    by_type: Counter[str] = field(default_factory=Counter)
    new_by_severity: Counter[str] = field(default_factory=Counter)

    def add(self, rows: pl.DataFrame) -> None:
        new = rows.filter(pl.col("new_alert"))
        self.rows += rows.height
        self.new_alerts += new.height
        self.by_type.update(dict(rows["alert_type"].value_counts().iter_rows()))
        self.new_by_severity.update(dict(new["severity"].value_counts().iter_rows()))


def read_alerts(lake: Lake) -> pl.DataFrame:
    """Every hour's rows of the mart."""
    files = sorted(mart_dir(lake).glob("hour=*/data.parquet"))
    if not files:
        return pl.DataFrame(schema=ALERTS_SCHEMA)
    return pl.scan_parquet(files, hive_partitioning=False).collect().cast(ALERTS_SCHEMA)  # type: ignore[arg-type]

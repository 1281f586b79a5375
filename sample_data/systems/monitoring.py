"""Safety monitoring: one-key wristbands (vitals + events) and smart water meters.

Telemetry is generated vectorised (devices x time slots) so a year at district
scale stays within minutes. Incidents are planted on a schedule drawn at the
start, at least one of each kind, and recorded in the truth.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta

import numpy as np
import polars as pl

from sample_data.deliver import GenContext, deliver
from sample_data.population import current_address, current_street
from sample_data.systems.base import System, record_incident
from sample_data.world import World

WRIST_INCIDENTS = {  # kind -> expected count per device-day
    "sos": 0.004,
    "fall": 0.002,
    "high_heart_rate": 0.003,
    "low_spo2": 0.002,
    "geofence_exit": 0.003,
}
# Hourly share of a day's water use for someone living alone.
WATER_PROFILE = np.array(
    [
        0.002,
        0.001,
        0.001,
        0.001,
        0.002,
        0.01,
        0.08,
        0.12,
        0.09,
        0.05,
        0.04,
        0.06,
        0.08,
        0.04,
        0.03,
        0.03,
        0.04,
        0.07,
        0.09,
        0.08,
        0.06,
        0.04,
        0.02,
        0.006,
    ]
)
WATER_PROFILE = WATER_PROFILE / WATER_PROFILE.sum()


def _schedule(
    rng: np.random.Generator, n_units: int, days: int, rates: dict[str, float]
) -> list[tuple[str, int, int]]:
    """(kind, unit index, day offset) for each planted incident; at least one of each kind."""
    out = []
    for kind, rate in rates.items():
        k = max(1, int(rng.poisson(rate * n_units * days)))
        units = rng.integers(0, n_units, size=k)
        offs = rng.integers(0, days, size=k)
        out += [(kind, int(u), int(o)) for u, o in zip(units, offs, strict=True)]
    return out


class Wristbands(System):
    name = "wristband"

    def __init__(self, ctx: GenContext, world: World) -> None:
        super().__init__(ctx, world)
        rng = self.rng("setup")
        p = world.people
        n_dev = max(self.cfg.min_wristbands, round(self.cfg.elders * self.cfg.wristband_share))
        cand = p.filter((pl.col("age") >= 80) & (pl.col("living_arrangement") != "INSTITUTION"))
        weight = np.where(cand["living_arrangement"].to_numpy() == "ALONE", 3.0, 1.0)
        n_dev = min(n_dev, cand.height)
        pick = np.sort(rng.choice(cand.height, size=n_dev, replace=False, p=weight / weight.sum()))
        holders = cand[pick]
        self.holders = holders.with_columns(
            device_id=pl.Series(
                [f"86{int(k):013d}" for k in rng.integers(0, 10**13, size=n_dev)], dtype=pl.String
            ),
            issued_on=pl.Series(
                [self.cfg.start - timedelta(days=int(d)) for d in rng.integers(1, 700, size=n_dev)]
            ),
            fence_lat=pl.col("home_lat"),
            fence_lon=pl.col("home_lon"),
            fence_radius_m=pl.Series(rng.choice([500, 800, 1000, 1500], size=n_dev)),
            hr_base=pl.Series(rng.normal(74, 7, size=n_dev).round()),
            spo2_base=pl.Series(rng.normal(96.5, 1.0, size=n_dev)),
            sbp_base=pl.Series(rng.normal(135, 12, size=n_dev)),
        )
        self.n = n_dev
        self.slots = 24 * 60 // self.cfg.vitals_interval_minutes
        self.plan: dict[int, list[tuple[str, int, int]]] = {}
        for kind, unit, off in _schedule(rng, n_dev, self.cfg.days, WRIST_INCIDENTS):
            slot = int(rng.integers(self.slots // 6, self.slots - 12))
            self.plan.setdefault(off, []).append((kind, unit, slot))
        self.battery = rng.uniform(40, 100, size=n_dev)
        self.event_seq = 0

    def on_day(self, day: date) -> None:
        if self.is_month_delivery(day):
            reg = self.holders.with_columns(
                phone=pl.coalesce("mobile", "landline"),
                emergency_phone=pl.col("family_phone"),
                street=current_street(day),
                residence_address=current_address(day),
                _person_id=pl.col("person_id"),
            )
            deliver(self.ctx, self.table("wristband_devices"), reg, day)
        rng = self.rng("vitals", day.isoformat())
        n, s = self.n, self.slots
        h = self.holders
        interval = self.cfg.vitals_interval_minutes
        base = datetime.combine(day, datetime.min.time())
        minutes = np.arange(s) * interval
        hr = h["hr_base"].to_numpy()[:, None] + rng.normal(0, 4, size=(n, s))
        hr += np.where((minutes >= 7 * 60) & (minutes < 21 * 60), 6, -4)[None, :]
        spo2 = np.clip(h["spo2_base"].to_numpy()[:, None] + rng.normal(0, 0.8, size=(n, s)), 90, 100)
        sbp = h["sbp_base"].to_numpy()[:, None] + rng.normal(0, 6, size=(n, s))
        dbp = sbp * 0.6 + rng.normal(0, 4, size=(n, s))
        step_inc = rng.poisson(
            np.where((minutes >= 7 * 60) & (minutes < 20 * 60), 60, 2)[None, :], size=(n, s)
        )
        lat = h["fence_lat"].to_numpy()[:, None] + rng.normal(0, 0.0008, size=(n, s))
        lon = h["fence_lon"].to_numpy()[:, None] + rng.normal(0, 0.0008, size=(n, s))
        worn = rng.random((n, s)) > 0.04
        # Alive this day: no readings after death or moving away.
        dead_at = np.full(n, s)
        for i, (dd, mo) in enumerate(zip(h["death_date"], h["move_out_date"], strict=True)):
            for end in (dd, mo):
                if end is not None and end <= day:
                    dead_at[i] = 0 if end < day else min(dead_at[i], int(rng.integers(0, s)))
        events: list[dict[str, object]] = []
        for kind, unit, slot in self.plan.get((day - self.cfg.start).days, []):
            if dead_at[unit] <= slot:
                continue
            pid = h["person_id"][unit]
            dev = h["device_id"][unit]
            t0 = base + timedelta(minutes=int(slot * interval))
            end_slot = slot
            if kind == "sos":
                events.append({"kind": "SOS", "unit": unit, "t": t0})
            elif kind == "fall":
                events.append({"kind": "FALL", "unit": unit, "t": t0 + timedelta(seconds=17)})
                end_slot = min(s - 1, slot + 3)
                step_inc[unit, slot : end_slot + 1] = 0
                hr[unit, slot : end_slot + 1] += 12
            elif kind == "high_heart_rate":
                end_slot = min(s - 1, slot + 3)
                hr[unit, slot : end_slot + 1] = rng.uniform(128, 150, size=end_slot - slot + 1)
            elif kind == "low_spo2":
                end_slot = min(s - 1, slot + 2)
                spo2[unit, slot : end_slot + 1] = rng.uniform(83, 88, size=end_slot - slot + 1)
            elif kind == "geofence_exit":
                end_slot = min(s - 1, slot + 60 // interval)
                lat[unit, slot : end_slot + 1] += 0.03  # about 3.3 km north
                events.append({"kind": "GEOFENCE_EXIT", "unit": unit, "t": t0 + timedelta(seconds=40)})
            worn[unit, slot : end_slot + 1] = True
            record_incident(
                self.ctx,
                f"WB-{kind}-{dev}-{t0:%Y%m%d%H%M}",
                kind,
                pid,
                dev,
                t0,
                base + timedelta(minutes=int(end_slot * interval)),
                f"planted {kind}",
            )
        alive = np.arange(s)[None, :] < dead_at[:, None]
        mask = worn & alive
        # Battery drains while worn and is charged overnight.
        drain = np.cumsum(np.full((n, s), 100.0 / s * 0.3), axis=1)
        battery = np.clip(self.battery[:, None] - drain, 3, 100)
        # Most wearers charge overnight when the battery runs under 40%; a few forget.
        charge = (battery[:, -1] < 40) & (rng.random(n) < 0.9)
        self.battery = np.where(charge, rng.uniform(90, 100, size=n), battery[:, -1])
        for u in range(n):
            low = np.nonzero((battery[u] < 15) & mask[u])[0]
            if low.size:
                events.append(
                    {"kind": "LOW_BATTERY", "unit": u, "t": base + timedelta(minutes=int(low[0] * interval))}
                )
        steps = np.cumsum(step_inc, axis=1)
        unit_idx, slot_idx = np.nonzero(mask)
        ts = pl.Series([base + timedelta(minutes=int(m)) for m in minutes], dtype=pl.Datetime("us"))
        vitals = pl.DataFrame(
            {
                "device_id": h["device_id"].gather(unit_idx),
                "measured_at": ts.gather(slot_idx),
                "heart_rate": np.round(hr[unit_idx, slot_idx]).astype(np.int64),
                "spo2": np.round(spo2[unit_idx, slot_idx]).astype(np.int64),
                "systolic": np.round(sbp[unit_idx, slot_idx]).astype(np.int64),
                "diastolic": np.round(dbp[unit_idx, slot_idx]).astype(np.int64),
                "steps": steps[unit_idx, slot_idx].astype(np.int64),
                "battery": np.round(battery[unit_idx, slot_idx]).astype(np.int64),
                "lat": lat[unit_idx, slot_idx].round(6),
                "lon": lon[unit_idx, slot_idx].round(6),
            }
        ).sort("measured_at", "device_id", maintain_order=True)
        deliver(self.ctx, self.table("wristband_vitals"), vitals, day)
        events.sort(key=lambda e: (e["t"], e["unit"]))
        ids = []
        for _ in events:
            self.event_seq += 1
            ids.append(f"EV{self.event_seq:09d}")
        units = [int(e["unit"]) for e in events]  # type: ignore[call-overload]
        ev = pl.DataFrame(
            {
                "event_id": pl.Series(ids, dtype=pl.String),
                "device_id": pl.Series([h["device_id"][u] for u in units], dtype=pl.String),
                "occurred_at": pl.Series([e["t"] for e in events], dtype=pl.Datetime("us")),
                "event_type": pl.Series([e["kind"] for e in events], dtype=pl.String),
                "lat": pl.Series([float(h["fence_lat"][u]) for u in units], dtype=pl.Float64),
                "lon": pl.Series([float(h["fence_lon"][u]) for u in units], dtype=pl.Float64),
            }
        )
        deliver(self.ctx, self.table("wristband_events"), ev, day)


class SmartMeters(System):
    name = "smart_meter"

    def __init__(self, ctx: GenContext, world: World) -> None:
        super().__init__(ctx, world)
        rng = self.rng("setup")
        p = world.people
        alone = p.filter(pl.col("living_arrangement") == "ALONE")
        fitted = alone.filter(
            pl.Series(rng.random(alone.height) < np.where(alone["age"].to_numpy() >= 70, 0.7, 0.4))
        )
        n = fitted.height
        self.meters = fitted.with_columns(
            meter_id=pl.Series([f"SB{int(i):08d}" for i in fitted["idx"]], dtype=pl.String),
            installed_on=pl.Series(
                [self.cfg.start - timedelta(days=int(d)) for d in rng.integers(10, 900, size=n)]
            ),
            daily_m3=pl.Series(rng.uniform(0.08, 0.2, size=n)),
        )
        self.n = n
        self.reading = rng.uniform(50, 2000, size=n)
        # Planted inactivity: water use stops for 14-30 hours from an hour of the day.
        self.stops: dict[int, list[tuple[int, int, int]]] = {}
        for _, unit, off in _schedule(rng, max(1, n), self.cfg.days, {"water": 0.003}):
            if n == 0:
                break
            hour = int(rng.integers(8, 20))
            length = int(rng.integers(14, 31))
            self.stops.setdefault(off, []).append((unit, hour, length))
        self.silent_until = np.full(n, -1)  # absolute hour index until which use is zero
        for i, (dd, mo) in enumerate(
            zip(self.meters["death_date"], self.meters["move_out_date"], strict=True)
        ):
            end = dd or mo
            if end is not None:
                self.silent_until[i] = 10**9
                off = (end - self.cfg.start).days
                self.stops.setdefault(off, [])
                start = datetime.combine(end, datetime.min.time())
                record_incident(
                    ctx,
                    f"WATER-END-{self.meters['meter_id'][i]}",
                    "water_inactivity",
                    self.meters["person_id"][i],
                    self.meters["meter_id"][i],
                    start,
                    datetime.combine(self.cfg.end, datetime.max.time()).replace(microsecond=0),
                    "老人去世" if dd else "老人迁出",
                )
        self.end_day = np.array(
            [
                ((dd or mo) - self.cfg.start).days if (dd or mo) else 10**9
                for dd, mo in zip(self.meters["death_date"], self.meters["move_out_date"], strict=True)
            ]
        )
        self.silent_from = np.full(n, 10**9)
        self.silent_to = np.full(n, -1)

    def on_day(self, day: date) -> None:
        if self.is_month_delivery(day):
            reg = self.meters.with_columns(
                phone=pl.coalesce("mobile", "landline"),
                install_address=current_address(day),
                street=current_street(day),
                lives_alone=pl.lit("Y"),
                _person_id=pl.col("person_id"),
            )
            deliver(self.ctx, self.table("water_meters"), reg, day)
        rng = self.rng("readings", day.isoformat())
        n = self.n
        off = (day - self.cfg.start).days
        base = datetime.combine(day, datetime.min.time())
        for unit, hour, length in self.stops.get(off, []):
            if unit >= n or self.silent_to[unit] > off * 24 + hour or off >= self.end_day[unit]:
                continue  # already silent, or no longer there: plant nothing new
            self.silent_from[unit] = off * 24 + hour
            self.silent_to[unit] = off * 24 + hour + length
            t0 = base + timedelta(hours=hour)
            record_incident(
                self.ctx,
                f"WATER-{self.meters['meter_id'][unit]}-{t0:%Y%m%d%H}",
                "water_inactivity",
                self.meters["person_id"][unit],
                self.meters["meter_id"][unit],
                t0,
                t0 + timedelta(hours=length),
                f"planted: no water use for {length} h",
            )
        use = (
            self.meters["daily_m3"].to_numpy()[:, None]
            * WATER_PROFILE[None, :]
            * rng.gamma(2.0, 0.5, size=(n, 24))
        )
        hours = off * 24 + np.arange(24)
        silent = (hours[None, :] >= self.silent_from[:, None]) & (hours[None, :] < self.silent_to[:, None])
        gone = (off >= self.end_day)[:, None]
        use = np.where(silent | gone, 0.0, use)
        # The reading stamped HH:00 is the meter's total at that moment (before hour HH's use).
        totals = np.cumsum(use, axis=1)
        cumulative = self.reading[:, None] + np.concatenate([np.zeros((n, 1)), totals[:, :-1]], axis=1)
        self.reading = self.reading + totals[:, -1]
        # Meters report 24 readings a day; a few are lost in transmission.
        lost = rng.random((n, 24)) < 0.01
        unit_idx, hour_idx = np.nonzero(~lost)
        ts = pl.Series(
            [base + timedelta(hours=int(x), minutes=0) for x in range(24)], dtype=pl.Datetime("us")
        )
        frame = pl.DataFrame(
            {
                "meter_id": self.meters["meter_id"].gather(unit_idx),
                "read_at": ts.gather(hour_idx),
                "reading_m3": cumulative[unit_idx, hour_idx].round(3),
                "signal": rng.integers(-110, -60, size=unit_idx.size),
            }
        ).sort("read_at", "meter_id", maintain_order=True)
        deliver(self.ctx, self.table("water_readings"), frame, day)

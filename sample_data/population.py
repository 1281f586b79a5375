"""The synthetic elder population of Yangpu: the truth every source system sees part of.

Ages and sex follow Shanghai's registered 60+ mix (DOMAIN.md); living
arrangement, care level, cognitive status and mortality rise with age. A few
percent are 59 at the start and turn 60 during the period.
"""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import polars as pl

from sample_data import yangpu
from sample_data.config import GeneratorConfig

# Age mix of Shanghai's registered 60+ (2020): 60-64, 65-69, 70-79, 80+.
AGE_BANDS = ((60, 64, 0.283), (65, 69, 0.279), (70, 79, 0.283), (80, 104, 0.155))
TURNING_60_SHARE = 0.02  # extra people aged 59 at the start
# Annual probability of death by age band (configurable defaults, not law).
MORTALITY = ((60, 0.008), (70, 0.025), (80, 0.07), (90, 0.18))
MOVE_OUT_RATE = 0.01  # per year, out of the district
MOVE_WITHIN_RATE = 0.03  # per year, to another address in the district


def _ages(rng: np.random.Generator, n: int) -> np.ndarray:
    band = rng.choice(len(AGE_BANDS), size=n, p=[b[2] for b in AGE_BANDS])
    lo = np.array([AGE_BANDS[b][0] for b in band])
    hi = np.array([AGE_BANDS[b][1] for b in band])
    ages = lo + (rng.random(n) * (hi - lo + 1)).astype(int)
    # 80+: survival thins the oldest - a geometric decay from 80.
    old = band == 3
    ages[old] = 80 + np.minimum(rng.geometric(0.12, size=int(old.sum())) - 1, 24)
    return ages


def _by_age(age: np.ndarray, table: tuple[tuple[int, float], ...]) -> np.ndarray:
    out = np.zeros(len(age))
    for lo, v in table:
        out[age >= lo] = v
    return out


def build_population(cfg: GeneratorConfig, rng: np.random.Generator) -> pl.DataFrame:
    """One row per person in the truth, with the attributes systems will garble."""
    n_main = cfg.elders
    n_59 = max(1, round(cfg.elders * TURNING_60_SHARE))
    n = n_main + n_59
    age = np.concatenate([_ages(rng, n_main), np.full(n_59, 59)])
    # Birth date: age completed years at the start date.
    day_in_year = rng.integers(0, 365, size=n)
    start = cfg.start
    births = [
        date(start.year - int(a) - 1, start.month, 1) + timedelta(days=int(d) + 1)
        for a, d in zip(age, day_in_year, strict=True)
    ]
    # Recompute exact ages so everyone is at least 59 and the 59s turn 60 within a year.
    p_male = np.where(age < 70, 0.50, np.where(age < 80, 0.46, 0.40))
    male = rng.random(n) < p_male
    names = yangpu.sample_names(rng, male)

    # ID area code: born in Yangpu, elsewhere in Shanghai, retired codes, other provinces.
    kind = rng.choice(4, size=n, p=[0.78, 0.08, 0.06, 0.08])
    other = rng.integers(0, 1000, size=n)
    areas = [
        yangpu.YANGPU_AREA
        if k == 0
        else yangpu.OTHER_SHANGHAI_AREAS[o % len(yangpu.OTHER_SHANGHAI_AREAS)]
        if k == 1
        else yangpu.RETIRED_SHANGHAI_AREAS[o % len(yangpu.RETIRED_SHANGHAI_AREAS)]
        if k == 2
        else yangpu.OTHER_PROVINCE_AREAS[o % len(yangpu.OTHER_PROVINCE_AREAS)]
        for k, o in zip(kind, other, strict=True)
    ]
    seq = yangpu.id_sequence(rng, male)
    ids = [
        yangpu.id_number(a, b.strftime("%Y%m%d"), int(s)) for a, b, s in zip(areas, births, seq, strict=True)
    ]
    # IDs must be unique: bump the sequence on a collision (rare).
    seen: set[str] = set()
    for i, v in enumerate(ids):
        s = int(seq[i])
        while v in seen:
            s = (s + 2) % 1000
            v = yangpu.id_number(areas[i], births[i].strftime("%Y%m%d"), s)
        ids[i] = v
        seen.add(v)
    hukou = np.where(kind == 3, "NONLOCAL", np.where(rng.random(n) < 0.92, "LOCAL", "CITY"))

    street_idx = rng.choice(len(yangpu.STREETS), size=n, p=[s.weight for s in yangpu.STREETS])
    addr, committee = yangpu.addresses(rng, street_idx)
    lat, lon = yangpu.street_coordinates(rng, street_idx)
    has_mobile = rng.random(n) < np.where(age < 80, 0.92, 0.70)
    mobile = yangpu.mobile_numbers(rng, n)
    landline = yangpu.landline_numbers(rng, n)
    has_landline = (rng.random(n) < 0.45) | ~has_mobile

    # Living arrangement by age band.
    u = rng.random(n)
    alone_p = np.where(age < 70, 0.08, np.where(age < 80, 0.12, 0.22))
    spouse_p = np.where(age < 70, 0.52, np.where(age < 80, 0.50, 0.30))
    inst_p = np.where(age < 80, 0.005, 0.06)
    living = np.where(
        u < alone_p,
        "ALONE",
        np.where(
            u < alone_p + spouse_p,
            "SPOUSE",
            np.where(u < alone_p + spouse_p + inst_p, "INSTITUTION", "FAMILY"),
        ),
    )

    # Care level from the needs assessment (0 = assessed normal / never assessed).
    assessed_p = np.where(age < 70, 0.02, np.where(age < 80, 0.08, np.where(age < 90, 0.25, 0.50)))
    assessed = rng.random(n) < assessed_p
    mean_level = np.clip((age - 60) / 9.0, 1.0, 4.5)
    level = np.clip(np.round(rng.normal(mean_level, 1.2)), 1, 6).astype(int)
    care_level = np.where(assessed, level, 0)

    # Cognitive status.
    u = rng.random(n)
    dem_p = np.where(age < 70, 0.03, np.where(age < 80, 0.06, 0.20))
    mci_p = np.where(age < 70, 0.08, np.where(age < 80, 0.15, 0.25))
    cognitive = np.where(u < dem_p, "DEMENTIA", np.where(u < dem_p + mci_p, "MCI", "NORMAL"))
    edu_p_old = [0.25, 0.35, 0.22, 0.12, 0.06]
    edu_p_young = [0.03, 0.17, 0.40, 0.28, 0.12]
    young = age < 75
    edu = np.empty(n, dtype=object)
    codes = np.array(["ILLITERATE", "PRIMARY", "JUNIOR", "SENIOR", "COLLEGE"])
    edu[young] = rng.choice(codes, size=int(young.sum()), p=edu_p_young)
    edu[~young] = rng.choice(codes, size=int((~young).sum()), p=edu_p_old)
    dibao = rng.random(n) < 0.03

    # Life events within the period.
    years = cfg.days / 365.0
    q = _by_age(age, MORTALITY)
    q = np.where(care_level >= 5, np.minimum(q * 3, 0.6), q)
    dies = rng.random(n) < 1 - (1 - q) ** years
    death_off = rng.integers(0, cfg.days, size=n)
    moves_out = (~dies) & (rng.random(n) < 1 - (1 - MOVE_OUT_RATE) ** years)
    move_off = rng.integers(0, cfg.days, size=n)
    moves_within = (~dies) & (~moves_out) & (rng.random(n) < 1 - (1 - MOVE_WITHIN_RATE) ** years)
    new_street = rng.choice(len(yangpu.STREETS), size=n, p=[s.weight for s in yangpu.STREETS])
    new_addr, new_committee = yangpu.addresses(rng, new_street)

    def day(off: int) -> date:
        return start + timedelta(days=int(off))

    family_given = yangpu.sample_names(rng, rng.random(n) < 0.5)
    family_names = [nm[0] + fg[1:] for nm, fg in zip(names, family_given, strict=True)]
    family_phone = yangpu.mobile_numbers(rng, n)

    pid = [f"P{i + 1:07d}" for i in range(n)]
    frame = pl.DataFrame(
        {
            "person_id": pid,
            "name": names,
            "sex": np.where(male, "1", "2"),
            "birth_date": births,
            "id_number": ids,
            "id_area": areas,
            "hukou_type": hukou,
            "street_code": [yangpu.STREETS[i].code for i in street_idx],
            "street_idx": street_idx.astype(np.int16),
            "committee": committee,
            "address": addr,
            "home_lat": lat,
            "home_lon": lon,
            "mobile": [m if h else None for m, h in zip(mobile, has_mobile, strict=True)],
            "landline": [p if h else None for p, h in zip(landline, has_landline, strict=True)],
            "family_name": family_names,
            "family_phone": family_phone,
            "living_arrangement": living,
            "care_level": care_level.astype(np.int8),
            "cognitive_status": cognitive,
            "education": edu.astype(str),
            "dibao": dibao,
            "death_date": [day(o) if d else None for d, o in zip(dies, death_off, strict=True)],
            "move_out_date": [day(o) if m else None for m, o in zip(moves_out, move_off, strict=True)],
            "moved_on": [day(o) if m else None for m, o in zip(moves_within, move_off, strict=True)],
            "new_street_code": [
                yangpu.STREETS[s].code if m else None for s, m in zip(new_street, moves_within, strict=True)
            ],
            "new_committee": [c if m else None for c, m in zip(new_committee, moves_within, strict=True)],
            "new_address": [a if m else None for a, m in zip(new_addr, moves_within, strict=True)],
        },
        schema_overrides={
            "mobile": pl.String,
            "landline": pl.String,
            "death_date": pl.Date,
            "move_out_date": pl.Date,
            "moved_on": pl.Date,
            "new_street_code": pl.String,
            "new_committee": pl.String,
            "new_address": pl.String,
        },
    )
    return frame.with_columns(
        turns_60_on=pl.col("birth_date").dt.offset_by("60y"),
    )


def age_on(birth: pl.Expr, on: date) -> pl.Expr:
    """Completed years of age on a date."""
    years = pl.lit(on.year) - birth.dt.year()
    before_birthday = (pl.lit(on.month) < birth.dt.month()) | (
        (pl.lit(on.month) == birth.dt.month()) & (pl.lit(on.day) < birth.dt.day())
    )
    return years - before_birthday.cast(pl.Int32)


def alive_on(on: date) -> pl.Expr:
    """In the district and alive on a day."""
    return (pl.col("death_date").is_null() | (pl.col("death_date") > on)) & (
        pl.col("move_out_date").is_null() | (pl.col("move_out_date") > on)
    )


def elder_on(on: date) -> pl.Expr:
    """Alive, in the district and aged 60+ on a day."""
    return alive_on(on) & (pl.col("turns_60_on") <= on)


def current_address(on: date) -> pl.Expr:
    moved = pl.col("moved_on").is_not_null() & (pl.col("moved_on") <= on)
    return pl.when(moved).then(pl.col("new_address")).otherwise(pl.col("address"))


def current_street(on: date) -> pl.Expr:
    moved = pl.col("moved_on").is_not_null() & (pl.col("moved_on") <= on)
    return pl.when(moved).then(pl.col("new_street_code")).otherwise(pl.col("street_code"))


def current_committee(on: date) -> pl.Expr:
    moved = pl.col("moved_on").is_not_null() & (pl.col("moved_on") <= on)
    return pl.when(moved).then(pl.col("new_committee")).otherwise(pl.col("committee"))


def best_phone() -> pl.Expr:
    return pl.coalesce(pl.col("mobile"), pl.col("landline"))

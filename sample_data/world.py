"""The world every source system observes: population, providers and programme enrolments.

Built once per generation from the seed; systems read it day by day.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np
import polars as pl

from sample_data import yangpu
from sample_data.config import GeneratorConfig
from sample_data.deliver import stable_rng
from sample_data.population import age_on, build_population

# District-scale facility counts (400,000 elders) and the minimum kept at small scales.
FACILITY_COUNTS = {
    "NURSING_HOME": (45, 2),
    "CARE_HOME": (30, 2),
    "SERVICE_CENTRE": (14, 2),
    "DAY_CARE": (40, 2),
    "MEAL_POINT": (110, 12),
    "RENTAL_POINT": (12, 2),
    "HOME_CARE": (25, 3),
}
FACILITY_LABEL = {
    "NURSING_HOME": "养老院",
    "CARE_HOME": "长者照护之家",
    "SERVICE_CENTRE": "综合为老服务中心",
    "DAY_CARE": "日间照护中心",
    "MEAL_POINT": "社区长者食堂",
    "RENTAL_POINT": "康复辅具租赁点",
    "HOME_CARE": "居家养老服务社",
}
DISTRICT_SCALE = 400_000


@dataclass
class World:
    cfg: GeneratorConfig
    people: pl.DataFrame  # the population (truth), with age at start
    facilities: pl.DataFrame
    caregivers: pl.DataFrame
    volunteers: pl.DataFrame

    def facilities_of(self, kind: str) -> pl.DataFrame:
        return self.facilities.filter(pl.col("facility_type") == kind)


def _facilities(cfg: GeneratorConfig) -> pl.DataFrame:
    rng = stable_rng(cfg, "world", "facilities")
    scale = cfg.elders / DISTRICT_SCALE
    rows = []
    for kind, (full, minimum) in FACILITY_COUNTS.items():
        count = max(minimum, round(full * scale))
        for k in range(count):
            # Meal points: at least one per street, in street order first.
            st_i = k % len(yangpu.STREETS) if kind == "MEAL_POINT" else int(rng.integers(len(yangpu.STREETS)))
            st = yangpu.STREETS[st_i]
            estate = st.estates[int(rng.integers(len(st.estates)))]
            road = st.roads[int(rng.integers(len(st.roads)))]
            beds = {
                "NURSING_HOME": int(rng.integers(50, 400)),
                "CARE_HOME": int(rng.integers(20, 50)),
                "DAY_CARE": 0,
            }.get(kind, 0)
            opened = cfg.start - timedelta(days=int(rng.integers(200, 6000)))
            licence_until = cfg.start + timedelta(days=int(rng.integers(-60, 1500)))
            rows.append(
                {
                    "facility_id": f"YP{kind[:2]}{k + 1:04d}",
                    "facility_name": f"杨浦区{st.short}{estate}{FACILITY_LABEL[kind]}",
                    "facility_type": kind,
                    "street": st.code,
                    "address": f"上海市杨浦区{road}{int(rng.integers(1, 1500))}号",
                    "beds": beds if kind in ("NURSING_HOME", "CARE_HOME", "DAY_CARE") else None,
                    "licence_no": f"沪杨民养{opened.year}{int(rng.integers(1000, 9999))}",
                    "licence_valid_until": licence_until,
                    "opened_on": opened,
                    "closed_on": None,
                    "status": "OPEN",
                    "phone": yangpu.landline_numbers(rng, 1)[0],
                    "manager_name": yangpu.sample_names(rng, np.array([bool(rng.random() < 0.5)]))[0],
                    "lat": round(st.lat + float(rng.normal(0, 0.003)), 6),
                    "lon": round(st.lon + float(rng.normal(0, 0.003)), 6),
                    "street_idx": st_i,
                }
            )
    frame = pl.DataFrame(rows, infer_schema_length=None)
    # One meal point closes halfway through the period (meals there after that are a rule breach).
    closing = frame.filter(pl.col("facility_type") == "MEAL_POINT")["facility_id"][-1]
    closed_on = cfg.start + timedelta(days=max(1, cfg.days // 2))
    return frame.with_columns(
        closed_on=pl.when(pl.col("facility_id") == closing)
        .then(pl.lit(closed_on))
        .otherwise(pl.col("closed_on"))
    )


def _workers(cfg: GeneratorConfig, name: str, n: int, years: tuple[int, int]) -> pl.DataFrame:
    """People who are not elders (caregivers, volunteers): names, IDs, phones."""
    rng = stable_rng(cfg, "world", name)
    male = rng.random(n) < (0.2 if name == "caregivers" else 0.4)
    names = yangpu.sample_names(rng, male)
    births = [
        date(int(y), 1, 1) + timedelta(days=int(d))
        for y, d in zip(rng.integers(years[0], years[1], size=n), rng.integers(0, 365, size=n), strict=True)
    ]
    seq = yangpu.id_sequence(rng, male)
    areas = [
        yangpu.OTHER_PROVINCE_AREAS[int(a)] if rng.random() < 0.6 else yangpu.YANGPU_AREA
        for a in rng.integers(0, len(yangpu.OTHER_PROVINCE_AREAS), size=n)
    ]
    ids = [
        yangpu.id_number(a, b.strftime("%Y%m%d"), int(s)) for a, b, s in zip(areas, births, seq, strict=True)
    ]
    return pl.DataFrame(
        {
            "name": names,
            "sex": np.where(male, "1", "2"),
            "birth_date": births,
            "id_number": ids,
            "mobile": yangpu.mobile_numbers(rng, n),
        }
    )


def build_world(cfg: GeneratorConfig) -> World:
    people = build_population(cfg, stable_rng(cfg, "world", "population"))
    people = people.with_columns(
        age=age_on(pl.col("birth_date"), cfg.start), idx=pl.int_range(pl.len(), dtype=pl.Int64)
    )
    facilities = _facilities(cfg)
    rng = stable_rng(cfg, "world", "employment")
    n_cg = max(12, cfg.elders // 100)
    caregivers = _workers(cfg, "caregivers", n_cg, (1964, 1998))
    employers = facilities.filter(pl.col("facility_type").is_in(["HOME_CARE", "NURSING_HOME", "CARE_HOME"]))
    emp_idx = rng.integers(0, employers.height, size=n_cg)
    # Every home-care provider gets at least two caregivers.
    home = [i for i, t in enumerate(employers["facility_type"].to_list()) if t == "HOME_CARE"]
    for k, h in enumerate(home * 2):
        if k < n_cg:
            emp_idx[k] = h
    caregivers = caregivers.with_columns(
        caregiver_id=pl.format("HL{}", pl.int_range(1, n_cg + 1).cast(pl.String).str.zfill(6)),
        employer_id=pl.Series(employers["facility_id"].gather(emp_idx)),
        qualification=pl.Series(
            rng.choice(["NONE", "L5", "L4", "L3", "L2"], size=n_cg, p=[0.1, 0.4, 0.3, 0.15, 0.05])
        ),
        cert_no=pl.format("沪护{}", pl.Series(rng.integers(10**9, 10**10, size=n_cg)).cast(pl.String)),
        cert_valid_until=pl.Series(
            [cfg.start + timedelta(days=int(d)) for d in rng.integers(-120, 1500, size=n_cg)]
        ),
        hired_on=pl.Series([cfg.start - timedelta(days=int(d)) for d in rng.integers(30, 4000, size=n_cg)]),
        leaves_on=pl.Series(
            [
                cfg.start + timedelta(days=int(d)) if rng.random() < 0.05 else None
                for d in rng.integers(0, max(1, cfg.days), size=n_cg)
            ],
            dtype=pl.Date,
        ),
    )
    # Volunteers of the time bank: most are younger elders serving older ones.
    n_vol = max(10, cfg.elders // 40)
    n_elder_vol = int(n_vol * 0.6)
    young = people.filter((pl.col("age") >= 60) & (pl.col("age") <= 72) & pl.col("death_date").is_null())
    pick = rng.choice(young.height, size=min(n_elder_vol, young.height), replace=False)
    elder_vols = young[np.sort(pick)].select(
        "name",
        "sex",
        "birth_date",
        "id_number",
        pl.col("mobile").fill_null(pl.col("family_phone")),
        "person_id",
        pl.col("street_code"),
    )
    others = _workers(cfg, "volunteers", n_vol - elder_vols.height, (1970, 2004)).with_columns(
        person_id=pl.lit(None, dtype=pl.String),
        street_code=pl.Series(
            [
                yangpu.STREETS[int(i)].code
                for i in rng.integers(0, len(yangpu.STREETS), size=n_vol - elder_vols.height)
            ]
        ),
    )
    volunteers = pl.concat([elder_vols, others], how="vertical_relaxed").with_columns(
        volunteer_id=pl.format("TB{}", pl.int_range(1, pl.len() + 1).cast(pl.String).str.zfill(7))
    )
    return World(cfg=cfg, people=people, facilities=facilities, caregivers=caregivers, volunteers=volunteers)

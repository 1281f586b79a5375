"""Service programmes: meal aid, love milk, device rental, family care beds,
cognitive screening and the time bank."""

from __future__ import annotations

import calendar
from datetime import date, datetime, timedelta

import numpy as np
import polars as pl

from sample_data import yangpu
from sample_data.deliver import GenContext, deliver
from sample_data.notes import make_notes
from sample_data.population import age_on, alive_on, current_address, current_street, elder_on
from sample_data.systems.base import System, record_incident
from sample_data.systems.registries import note_people
from sample_data.world import World


def _ts(day: date, minutes: np.ndarray) -> pl.Series:
    base = datetime.combine(day, datetime.min.time())
    return pl.Series([base + timedelta(minutes=int(m)) for m in minutes], dtype=pl.Datetime("us"))


class MealAid(System):
    name = "meal_aid"

    def __init__(self, ctx: GenContext, world: World) -> None:
        super().__init__(ctx, world)
        rng = self.rng("setup")
        p = world.people
        p_use = np.where(p["age"].to_numpy() >= 80, 0.12, 0.06) + np.where(
            p["living_arrangement"].to_numpy() == "ALONE", 0.08, 0.0
        )
        p_use = np.where(p["living_arrangement"].to_numpy() == "INSTITUTION", 0.0, p_use)
        users = p.filter(pl.Series(rng.random(p.height) < p_use))
        points = world.facilities_of("MEAL_POINT")
        by_street: dict[str, list[str]] = {}
        for fid, st in points.select("facility_id", "street").iter_rows():
            by_street.setdefault(st, []).append(fid)
        home_point = [
            by_street[st][int(k) % len(by_street[st])]
            for st, k in zip(users["street_code"], rng.integers(0, 1000, size=users.height), strict=True)
        ]
        # Senior card (敬老卡): registered residents 65+. Synthetic format JL + 10 digits.
        card = [
            f"JL31{(int(i) * 104_729 + 7) % 100_000_000:08d}" if (a >= 65 and h != "NONLOCAL") else None
            for i, a, h in zip(users["idx"], users["age"], users["hukou_type"], strict=True)
        ]
        # Some deceased users' cards keep being used by family for a few days (planted).
        keeps = users["death_date"].is_not_null().to_numpy() & (rng.random(users.height) < 0.3)
        extra = rng.integers(2, 10, size=users.height)
        self.users = users.with_columns(
            meal_point_id=pl.Series(home_point),
            senior_card_no=pl.Series(card, dtype=pl.String),
            served_until=pl.when(pl.Series(keeps))
            .then(pl.col("death_date") + pl.duration(days=pl.lit(pl.Series(extra))))
            .otherwise(pl.col("death_date")),
        )
        for row in self.users.filter(pl.Series(keeps)).iter_rows(named=True):
            record_incident(
                ctx,
                f"MEAL-DEAD-{row['person_id']}",
                "deceased_still_served",
                row["person_id"],
                None,
                datetime.combine(row["death_date"], datetime.min.time()),
                datetime.combine(row["served_until"], datetime.min.time()),
                "老人已去世，敬老卡仍在助餐点消费",
            )
        self.points = points.select("facility_id", "facility_name", "closed_on")
        self.closed_point = points.filter(pl.col("closed_on").is_not_null())

    def on_day(self, day: date) -> None:
        rng = self.rng("meals", day.isoformat())
        active = (
            (pl.col("served_until").is_null() | (pl.col("served_until") > day))
            & (pl.col("move_out_date").is_null() | (pl.col("move_out_date") > day))
            & (pl.col("turns_60_on") <= day)
        )
        u = self.users.filter(active)
        weekend = day.weekday() >= 5
        lunch = rng.random(u.height) < (0.40 if weekend else 0.60)
        dinner = rng.random(u.height) < 0.12
        rows = pl.concat(
            [
                u.filter(pl.Series(lunch)).with_columns(
                    meal_type=pl.lit("LUNCH"), minute=pl.Series(rng.integers(660, 780, size=int(lunch.sum())))
                ),
                u.filter(pl.Series(dinner)).with_columns(
                    meal_type=pl.lit("DINNER"),
                    minute=pl.Series(rng.integers(1020, 1110, size=int(dinner.sum()))),
                ),
            ]
        ).join(self.points, left_on="meal_point_id", right_on="facility_id", how="left")
        # After a point closes its diners move to another point - but the closed point's
        # terminal keeps uploading a few transactions (a rule breach the quality suite must catch).
        still = pl.Series(rng.random(rows.height) < 0.05)
        rows = rows.with_columns(
            at_closed=pl.col("closed_on").is_not_null() & (pl.col("closed_on") <= day)
        ).with_columns(breach=pl.col("at_closed") & still)
        for row in rows.filter(pl.col("breach")).select("person_id").iter_rows():
            record_incident(
                self.ctx,
                f"MEAL-CLOSED-{day:%Y%m%d}-{row[0]}",
                "meal_at_closed_point",
                row[0],
                None,
                datetime.combine(day, datetime.min.time()),
                datetime.combine(day, datetime.min.time()),
                "助餐点已停业仍有消费记录",
            )
        rows = (
            rows.with_columns(
                meal_point_id=pl.when(pl.col("at_closed") & ~pl.col("breach"))
                .then(pl.lit(self.points["facility_id"][0]))
                .otherwise(pl.col("meal_point_id"))
            )
            .drop("facility_name", "closed_on")
            .join(self.points.drop("closed_on"), left_on="meal_point_id", right_on="facility_id", how="left")
        )
        rows = rows.rename({"facility_name": "meal_point_name"})
        rows = rows.sort("minute", "person_id")
        n = rows.height
        amount = rng.choice(np.array([12.0, 15.0, 18.0]), size=n)
        age = rows.select(age_on(pl.col("birth_date"), day)).to_series().to_numpy()
        subsidy = np.where(age >= 90, 8.0, np.where(age >= 80, 5.0, np.where(age >= 70, 3.0, 0.0)))
        subsidy = subsidy + np.where(rows["living_arrangement"].to_numpy() == "ALONE", 2.0, 0.0)
        has_card = rows["senior_card_no"].is_not_null().to_numpy()
        pay = np.where(has_card, "SENIOR_CARD", rng.choice(["CASH", "WECHAT", "ALIPAY", "FACE"], size=n))
        frame = rows.with_columns(
            transaction_id=pl.format(
                "{}{}", pl.lit(f"ZC{day:%Y%m%d}"), pl.int_range(1, n + 1).cast(pl.String).str.zfill(6)
            ),
            id_number=pl.Series(
                [i if rng.random() < 0.9 else None for i in rows["id_number"]], dtype=pl.String
            ),
            meal_time=_ts(day, rows["minute"].to_numpy()),
            amount=pl.Series(amount),
            subsidy=pl.Series(subsidy),
            self_paid=pl.Series(amount - subsidy),
            payment_method=pl.Series(pay, dtype=pl.String),
            _person_id=pl.col("person_id"),
        )
        # The vendor upgraded its export to UTF-8 two-thirds into the period.
        upgraded = day >= self.cfg.start + timedelta(days=(2 * self.cfg.days) // 3)
        deliver(self.ctx, self.table("meal_transactions"), frame, day, encoding="utf-8" if upgraded else None)


class LoveMilk(System):
    name = "love_milk"

    def __init__(self, ctx: GenContext, world: World) -> None:
        super().__init__(ctx, world)
        rng = self.rng("setup")
        p = world.people
        eligible = (p["age"].to_numpy() >= self.cfg.milk_min_age) | p["dibao"].to_numpy()
        enrolled = eligible & (rng.random(p.height) < 0.7)
        self.enrolled = p.filter(pl.Series(enrolled)).with_columns(
            milk_spec=pl.Series(
                rng.choice(["FRESH_250", "LOWFAT_250", "HIGHCA_200", "YOGURT_150"], size=int(enrolled.sum())),
                dtype=pl.String,
            ),
            # Lists are compiled from last month's roll: half the deceased stay on it a month.
            stale_after_death=pl.Series(rng.random(int(enrolled.sum())) < 0.5),
        )

    def on_day(self, day: date) -> None:
        if not self.is_month_delivery(day):
            return
        rng = self.rng("milk", day.isoformat())
        month_start = day.replace(day=1)
        prev_start = (month_start - timedelta(days=1)).replace(day=1)
        died_last_month = (
            pl.col("death_date").is_not_null()
            & (pl.col("death_date") >= prev_start)
            & (pl.col("death_date") < month_start)
        )
        alive_now = alive_on(month_start) | (
            pl.col("death_date").is_not_null() & (pl.col("death_date") >= day)
        )
        on_list = self.enrolled.filter(alive_now | (died_last_month & pl.col("stale_after_death")))
        for row in on_list.filter(died_last_month).iter_rows(named=True):
            record_incident(
                self.ctx,
                f"MILK-DEAD-{row['person_id']}-{day:%Y%m}",
                "deceased_still_served",
                row["person_id"],
                None,
                datetime.combine(row["death_date"], datetime.min.time()),
                datetime.combine(day, datetime.min.time()),
                "老人已去世，仍在爱心奶配送名单中",
            )
        days_in_month = calendar.monthrange(day.year, day.month)[1]
        n = on_list.height
        sign = rng.choice(["SIGNED", "PROXY", "FAILED"], size=n, p=[0.8, 0.17, 0.03])
        frame = on_list.sort("street_code", "committee", "person_id").with_columns(
            seq_no=pl.int_range(1, n + 1),
            phone=pl.coalesce("mobile", "landline"),
            street=current_street(day),
            delivery_address=current_address(day),
            quantity=pl.Series(np.where(sign == "FAILED", 0, days_in_month)),
            delivery_month=pl.lit(f"{day:%Y-%m}"),
            sign_status=pl.Series(sign, dtype=pl.String),
            eligibility=pl.when(pl.col("age") >= self.cfg.milk_min_age)
            .then(pl.lit("AGE80"))
            .otherwise(pl.lit("DIBAO")),
            _person_id=pl.col("person_id"),
        )
        deliver(
            self.ctx,
            self.table("milk_deliveries"),
            frame,
            day,
            title=f"杨浦区爱心奶配送名单（{day:%Y年%m月}）",
        )


DEVICES = ("WHEELCHAIR", "WALKER", "CARE_BED", "COMMODE", "BATH_CHAIR", "ANTI_BEDSORE")
DEVICE_FEE = {
    "WHEELCHAIR": 60.0,
    "WALKER": 20.0,
    "CARE_BED": 180.0,
    "COMMODE": 15.0,
    "BATH_CHAIR": 10.0,
    "ANTI_BEDSORE": 40.0,
}


class DeviceRental(System):
    name = "device_rental"

    def __init__(self, ctx: GenContext, world: World) -> None:
        super().__init__(ctx, world)
        self.open: list[dict[str, object]] = []
        self.points = world.facilities_of("RENTAL_POINT")["facility_id"].to_list()
        self.seq = 0

    def on_day(self, day: date) -> None:
        rng = self.rng("rentals", day.isoformat())
        p = self.world.people
        cand = p.filter(elder_on(day) & ((pl.col("care_level") >= 2) | (pl.col("age") >= 85)))
        pick = rng.random(cand.height) < 0.002
        new = cand.filter(pl.Series(pick))
        n = new.height
        types = rng.choice(DEVICES, size=n)
        ids = []
        for _ in range(n):
            self.seq += 1
            ids.append(f"FJ{day:%Y%m}{self.seq:06d}")
        frame = new.with_columns(
            contract_id=pl.Series(ids, dtype=pl.String),
            phone=pl.coalesce("mobile", "landline"),
            residence_address=current_address(day),
            device_type=pl.Series(types, dtype=pl.String),
            device_id=pl.Series([f"D{int(k):08d}" for k in rng.integers(0, 10**8, size=n)], dtype=pl.String),
            rental_point_id=pl.Series(
                [self.points[int(k) % len(self.points)] for k in rng.integers(0, 100, size=n)],
                dtype=pl.String,
            ),
            start_date=pl.lit(day),
            monthly_fee=pl.Series([DEVICE_FEE[t] for t in types], dtype=pl.Float64),
            subsidy_ratio=pl.Series(rng.choice([0.5, 0.8, 0.9], size=n), dtype=pl.Float64),
            _person_id=pl.col("person_id"),
        )
        deliver(self.ctx, self.table("device_rentals"), frame, day)
        for row in frame.select("contract_id", "death_date", "move_out_date", "rental_point_id").iter_rows():
            cid, died, moved, point = row
            if died is not None:
                back, reason = died + timedelta(days=int(rng.integers(5, 20))), "DECEASED"
            elif moved is not None:
                back, reason = moved + timedelta(days=int(rng.integers(1, 10))), "MOVED"
            else:
                back = day + timedelta(days=int(rng.integers(20, 200)))
                reason = "NO_LONGER_NEEDED" if rng.random() < 0.85 else "ADMITTED"
            self.open.append(
                {"contract_id": cid, "return_date": back, "reason": reason, "rental_point_id": point}
            )
        due = [r for r in self.open if r["return_date"] == day]
        self.open = [r for r in self.open if r["return_date"] != day]
        back = pl.DataFrame(
            due,
            schema={
                "contract_id": pl.String,
                "return_date": pl.Date,
                "reason": pl.String,
                "rental_point_id": pl.String,
            },
        ).with_columns(
            condition=pl.Series(
                rng.choice(["GOOD", "WORN", "DAMAGED"], size=len(due), p=[0.6, 0.35, 0.05]), dtype=pl.String
            )
        )
        deliver(self.ctx, self.table("device_returns"), back, day)


class CareBeds(System):
    name = "family_care_beds"

    def __init__(self, ctx: GenContext, world: World) -> None:
        super().__init__(ctx, world)
        rng = self.rng("setup")
        p = world.people
        cand = p.filter((pl.col("care_level") >= 3) & (pl.col("living_arrangement") != "INSTITUTION"))
        signed = cand.filter(pl.Series(rng.random(cand.height) < 0.15))
        n = signed.height
        providers = world.facilities.filter(pl.col("facility_type").is_in(["NURSING_HOME", "CARE_HOME"]))
        prov_ids = providers["facility_id"].to_list()
        signed_on = [
            self.cfg.start - timedelta(days=int(d)) for d in rng.integers(-self.cfg.days, 330, size=n)
        ]
        self.contracts = signed.with_columns(
            contract_id=pl.Series([f"JT{int(i):07d}" for i in signed["idx"]], dtype=pl.String),
            provider_id=pl.Series(
                [prov_ids[int(k) % len(prov_ids)] for k in rng.integers(0, 1000, size=n)], dtype=pl.String
            ),
            signed_on=pl.Series(signed_on, dtype=pl.Date),
        ).with_columns(ends_on=pl.col("signed_on").dt.offset_by("1y"))
        cg = world.caregivers
        self.staff: dict[str, list[tuple[str, str]]] = {}
        for emp, name, cert in cg.select("employer_id", "name", "cert_no").iter_rows():
            self.staff.setdefault(emp, []).append((name, cert))
        self.all_staff = list(zip(cg["name"], cg["cert_no"], strict=True))

    def _active(self, day: date) -> pl.Expr:
        return (pl.col("signed_on") <= day) & (pl.col("ends_on") > day) & alive_on(day)

    def on_day(self, day: date) -> None:
        if self.is_month_delivery(day):
            listed = (
                self.contracts.filter(pl.col("signed_on") <= day)
                .with_columns(
                    phone=pl.coalesce("mobile", "landline"),
                    bed_address=current_address(day),
                    street=current_street(day),
                    care_level=pl.col("care_level").cast(pl.String),
                    status=pl.when(self._active(day)).then(pl.lit("ACTIVE")).otherwise(pl.lit("ENDED")),
                    _person_id=pl.col("person_id"),
                )
                .sort("contract_id")
            )
            deliver(self.ctx, self.table("care_bed_contracts"), listed, day)
        rng = self.rng("visits", day.isoformat())
        active = self.contracts.filter(self._active(day))
        visits = active.filter(pl.Series(rng.random(active.height) < 3 / 7))
        n = visits.height
        start = rng.integers(8 * 60, 17 * 60, size=n)
        dur = rng.integers(45, 120, size=n)
        staff = []
        for prov, k in zip(visits["provider_id"], rng.integers(0, 1000, size=n), strict=True):
            pool = self.staff.get(prov) or self.all_staff
            staff.append(pool[int(k) % len(pool)])
        notes, spans = make_notes(rng, note_people(visits, day), "notes", pii_rate=0.2)
        frame = visits.sort("contract_id").with_columns(
            visit_id=pl.format(
                "{}{}", pl.lit(f"FW{day:%Y%m%d}"), pl.int_range(1, n + 1).cast(pl.String).str.zfill(5)
            ),
            caregiver_name=pl.Series([s[0] for s in staff], dtype=pl.String),
            caregiver_cert_no=pl.Series([s[1] for s in staff], dtype=pl.String),
            start_time=_ts(day, start),
            end_time=_ts(day, start + dur),
            service_item=pl.Series(
                rng.choice(["BATHING", "HYGIENE", "MOBILITY", "MEDICATION", "VITALS", "REHAB"], size=n),
                dtype=pl.String,
            ),
            notes=pl.Series(notes, dtype=pl.String),
        )
        deliver(self.ctx, self.table("care_bed_visits"), frame, day, notes=[spans])


def _cutoff_positive(instrument: str, score: int, education: str) -> bool:
    """DOMAIN.md cut-offs: AD8 >= 2; MMSE by education; MoCA < 26 (+1 if <= 12 years)."""
    if instrument == "AD8":
        return score >= 2
    if instrument == "MMSE":
        limit = {"ILLITERATE": 17, "PRIMARY": 20}.get(education, 24)
        return score <= limit
    adjusted = score + (1 if education in ("ILLITERATE", "PRIMARY", "JUNIOR", "SENIOR") else 0)
    return adjusted < 26


def _score(instrument: str, status: str, rng: np.random.Generator) -> int:
    if instrument == "AD8":
        lo, hi = {"NORMAL": (0, 1), "MCI": (1, 4), "DEMENTIA": (3, 8)}[status]
    elif instrument == "MMSE":
        lo, hi = {"NORMAL": (25, 30), "MCI": (19, 26), "DEMENTIA": (8, 20)}[status]
    else:
        lo, hi = {"NORMAL": (25, 30), "MCI": (17, 25), "DEMENTIA": (5, 18)}[status]
    return int(rng.integers(lo, hi + 1))


class CognitiveScreening(System):
    name = "cognitive_screening"

    def __init__(self, ctx: GenContext, world: World) -> None:
        super().__init__(ctx, world)
        rng = self.rng("setup")
        p = world.people
        # Each elder is screened once a year, on a day drawn at the start; 85% take part.
        self.people = p.with_columns(
            screen_offset=pl.Series(rng.integers(0, 365, size=p.height)),
            takes_part=pl.Series(rng.random(p.height) < 0.85),
        )
        self.rescreens: dict[date, list[dict[str, object]]] = {}
        self.seq = 0

    def on_day(self, day: date) -> None:
        rng = self.rng("screen", day.isoformat())
        offset = (day - self.cfg.start).days
        first = self.people.filter(pl.col("takes_part") & (pl.col("screen_offset") == offset) & elder_on(day))
        records: list[dict[str, object]] = []
        for row in first.iter_rows(named=True):
            instrument = "AD8" if rng.random() < 0.6 else "MMSE"
            score = _score(instrument, row["cognitive_status"], rng)
            positive = _cutoff_positive(instrument, score, row["education"])
            records.append({**row, "instrument": instrument, "score": score, "positive": positive})
            if positive:
                if rng.random() < 0.85:
                    when = day + timedelta(days=int(rng.integers(10, 21)))
                    self.rescreens.setdefault(when, []).append(row)
                else:
                    start = datetime.combine(day, datetime.min.time())
                    record_incident(
                        self.ctx,
                        f"SCREEN-{row['person_id']}-{day:%Y%m%d}",
                        "positive_not_rescreened",
                        row["person_id"],
                        None,
                        start,
                        start + timedelta(days=30),
                        f"{instrument}初筛阳性（{score}分），30天内未复筛",
                    )
        for row in self.rescreens.pop(day, []):
            died = row["death_date"]
            if isinstance(died, date) and died <= day:
                continue
            score = _score("MOCA", str(row["cognitive_status"]), rng)
            records.append(
                {
                    **row,
                    "instrument": "MOCA",
                    "score": score,
                    "positive": _cutoff_positive("MOCA", score, str(row["education"])),
                }
            )
        if records:
            frame = pl.DataFrame(records, infer_schema_length=None)
        else:
            frame = self.people.head(0).with_columns(
                instrument=pl.lit(None, pl.String),
                score=pl.lit(None, pl.Int64),
                positive=pl.lit(None, pl.Boolean),
            )
        n = frame.height
        ids = []
        for _ in range(n):
            self.seq += 1
            ids.append(f"RZ{day:%Y%m%d}{self.seq:07d}")
        notes, spans = make_notes(rng, note_people(frame, day), "notes", pii_rate=0.05) if n else ([], None)
        orgs = (
            [f"杨浦区{yangpu.STREET_BY_CODE[s].short}社区卫生服务中心" for s in frame["street_code"]]
            if n
            else []
        )
        screeners = yangpu.sample_names(rng, rng.random(n) < 0.3) if n else []
        frame = frame.with_columns(
            screening_id=pl.Series(ids, dtype=pl.String),
            screening_date=pl.lit(day),
            result=pl.when(pl.col("positive")).then(pl.lit("SUSPECTED")).otherwise(pl.lit("NORMAL")),
            screening_org=pl.Series(orgs, dtype=pl.String),
            screener_name=pl.Series(screeners, dtype=pl.String),
            notes=pl.Series(
                [
                    t if rng.random() < 0.3 or (spans and i in spans.rows) else None
                    for i, t in enumerate(notes)
                ],
                dtype=pl.String,
            ),
            _person_id=pl.col("person_id"),
        )
        deliver(self.ctx, self.table("screenings"), frame, day, notes=[spans] if spans else None)


class TimeBank(System):
    name = "time_bank"

    def __init__(self, ctx: GenContext, world: World) -> None:
        super().__init__(ctx, world)
        self.seq = 0

    def on_day(self, day: date) -> None:
        rng = self.rng("txn", day.isoformat())
        vols = self.world.volunteers
        old = self.world.people.filter(elder_on(day) & (pl.col("age") >= 75))
        earn = vols.filter(pl.Series(rng.random(vols.height) < 0.08))
        served = old[rng.integers(0, old.height, size=earn.height)] if old.height else old
        spend = vols.filter(pl.col("person_id").is_not_null()).filter(
            pl.Series(rng.random(int(vols["person_id"].is_not_null().sum())) < 0.01)
        )
        frames = []
        if earn.height:
            frames.append(
                pl.DataFrame(
                    {
                        "volunteer_id": earn["volunteer_id"],
                        "volunteer_name": earn["name"],
                        "volunteer_phone": earn["mobile"],
                        "name": served["name"],
                        "id_number": pl.Series(
                            [i if rng.random() < 0.8 else None for i in served["id_number"]], dtype=pl.String
                        ),
                        "service_type": pl.Series(
                            rng.choice(
                                ["CHAT", "SHOPPING", "ESCORT", "CLEANING", "TECH", "VISIT"], size=earn.height
                            ),
                            dtype=pl.String,
                        ),
                        "hours": pl.Series(rng.choice([0.5, 1.0, 1.5, 2.0, 3.0], size=earn.height)),
                        "txn_type": "EARN",
                        "street": served["street_code"],
                        "_person_id": served["person_id"],
                    }
                )
            )
        if spend.height:
            frames.append(
                pl.DataFrame(
                    {
                        "volunteer_id": spend["volunteer_id"],
                        "volunteer_name": spend["name"],
                        "volunteer_phone": spend["mobile"],
                        "name": spend["name"],
                        "id_number": spend["id_number"],
                        "service_type": pl.Series(
                            rng.choice(["CLEANING", "ESCORT", "SHOPPING"], size=spend.height), dtype=pl.String
                        ),
                        "hours": pl.Series(rng.choice([1.0, 2.0], size=spend.height)),
                        "txn_type": "SPEND",
                        "street": spend["street_code"],
                        "_person_id": spend["person_id"],
                    }
                )
            )
        schema = {
            "volunteer_id": pl.String,
            "volunteer_name": pl.String,
            "volunteer_phone": pl.String,
            "name": pl.String,
            "id_number": pl.String,
            "service_type": pl.String,
            "hours": pl.Float64,
            "txn_type": pl.String,
            "street": pl.String,
            "_person_id": pl.String,
        }
        frame = pl.concat(frames, how="vertical_relaxed") if frames else pl.DataFrame(schema=schema)
        n = frame.height
        ids = []
        for _ in range(n):
            self.seq += 1
            ids.append(f"SJ{day:%Y%m%d}{self.seq:07d}")
        frame = frame.with_columns(transaction_id=pl.Series(ids, dtype=pl.String), txn_date=pl.lit(day))
        deliver(self.ctx, self.table("timebank_transactions"), frame, day)

"""Municipal platform (elders, needs assessments, LTCI visits) and district platform
(street registries, hotline)."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import numpy as np
import polars as pl

from sample_data import yangpu
from sample_data.deliver import GenContext, deliver
from sample_data.notes import NotePerson, make_notes
from sample_data.population import alive_on, current_address, current_committee, current_street, elder_on
from sample_data.systems.base import System, record_incident
from sample_data.world import World

LTCI_VISITS_PER_WEEK = {2: 3, 3: 3, 4: 5, 5: 7, 6: 7}
LTCI_ITEMS = ("BATHING", "FEEDING", "HYGIENE", "MOBILITY", "MEDICATION", "VITALS", "REHAB")


def _platform_id(idx: pl.Expr) -> pl.Expr:
    return pl.format("SH{}", ((idx * 7919 + 104729) % 1_000_000_000).cast(pl.String).str.zfill(9))


def note_people(frame: pl.DataFrame, on: date) -> list[NotePerson]:
    rows = frame.select(
        "name",
        "id_number",
        pl.coalesce("mobile", "landline").alias("phone"),
        current_address(on).alias("addr"),
        "family_name",
        "family_phone",
    ).iter_rows()
    return [NotePerson(n, i, p, a, fn, fp) for n, i, p, a, fn, fp in rows]


class MunicipalPlatform(System):
    name = "municipal_platform"

    def __init__(self, ctx: GenContext, world: World) -> None:
        super().__init__(ctx, world)
        rng = self.rng("setup")
        p = world.people
        n = p.height
        # Deaths reach the city platform after a reporting lag.
        lag = rng.integers(0, 21, size=n)
        self.people = p.with_columns(
            platform_elder_id=_platform_id(pl.col("idx")),
            death_reported_on=pl.col("death_date") + pl.duration(days=pl.lit(pl.Series(lag))),
        )
        # Current needs assessments at the start: dated within the last two years.
        assessed = self.people.filter(pl.col("care_level") > 0)
        age_days = rng.integers(0, 730, size=assessed.height)
        self.assessments = (
            assessed.select("person_id", "idx", "care_level")
            .with_columns(
                assessed_on=pl.Series([self.cfg.start - timedelta(days=int(d) + 1) for d in age_days]),
            )
            .with_columns(valid_until=pl.col("assessed_on").dt.offset_by("2y") - pl.duration(days=1))
        )
        # LTCI enrolment: assessed levels 2-6 living at home, most take it up.
        enrol = self.people.filter(
            pl.col("care_level").is_between(2, 6) & (pl.col("living_arrangement") != "INSTITUTION")
        )
        take = rng.random(enrol.height) < 0.7
        enrol = enrol.filter(pl.Series(take))
        # A few level 5-6 elders get fewer visits than they are entitled to (planted).
        under = (enrol["care_level"] >= 5).to_numpy() & (rng.random(enrol.height) < 0.08)
        per_week = np.array([LTCI_VISITS_PER_WEEK[int(lv)] for lv in enrol["care_level"]])
        per_week = np.where(under, 2, per_week)
        home_care = world.facilities_of("HOME_CARE")
        street_to_provider: dict[str, str] = {}
        for fid, st in home_care.select("facility_id", "street").iter_rows():
            street_to_provider.setdefault(st, fid)
        providers = [
            street_to_provider.get(st, home_care["facility_id"][int(i) % home_care.height])
            for st, i in zip(enrol["street_code"], rng.integers(0, 10_000, size=enrol.height), strict=True)
        ]
        self.ltci = enrol.with_columns(
            visits_per_week=pl.Series(per_week),
            underserved=pl.Series(under),
            provider_id=pl.Series(providers),
        )
        for row in self.ltci.filter(pl.col("underserved")).iter_rows(named=True):
            record_incident(
                ctx,
                f"LTCI-{row['person_id']}",
                "ltci_underserved",
                row["person_id"],
                None,
                datetime.combine(self.cfg.start, datetime.min.time()),
                datetime.combine(self.cfg.end, datetime.max.time()).replace(microsecond=0),
                (
                    f"照护{row['care_level']}级，应每周{LTCI_VISITS_PER_WEEK[row['care_level']]}次，"
                    "实际约每周2次"
                ),
            )
        cg = world.caregivers
        self.caregivers_by_employer: dict[str, list[str]] = {}
        for emp, cert in cg.select("employer_id", "cert_no").iter_rows():
            self.caregivers_by_employer.setdefault(emp, []).append(cert)

    def _elder_records(self, frame: pl.DataFrame, day: date, status: pl.Expr) -> pl.DataFrame:
        rng = self.rng("elders-time", day.isoformat())
        secs = rng.integers(8 * 3600, 20 * 3600, size=frame.height)
        base = datetime.combine(day, datetime.min.time())
        return frame.with_columns(
            phone=pl.coalesce("mobile", "landline"),
            residence_address=current_address(day),
            street=current_street(day),
            status=status,
            updated_at=pl.Series([base + timedelta(seconds=int(s)) for s in secs], dtype=pl.Datetime("us")),
            _person_id=pl.col("person_id"),
        )

    def on_day(self, day: date) -> None:
        p = self.people
        if day == self.cfg.start:
            changed = p.filter(elder_on(day))
            frame = self._elder_records(changed, day, pl.lit("ACTIVE"))
        else:
            new60 = p.filter((pl.col("turns_60_on") == day) & alive_on(day))
            moved = p.filter((pl.col("moved_on") == day) & elder_on(day))
            died = p.filter(
                (pl.col("death_reported_on") == day) & (pl.col("turns_60_on") <= pl.col("death_date"))
            )
            left = p.filter((pl.col("move_out_date") == day) & (pl.col("turns_60_on") <= day))
            frame = pl.concat(
                [
                    self._elder_records(new60, day, pl.lit("ACTIVE")),
                    self._elder_records(moved, day, pl.lit("ACTIVE")),
                    self._elder_records(died, day, pl.lit("DECEASED")),
                    self._elder_records(left, day, pl.lit("MOVED_OUT")),
                ]
            )
        frame = frame.with_columns(
            death_date=pl.when(pl.col("status") == "DECEASED").then(pl.col("death_date")).otherwise(None)
        )
        deliver(self.ctx, self.table("muni_elders"), frame, day)
        self._assessments(day)
        self._ltci(day)

    def _assessments(self, day: date) -> None:
        rng = self.rng("assessments", day.isoformat())
        a = self.assessments.join(
            self.people.select("person_id", "name", "id_number", "death_date", "move_out_date"),
            on="person_id",
        )
        if day == self.cfg.start:
            # The first dump carries every assessment still valid.
            rows = a.with_columns(assessment_type=pl.lit("FIRST"))
        else:
            due = a.filter((pl.col("valid_until") == day - timedelta(days=1)) & alive_on(day))
            change = rng.integers(-1, 2, size=due.height)
            rows = due.with_columns(
                assessed_on=pl.lit(day),
                care_level=(pl.col("care_level") + pl.Series(change)).clip(1, 6).cast(pl.Int8),
                assessment_type=pl.lit("REVIEW"),
            )
            # New first assessments among the unassessed old.
            fresh = self.people.filter((pl.col("care_level") == 0) & (pl.col("age") >= 75) & elder_on(day))
            pick = rng.random(fresh.height) < 0.0004
            first = fresh.filter(pl.Series(pick)).with_columns(
                assessed_on=pl.lit(day),
                care_level=pl.Series(rng.integers(0, 3, size=int(pick.sum())), dtype=pl.Int8),
                assessment_type=pl.lit("FIRST"),
            )
            rows = pl.concat(
                [
                    rows.select(
                        "person_id", "name", "id_number", "assessed_on", "care_level", "assessment_type"
                    ),
                    first.select(
                        "person_id", "name", "id_number", "assessed_on", "care_level", "assessment_type"
                    ),
                ]
            )
        rows = rows.sort("person_id").with_columns(
            assessment_id=pl.format(
                "PG{}{}",
                pl.col("assessed_on").dt.strftime("%Y%m%d"),
                pl.int_range(pl.len()).cast(pl.String).str.zfill(5),
            ),
            assessment_date=pl.col("assessed_on"),
            valid_until=pl.col("assessed_on").dt.offset_by("2y") - pl.duration(days=1),
            care_level=pl.col("care_level").cast(pl.String),
            assessor_org=pl.lit("上海市杨浦区老年照护统一需求评估中心"),
            _person_id=pl.col("person_id"),
        )
        deliver(self.ctx, self.table("muni_assessments"), rows, day)

    def _ltci(self, day: date) -> None:
        rng = self.rng("ltci", day.isoformat())
        enrolled = self.ltci.filter(alive_on(day))
        visit = rng.random(enrolled.height) < enrolled["visits_per_week"].to_numpy() / 7.0
        v = enrolled.filter(pl.Series(visit))
        n = v.height
        start_min = rng.integers(8 * 60, 17 * 60, size=n)
        dur = rng.integers(55, 70, size=n)
        base = datetime.combine(day, datetime.min.time())
        certs: list[str | None] = []
        for prov, k in zip(v["provider_id"], rng.integers(0, 1000, size=n), strict=True):
            pool = self.caregivers_by_employer.get(prov)
            certs.append(pool[int(k) % len(pool)] if pool else None)
        notes, spans = make_notes(rng, note_people(v, day), "notes", pii_rate=0.12)
        frame = v.with_columns(
            service_record_id=pl.format(
                "LT{}{}", pl.lit(f"{day:%Y%m%d}"), pl.int_range(pl.len()).cast(pl.String).str.zfill(6)
            ),
            caregiver_cert_no=pl.Series(certs, dtype=pl.String),
            service_date=pl.lit(day),
            start_time=pl.Series(
                [base + timedelta(minutes=int(m)) for m in start_min], dtype=pl.Datetime("us")
            ),
            end_time=pl.Series(
                [base + timedelta(minutes=int(m + d)) for m, d in zip(start_min, dur, strict=True)],
                dtype=pl.Datetime("us"),
            ),
            service_item=pl.Series(rng.choice(LTCI_ITEMS, size=n), dtype=pl.String),
            duration_minutes=pl.Series(dur),
            notes=pl.Series(notes, dtype=pl.String),
            _person_id=pl.col("person_id"),
        )
        deliver(self.ctx, self.table("muni_ltci_services"), frame, day, notes=[spans])


REMARKS = ("独居，需重点关注", "子女在外地", "行动不便", "听力较差，需大声沟通", "已安装智能水表", "")


class DistrictPlatform(System):
    name = "district_platform"

    def __init__(self, ctx: GenContext, world: World) -> None:
        super().__init__(ctx, world)
        rng = self.rng("setup")
        n = world.people.height
        # Committees update moves lazily: half of the movers still show the old address.
        self.people = world.people.with_columns(
            registry_updates_move=pl.Series(rng.random(n) < 0.5),
            registered_on=pl.Series([None] * n, dtype=pl.Date),
        ).with_columns(
            registered_on=pl.max_horizontal(pl.col("turns_60_on"), pl.lit(date(2015, 1, 1))).dt.offset_by(
                pl.format("{}d", pl.Series(rng.integers(0, 90, size=n)).cast(pl.String))
            )
        )

    def on_day(self, day: date) -> None:
        if self.is_month_delivery(day):
            self._registry(day)
        self._hotline(day)

    def _registry(self, day: date) -> None:
        moved = (
            pl.col("moved_on").is_not_null() & (pl.col("moved_on") <= day) & pl.col("registry_updates_move")
        )
        p = self.people.filter(elder_on(day) & (pl.col("registered_on") <= day)).with_columns(
            street=pl.when(moved).then(pl.col("new_street_code")).otherwise(pl.col("street_code")),
            committee=pl.when(moved).then(pl.col("new_committee")).otherwise(pl.col("committee")),
            residence_address=pl.when(moved).then(pl.col("new_address")).otherwise(pl.col("address")),
            phone=pl.coalesce("mobile", "landline"),
            emergency_contact=pl.col("family_name"),
            emergency_phone=pl.col("family_phone"),
            export_month=pl.lit(f"{day:%Y-%m}"),
            _person_id=pl.col("person_id"),
        )
        for st in yangpu.STREETS:
            rows = p.filter(pl.col("street") == st.code).sort("committee", "person_id")
            rng = self.rng("registry", day.isoformat(), st.code)
            u = rng.random(rows.height)
            plain = [REMARKS[int(k)] or None for k in rng.integers(0, len(REMARKS), size=rows.height)]
            with_pii = np.nonzero(u < 0.03)[0].tolist()
            texts, spans = make_notes(rng, note_people(rows[with_pii], day), "remarks", pii_rate=1.0)
            remarks = [r if u[i] < 0.3 else None for i, r in enumerate(plain)]
            for k, i in enumerate(with_pii):
                remarks[i] = texts[k]
            spans.rows[:] = [with_pii[r] for r in spans.rows]
            frame = rows.with_columns(
                seq_no=pl.int_range(1, pl.len() + 1), remarks=pl.Series(remarks, dtype=pl.String)
            )
            deliver(
                self.ctx,
                self.table("district_registry"),
                frame,
                day,
                street_label=st.short,
                title=f"杨浦区{st.name}老年人信息登记表（{day:%Y年%m月}）",
                notes=[spans],
            )

    def _hotline(self, day: date) -> None:
        rng = self.rng("hotline", day.isoformat())
        alive = self.people.filter(elder_on(day))
        n = int(rng.poisson(max(1.0, alive.height * 0.0006)))
        pick = np.sort(rng.choice(alive.height, size=min(n, alive.height), replace=False))
        calls = alive[pick]
        m = calls.height
        by_self = rng.random(m) < 0.4
        cats = rng.choice(
            ["CONSULT", "SERVICE", "COMPLAINT", "EMERGENCY", "OTHER"], size=m, p=[0.4, 0.3, 0.1, 0.05, 0.15]
        )
        minute = np.sort(rng.integers(8 * 60, 20 * 60, size=m))
        base = datetime.combine(day, datetime.min.time())
        texts, spans = make_notes(rng, note_people(calls, day), "request_text", pii_rate=0.5)
        status = rng.choice(["OPEN", "IN_PROGRESS", "CLOSED"], size=m, p=[0.1, 0.2, 0.7])
        frame = calls.with_columns(
            work_order_id=pl.format(
                "RX{}{}", pl.lit(f"{day:%Y%m%d}"), pl.int_range(1, pl.len() + 1).cast(pl.String).str.zfill(4)
            ),
            call_time=pl.Series([base + timedelta(minutes=int(x)) for x in minute], dtype=pl.Datetime("us")),
            caller_name=pl.when(pl.Series(by_self)).then(pl.col("name")).otherwise(pl.col("family_name")),
            caller_phone=pl.when(pl.Series(by_self))
            .then(pl.coalesce("mobile", "landline"))
            .otherwise(pl.col("family_phone")),
            id_number=pl.Series(
                [i if rng.random() < 0.5 else None for i in calls["id_number"]], dtype=pl.String
            ),
            street=current_street(day),
            category=pl.Series(cats, dtype=pl.String),
            request_text=pl.Series(texts, dtype=pl.String),
            status=pl.Series(status, dtype=pl.String),
            closed_at=pl.Series(
                [
                    base + timedelta(minutes=int(x) + 240) if s == "CLOSED" else None
                    for x, s in zip(minute, status, strict=True)
                ],
                dtype=pl.Datetime("us"),
            ),
            _person_id=pl.col("person_id"),
        )
        deliver(self.ctx, self.table("district_hotline"), frame, day, notes=[spans])


__all__ = ["DistrictPlatform", "MunicipalPlatform", "current_committee", "note_people"]

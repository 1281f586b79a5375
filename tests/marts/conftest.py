"""A small hand-made library (12 elders, Oct-Nov 2026) for the portrait and KPI tests.

Every elder is chosen to exercise one rule; the expected values are worked out by
hand in the tests (as-of date 2026-11-28, the latest service date):

E01 82 定海路 alone, water meter, meal only 40+ days ago, screened normal in June
E02 86 定海路 alone, no device, 4 meals in 30 days              -> ALONE_80_UNMONITORED
E03 88 定海路 with spouse, wristband silent since 11-10, BP 150 -> ASSISTED, WRISTBAND_SILENT
E04 75 定海路 level 5, 8 LTCI visits in 4 weeks                 -> CARE, LTCI_UNDERSERVED
E05 70 平凉路 level 3, 12 LTCI visits in 4 weeks, wristband, low steps -> ASSISTED
E06 68 平凉路 AD8 positive on 10-01, never re-screened          -> SCREEN_POSITIVE_NO_RESCREEN
E07 72 平凉路 alone, AD8 positive then MoCA re-screen, water meter -> ASSISTED
E08 64 平凉路 level 4 expired 09-30, one LTCI visit in October  -> CARE, CARE_LEVEL_EXPIRED
E09 91 平凉路 in an institution, wristband dropped from the list -> CARE
E10 81 定海路 alone, wristband, SpO2 88 on 11-25, meals        -> VITAL, LOW_SPO2_7D
E11 84 定海路 alone, died 10-15, still served a meal on 11-05   -> no segment, no tags
E12 66 no street / living arrangement, on no registry          -> core incomplete
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import pytest

from rainbow.parquet import parquet_from, register_sources, write_frame
from rainbow.settings import Lake
from rainbow.warehouse import connect_warehouse
from schemas import load_registry

A = "310110001000"  # 定海路街道
B = "310110006000"  # 平凉路街道
AS_OF = date(2026, 11, 28)
TEST_KEY = bytes(range(32))

_TYPES: dict[str, Any] = {
    "string": pl.String,
    "integer": pl.Int64,
    "decimal": pl.Float64,
    "date": pl.Date,
    "timestamp": pl.Datetime("us"),
    "boolean": pl.Boolean,
}
LINEAGE = {"_source_file": pl.String, "_row_number": pl.Int64, "_delivery_date": pl.Date}


def d(text: str) -> date:
    return date.fromisoformat(text)


def _elder(
    key: str,
    sex: str,
    birth: str,
    age: int,
    band: str,
    street: str | None,
    living: str | None,
    *,
    status: str = "ACTIVE",
    death: str | None = None,
    level: str | None = None,
    assessed: str | None = None,
    valid: str | None = None,
    registered: bool = True,
) -> dict[str, Any]:
    n = int(key[1:])
    return {
        "elder_key": key,
        "name": f"测试老人{n}",
        "sex": sex,
        "birth_date": d(birth),
        "age": age,
        "age_band": band,
        "id_number": f"310110{birth.replace('-', '')}{n:03d}X",
        "phone": f"13800000{n:03d}",
        "residence_address": f"杨浦区控江路{n}弄{n}号{n}01室",
        "street": street,
        "committee": "测试居委会" if street else None,
        "hukou_type": "LOCAL",
        "living_arrangement": living,
        "status": status,
        "death_date": d(death) if death else None,
        "care_level": level,
        "care_level_assessed_on": d(assessed) if assessed else None,
        "care_level_valid_until": d(valid) if valid else None,
        "in_municipal_registry": registered,
        "in_district_registry": registered,
        "source_tables": 2,
        "records": 3,
    }


ELDERS = [
    _elder("E01", "2", "1944-03-10", 82, "80-84", A, "ALONE"),
    _elder("E02", "1", "1940-07-01", 86, "85-89", A, "ALONE"),
    _elder("E03", "2", "1938-02-14", 88, "85-89", A, "SPOUSE"),
    _elder(
        "E04",
        "1",
        "1951-05-05",
        75,
        "75-79",
        A,
        "FAMILY",
        level="5",
        assessed="2025-12-01",
        valid="2027-11-30",
    ),
    _elder(
        "E05",
        "2",
        "1956-01-20",
        70,
        "70-74",
        B,
        "SPOUSE",
        level="3",
        assessed="2026-03-01",
        valid="2028-02-29",
    ),
    _elder("E06", "1", "1958-09-09", 68, "65-69", B, "FAMILY"),
    _elder("E07", "2", "1954-04-04", 72, "70-74", B, "ALONE"),
    _elder(
        "E08",
        "1",
        "1962-08-08",
        64,
        "60-64",
        B,
        "FAMILY",
        level="4",
        assessed="2024-10-01",
        valid="2026-09-30",
    ),
    _elder("E09", "2", "1935-01-01", 91, "90-94", B, "INSTITUTION"),
    _elder("E10", "1", "1945-10-10", 81, "80-84", A, "ALONE"),
    _elder("E11", "2", "1942-05-05", 84, "80-84", A, "ALONE", status="DECEASED", death="2026-10-15"),
    _elder("E12", "1", "1960-02-02", 66, "65-69", None, None, registered=False),
]

DEVICES = [
    # kind, id, elder, street, installed, last listed
    ("WRISTBAND", "W1", "E03", A, "2026-05-01", "2026-11-01"),
    ("WRISTBAND", "W2", "E10", A, "2026-10-15", "2026-11-01"),
    ("WRISTBAND", "W3", "E05", B, "2026-01-01", "2026-11-01"),
    ("WRISTBAND", "W4", "E09", B, "2025-01-01", "2026-09-01"),  # dropped from the lists
    ("WATER_METER", "M1", "E01", A, "2025-06-01", "2026-11-01"),
    ("WATER_METER", "M2", "E07", B, "2026-10-20", "2026-11-01"),
]

SCREENINGS = [
    # id, elder, date, instrument, score, result, suspected
    ("S1", "E01", "2026-06-01", "MMSE", 27, "NORMAL", False),
    ("S2", "E06", "2026-10-01", "AD8", 3, "SUSPECTED", True),
    ("S3", "E07", "2026-10-20", "AD8", 2, "SUSPECTED", True),
    ("S4", "E07", "2026-11-03", "MOCA", 20, "SUSPECTED", True),
    ("S5", "E04", "2025-11-15", "AD8", 0, "NORMAL", False),
    ("S6", "E12", "2026-11-20", "AD8", 0, "NORMAL", False),
    ("S7", "E11", "2026-09-01", "AD8", 1, "NORMAL", False),
]

ASSESSMENTS = [
    ("A1", "E04", "2025-12-01", "5", "2027-11-30"),
    ("A2", "E05", "2026-03-01", "3", "2028-02-29"),
    ("A3", "E08", "2024-10-01", "4", "2026-09-30"),
    ("A4", "E05", "2024-03-01", "2", "2026-02-28"),
]

FACILITIES = [
    # id, type, street, status, opened, closed, last listed
    ("F1", "MEAL_POINT", A, "OPEN", "2020-01-01", None, "2026-11-01"),
    ("F2", "MEAL_POINT", B, "OPEN", "2026-10-10", None, "2026-11-01"),
    ("F3", "MEAL_POINT", B, "CLOSED", "2019-01-01", "2026-10-15", "2026-10-01"),
    ("F4", "DAY_CARE", A, "OPEN", "2018-05-01", None, "2026-09-01"),
    ("F5", "DAY_CARE", B, "OPEN", "2026-11-01", None, "2026-11-01"),
    ("F6", "NURSING_HOME", B, "OPEN", "2010-01-01", None, "2026-11-01"),
]


def _dates(*days: str) -> list[str]:
    return list(days)


LTCI_E04_OCT = [f"2026-10-{x:02d}" for x in (3, 6, 9, 12, 15, 18, 21, 24, 27, 30)]
LTCI_E04_NOV = [f"2026-11-{x:02d}" for x in (1, 4, 8, 11, 15, 18, 22, 25)]
LTCI_E05_OCT = [f"2026-10-{x:02d}" for x in (2, 5, 7, 9, 12, 14, 16, 19, 21, 23, 26, 28, 30)]
LTCI_E05_NOV = [f"2026-11-{x:02d}" for x in (2, 4, 6, 9, 11, 13, 16, 18, 20, 23, 25, 27)]

# (elder, programme, date, street, record_id)
SERVICE_EVENTS: list[tuple[str | None, str, str, str | None, str | None]] = [
    ("E01", "MEAL_AID", "2026-10-10", A, None),
    ("E02", "MEAL_AID", "2026-11-02", A, None),
    ("E02", "MEAL_AID", "2026-11-15", A, None),
    ("E02", "MEAL_AID", "2026-11-28", A, None),
    ("E10", "MEAL_AID", "2026-11-20", A, None),
    ("E11", "MEAL_AID", "2026-11-05", A, None),
    ("E12", "MEAL_AID", "2026-11-20", None, None),
    (None, "MEAL_AID", "2026-11-20", None, None),
    ("E05", "MEAL_AID", "2026-10-05", B, None),
    ("E05", "MEAL_AID", "2026-10-05", B, None),
    ("E02", "MEAL_AID", "2026-10-30", A, None),
    ("E01", "LOVE_MILK", "2026-10-01", A, None),
    ("E02", "LOVE_MILK", "2026-10-01", A, None),
    ("E01", "LOVE_MILK", "2026-11-01", A, None),
    ("E09", "LOVE_MILK", "2026-11-01", B, None),
    ("E04", "DEVICE_RENTAL", "2026-10-05", A, "device_rentals:dr_20261005.csv:1"),
    ("E08", "DEVICE_RENTAL", "2026-10-12", B, "device_rentals:dr_20261012.csv:1"),
    ("E09", "DEVICE_RENTAL", "2026-11-15", B, "device_rentals:dr_20261115.csv:1"),
    ("E04", "FAMILY_CARE_BED", "2026-11-12", A, None),
    ("E07", "TIME_BANK", "2026-11-06", B, None),
    ("E08", "LTCI_HOME_CARE", "2026-10-02", B, None),
    *[("E04", "LTCI_HOME_CARE", x, A, None) for x in LTCI_E04_OCT + LTCI_E04_NOV],
    *[("E05", "LTCI_HOME_CARE", x, B, None) for x in LTCI_E05_OCT + LTCI_E05_NOV],
]


def _vitals(device: str, elder: str, days: list[date], **kw: Any) -> list[dict[str, Any]]:
    return [
        {"device_id": device, "elder_key": elder, "measure_date": day, "readings": 100, **kw} for day in days
    ]


def _span(first: str, last: str) -> list[date]:
    a, b = d(first), d(last)
    return [a + timedelta(days=i) for i in range((b - a).days + 1)]


VITALS = [
    *_vitals(
        "W1",
        "E03",
        _span("2026-11-01", "2026-11-10"),
        heart_rate_mean=72.0,
        spo2_min=95,
        systolic_mean=150.0,
        diastolic_mean=85.0,
        steps_max=3000,
    ),
    *_vitals(
        "W2",
        "E10",
        [x for x in _span("2026-11-15", "2026-11-28") if x != d("2026-11-25")],
        heart_rate_mean=80.0,
        spo2_min=96,
        systolic_mean=125.0,
        diastolic_mean=78.0,
        steps_max=1500,
    ),
    *_vitals(
        "W2",
        "E10",
        [d("2026-11-25")],
        heart_rate_mean=80.0,
        spo2_min=88,
        systolic_mean=125.0,
        diastolic_mean=78.0,
        steps_max=1500,
    ),
    *_vitals(
        "W3",
        "E05",
        _span("2026-11-20", "2026-11-28"),
        heart_rate_mean=70.0,
        spo2_min=97,
        systolic_mean=130.0,
        diastolic_mean=80.0,
        steps_max=500,
    ),
]

ISSUES = [
    ("I1", "DECEASED_SERVED", "E11", A),
    ("I2", "ONLY_DISTRICT", "E06", B),
    ("I3", "NOT_REGISTERED_SERVED", "E12", None),
]

CARE_BED_CONTRACTS = [
    # contract, street, status, signed, ends, delivery
    ("C1", A, "ACTIVE", "2026-03-01", "2027-02-28", "2026-10-01"),
    ("C2", B, "ACTIVE", "2026-09-15", "2027-09-14", "2026-10-01"),
    ("C1", A, "ACTIVE", "2026-03-01", "2027-02-28", "2026-11-01"),
    ("C2", B, "ACTIVE", "2026-09-15", "2027-09-14", "2026-11-01"),
    ("C3", A, "ACTIVE", "2026-10-20", "2027-10-19", "2026-11-01"),
    ("C4", B, "ENDED", "2025-01-01", "2026-10-31", "2026-11-01"),
]

DEVICE_RENTALS = [
    ("DR1", "dr_20261005.csv", 1, "2026-10-05"),
    ("DR2", "dr_20261012.csv", 1, "2026-10-12"),
    ("DR3", "dr_20261115.csv", 1, "2026-11-15"),
]
DEVICE_RETURNS = [("DR2", "2026-11-10")]

TIMEBANK = [
    # id, type, hours, date, street
    ("T1", "EARN", 2.0, "2026-10-10", A),
    ("T2", "EARN", 1.5, "2026-11-06", B),
    ("T3", "SPEND", 1.5, "2026-11-06", B),
    ("T4", "EARN", 3.0, "2026-11-20", A),
    ("T5", "EARN", 0.5, "2026-11-21", None),
]


def _frame(columns: dict[str, Any], rows: list[dict[str, Any]]) -> pl.DataFrame:
    data = [{c: r.get(c) for c in columns} for r in rows]
    return pl.DataFrame(data, schema=columns, orient="row") if data else pl.DataFrame(schema=columns)


def library_columns(table: str) -> dict[str, Any]:
    return {c.name: _TYPES[c.type] for c in load_registry().derived(table).columns}


def staged_columns(table: str) -> dict[str, Any]:
    return {**{c.name: _TYPES[c.type] for c in load_registry().table(table).columns}, **LINEAGE}


def library_frames() -> dict[str, pl.DataFrame]:
    svc = [
        {
            "service_event_id": f"SE{i:04d}",
            "elder_key": e,
            "programme": p,
            "service_date": d(day),
            "street": st,
            "source_table": "test",
            "record_id": rid or f"test:svc.csv:{i}",
        }
        for i, (e, p, day, st, rid) in enumerate(SERVICE_EVENTS, 1)
    ]
    return {
        "dim_elder": _frame(library_columns("dim_elder"), ELDERS),
        "elder_devices": _frame(
            library_columns("elder_devices"),
            [
                {
                    "device_kind": k,
                    "device_id": i,
                    "elder_key": e,
                    "street": s,
                    "installed_on": d(a),
                    "last_listed": d(b),
                    "lives_alone": k == "WATER_METER",
                }
                for k, i, e, s, a, b in DEVICES
            ],
        ),
        "fact_screening": _frame(
            library_columns("fact_screening"),
            [
                {
                    "screening_id": i,
                    "elder_key": e,
                    "screening_date": d(x),
                    "instrument": ins,
                    "score": sc,
                    "result": res,
                    "suspected_impairment": sus,
                    "record_id": f"screenings:s.csv:{i}",
                }
                for i, e, x, ins, sc, res, sus in SCREENINGS
            ],
        ),
        "fact_assessment": _frame(
            library_columns("fact_assessment"),
            [
                {
                    "assessment_id": i,
                    "elder_key": e,
                    "assessment_date": d(x),
                    "care_level": lv,
                    "valid_until": d(v),
                    "record_id": f"muni_assessments:a.json:{i}",
                }
                for i, e, x, lv, v in ASSESSMENTS
            ],
        ),
        "fact_service_event": _frame(library_columns("fact_service_event"), svc),
        "fact_vitals_daily": _frame(library_columns("fact_vitals_daily"), VITALS),
        "dim_facility": _frame(
            library_columns("dim_facility"),
            [
                {
                    "facility_id": i,
                    "facility_name": f"设施{i}",
                    "facility_type": t,
                    "street": s,
                    "status": st,
                    "opened_on": d(o),
                    "closed_on": d(c) if c else None,
                    "last_listed": d(ll),
                    "days_since_listed": (AS_OF - d(ll)).days,
                }
                for i, t, s, st, o, c, ll in FACILITIES
            ],
        ),
        "reconciliation_issues": _frame(
            library_columns("reconciliation_issues"),
            [{"issue_id": i, "issue_type": t, "elder_key": e, "street": s} for i, t, e, s in ISSUES],
        ),
    }


def staged_frames() -> dict[str, pl.DataFrame]:
    return {
        "care_bed_contracts": _frame(
            staged_columns("care_bed_contracts"),
            [
                {
                    "contract_id": c,
                    "name": "测试老人",
                    "street": s,
                    "status": st,
                    "signed_on": d(a),
                    "ends_on": d(b),
                    "_source_file": f"beds_{dl}.xlsx",
                    "_row_number": n,
                    "_delivery_date": d(dl),
                }
                for n, (c, s, st, a, b, dl) in enumerate(CARE_BED_CONTRACTS, 1)
            ],
        ),
        "device_rentals": _frame(
            staged_columns("device_rentals"),
            [
                {
                    "contract_id": c,
                    "name": "测试老人",
                    "start_date": d(x),
                    "_source_file": f,
                    "_row_number": r,
                    "_delivery_date": d(x),
                }
                for c, f, r, x in DEVICE_RENTALS
            ],
        ),
        "device_returns": _frame(
            staged_columns("device_returns"),
            [
                {
                    "contract_id": c,
                    "return_date": d(x),
                    "_source_file": "ret.csv",
                    "_row_number": 1,
                    "_delivery_date": d(x),
                }
                for c, x in DEVICE_RETURNS
            ],
        ),
        "timebank_transactions": _frame(
            staged_columns("timebank_transactions"),
            [
                {
                    "transaction_id": i,
                    "txn_type": t,
                    "hours": h,
                    "txn_date": d(x),
                    "street": s,
                    "_source_file": "tb.csv",
                    "_row_number": n,
                    "_delivery_date": d(x),
                }
                for n, (i, t, h, x, s) in enumerate(TIMEBANK, 1)
            ],
        ),
    }


@dataclass
class Fixture:
    lake: Lake
    con: duckdb.DuckDBPyConnection

    def write(self, zone: str, table: str, frame: pl.DataFrame) -> None:
        """(Re)write a table's Parquet and its ``<zone>.<table>`` view."""
        path = self.lake.root / zone / table / "data.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        write_frame(frame, path, self.lake)  # encrypted: library and staged are restricted zones
        view = f"CREATE OR REPLACE VIEW {zone}.{table} AS SELECT * FROM {parquet_from(path)}"
        register_sources(self.con, self.lake, view)
        self.con.execute(f"CREATE SCHEMA IF NOT EXISTS {zone}")
        self.con.execute(view)


@pytest.fixture()
def mart_lake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Fixture]:
    """The hand-made library and staged tables as Parquet + views in the lake's warehouse."""
    monkeypatch.setenv("RAINBOW_PSEUDONYM_KEY", TEST_KEY.hex())
    lake = Lake(tmp_path / "lake")
    lake.root.mkdir(parents=True)
    con = connect_warehouse(lake)
    fx = Fixture(lake, con)
    for name, frame in library_frames().items():
        fx.write("library", name, frame)
    for name, frame in staged_frames().items():
        fx.write("staged", name, frame)
    yield fx
    con.close()


def at(hour: int = 0) -> datetime:
    return datetime(2026, 11, 29, hour)

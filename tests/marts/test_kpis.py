"""KPI values on the hand-made library: golden values, the no-data rule, targets and history."""

from __future__ import annotations

from datetime import UTC, date, datetime

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from assets.marts.kpis import (
    DISTRICT_CODE,
    NO_DATA_TEXT,
    build_kpis,
    display_value,
    month_file,
    months_to_compute,
    read_kpi_history,
)
from assets.marts.portraits import build_portraits
from schemas import load_registry
from schemas.kpi import Kpi, load_kpis
from tests.lakefiles import read_parquet
from tests.marts.conftest import AS_OF, Fixture, library_columns

A, B, D = "310110001000", "310110006000", DISTRICT_CODE
OCT, NOV = date(2026, 10, 1), date(2026, 11, 1)
RUN = datetime(2026, 11, 29, 2, 0, tzinfo=UTC)
ND = None  # no data

# Hand-computed (see conftest's story of each elder). Per KPI: {month: (district, 定海路 A, 平凉路 B)}.
GOLDEN: dict[str, dict[date, tuple[float | None, float | None, float | None]]] = {
    # 80+ living with a wristband in use: E03, E10 (both A); E09's W4 left the lists on 09-01
    "wristband_high_age_elders": {OCT: (2, 2, ND), NOV: (2, 2, ND)},
    # 80+ alone registered & living: E01 (meter), E02 (none), E10 (wristband) -> 2/3
    "alone_high_age_monitored_share": {OCT: (200 / 3, 200 / 3, ND), NOV: (200 / 3, 200 / 3, ND)},
    # 10 registered living elders (E11 died 10-15, E12 on no registry), 5 per street;
    # Oct 31: E01 (06-01), E04 (2025-11-15), E06, E07 screened; Nov 28: E04's falls out
    "cognitive_screening_coverage": {OCT: (40, 40, 40), NOV: (30, 20, 40)},
    # Oct 1 list: C1 (A), C2 (B); Nov 1 list: + C3 (A), C4 ended
    "family_care_beds_active": {OCT: (2, 1, 1), NOV: (3, 2, 1)},
    # current month only; operating: F1 F2 F4 F5 F6 (F3 closed), F4 listed 09-01 is stale
    "facility_data_freshness": {OCT: (ND, ND, ND), NOV: (80, 50, 100)},
    # current month only; 11 living portraits, E12 lacks street and living arrangement
    "portrait_completeness": {OCT: (ND, ND, ND), NOV: (1000 / 11, 100, 100)},
    # F1 (A), F2 (B, opened 10-10); F3 closed 10-15
    "meal_aid_sites": {OCT: (2, 1, 1), NOV: (2, 1, 1)},
    # Oct: 4 meals over 3 serving days (10-05, 10-10, 10-30); Nov: 7 meals over 5 days
    "meal_aid_meals_per_day": {OCT: (4 / 3, 2 / 3, 2 / 3), NOV: (7 / 5, 5 / 5, ND)},
    # Oct (10-01..10-31]: E01, E02, E05; Nov (10-29..11-28]: E02, E10, E11 (A), E12 (no street)
    "meal_aid_users_30d": {OCT: (3, 2, 1), NOV: (4, 3, ND)},
    # F4 (A); F5 (B) opened 11-01
    "day_care_centres": {OCT: (1, 1, ND), NOV: (2, 1, 1)},
    # Oct: E04, E05, E08 (expired level, still visited); Nov: E04, E05
    "ltci_home_care_elders": {OCT: (3, 1, 2), NOV: (2, 1, 1)},
    # Oct (31 days): E04 level 5 -> 31 entitled, 10 delivered; E05 level 3 -> 31*3/7, 13;
    # Nov (28 days to the as-of date): E04 28 / 8, E05 12 / 12; E08 has no valid level
    "ltci_visit_fulfilment": {
        OCT: (100 * 23 / (31 + 93 / 7), 100 * 10 / 31, 100 * 13 / (93 / 7)),
        NOV: (50, 100 * 8 / 28, 100),
    },
    "love_milk_deliveries": {OCT: (2, 2, ND), NOV: (2, 1, 1)},
    # DR1 (A) and DR2 (B) in Oct; DR2 returned 11-10, DR3 (B) from 11-15
    "device_rentals_active": {OCT: (2, 1, 1), NOV: (2, 1, 1)},
    # EARN only: Oct T1; Nov T2 (B) + T4 (A) + T5 (no street)
    "timebank_volunteer_hours": {OCT: (2, 2, ND), NOV: (5, 3, 1.5)},
    # current month only: I1 (A), I2 (B), I3 (no street); other streets 0 (a measured zero)
    "reconciliation_open_issues": {OCT: (ND, ND, ND), NOV: (3, 1, 1)},
    "elders_registered": {OCT: (10, 5, 5), NOV: (10, 5, 5)},
}

STATUS: dict[tuple[str, date], tuple[str, str, str]] = {
    ("wristband_high_age_elders", NOV): ("NOT_MET", "NO_TARGET", "NO_DATA"),  # 1,000 district-wide only
    ("cognitive_screening_coverage", NOV): ("NOT_MET", "NOT_MET", "NOT_MET"),
    ("family_care_beds_active", OCT): ("NO_BASELINE", "NO_BASELINE", "NO_BASELINE"),
    ("family_care_beds_active", NOV): ("MET", "MET", "NOT_MET"),  # B stayed at 1: not growing
    ("facility_data_freshness", NOV): ("NOT_MET", "NOT_MET", "MET"),
    ("ltci_visit_fulfilment", OCT): ("NOT_MET", "NOT_MET", "MET"),
    ("reconciliation_open_issues", NOV): ("NOT_MET", "NOT_MET", "NOT_MET"),
    ("meal_aid_sites", NOV): ("NO_TARGET", "NO_TARGET", "NO_TARGET"),
    ("portrait_completeness", OCT): ("NO_DATA", "NO_DATA", "NO_DATA"),
}


def _build(fx: Fixture, **kw: object) -> dict[str, object]:
    build_portraits(fx.lake, fx.con, scenarios=[])
    return build_kpis(fx.lake, fx.con, computed_at=RUN, **kw)  # type: ignore[arg-type]


def _cell(table: pl.DataFrame, kpi: str, area: str, month: date) -> dict[str, object]:
    rows = table.filter(
        (pl.col("kpi_id") == kpi) & (pl.col("area_code") == area) & (pl.col("month") == month)
    ).to_dicts()
    assert len(rows) == 1, (kpi, area, month)
    return rows[0]


def test_kpis_match_hand_computed_values(mart_lake: Fixture) -> None:
    stats = _build(mart_lake)
    assert stats["errors"] == {}
    assert stats["as_of"] == AS_OF.isoformat()
    assert stats["months"] == ["2026-10", "2026-11"]
    table = read_kpi_history(mart_lake.lake)
    assert set(table["kpi_id"]) == {k.id for k in load_kpis()}
    assert set(GOLDEN) == {k.id for k in load_kpis()}
    # every KPI x 13 areas x 2 months, nothing more
    assert table.height == len(GOLDEN) * 13 * 2
    for kpi, months in GOLDEN.items():
        for month, expected in months.items():
            for area, want in zip((D, A, B), expected, strict=True):
                got = _cell(table, kpi, area, month)["value"]
                if want is None:
                    assert got is None, (kpi, area, month, got)
                else:
                    assert got == pytest.approx(want), (kpi, area, month)
    for (kpi, month), statuses in STATUS.items():
        got = tuple(_cell(table, kpi, area, month)["status"] for area in (D, A, B))
        assert got == statuses, (kpi, month)


def test_other_streets_show_no_data_never_zero(mart_lake: Fixture) -> None:
    _build(mart_lake)
    table = read_kpi_history(mart_lake.lake)
    others = table.filter(~pl.col("area_code").is_in([D, A, B]))
    measured_zero = others.filter(
        (pl.col("kpi_id") == "reconciliation_open_issues") & (pl.col("month") == NOV)
    )
    # the issue list is rebuilt whole each run: a street without issues has 0, and meets the target 0
    assert measured_zero["value"].to_list() == [0.0] * 10
    assert set(measured_zero["status"]) == {"MET"}
    rest = others.join(measured_zero, on=["kpi_id", "area_code", "month"], how="anti")
    assert rest["value"].null_count() == rest.height
    assert set(rest["status"]) == {"NO_DATA"}
    assert set(rest["value_text"]) == {NO_DATA_TEXT}
    assert set(rest["status_zh"]) == {"暂无数据"}
    # no KPI anywhere shows 0 except that measured one
    zeros = table.filter(pl.col("value") == 0)
    assert set(zeros["kpi_id"]) == {"reconciliation_open_issues"}


def test_when_source_is_empty_then_no_data_not_zero_percent(mart_lake: Fixture) -> None:
    empty = pl.DataFrame(schema=library_columns("fact_screening"))
    mart_lake.write("library", "fact_screening", empty)
    _build(mart_lake)
    cov = read_kpi_history(mart_lake.lake).filter(pl.col("kpi_id") == "cognitive_screening_coverage")
    assert cov["value"].null_count() == cov.height  # not 0% of 10 elders
    assert set(cov["status"]) == {"NO_DATA"}
    assert set(cov["value_text"]) == {"暂无数据"}


def test_display_value() -> None:
    assert display_value(None, "人") == "暂无数据"
    assert display_value(None, "%") == "暂无数据"
    assert display_value(0.0, "条") == "0条"
    assert display_value(200 / 3, "%") == "66.7%"
    assert display_value(1.5, "小时") == "1.5小时"
    assert display_value(1000.0, "人") == "1000人"


def test_rerun_replaces_only_its_month_and_keeps_history(mart_lake: Fixture) -> None:
    lake = mart_lake.lake
    _build(mart_lake)
    oct_bytes = month_file(lake, OCT).read_bytes()
    nov_first = read_parquet(month_file(lake, NOV))
    # same data, same run time: a rerun rewrites November identically and leaves October alone
    stats = _build(mart_lake)
    assert stats["months"] == ["2026-11"]
    assert month_file(lake, OCT).read_bytes() == oct_bytes
    assert_frame_equal(read_parquet(month_file(lake, NOV)), nov_first)
    # a new family care bed contract in the November list: November changes, October stays
    contracts = read_parquet(lake.root / "staged" / "care_bed_contracts" / "data.parquet")
    extra = (
        contracts.filter(pl.col("contract_id") == "C2")
        .tail(1)
        .with_columns(pl.lit("C5").alias("contract_id"), pl.lit(date(2026, 11, 1)).alias("_delivery_date"))
    )
    mart_lake.write("staged", "care_bed_contracts", pl.concat([contracts, extra]))
    _build(mart_lake)
    assert month_file(lake, OCT).read_bytes() == oct_bytes
    table = read_kpi_history(lake)
    b_nov = _cell(table, "family_care_beds_active", B, NOV)
    assert (b_nov["value"], b_nov["target"], b_nov["status"]) == (2.0, 1.0, "MET")  # target from October
    assert table.height == len(GOLDEN) * 13 * 2
    # the growth target of a month computed alone comes from the history file of the month before
    build_kpis(lake, mart_lake.con, computed_at=RUN, months=[NOV])
    assert _cell(read_kpi_history(lake), "family_care_beds_active", D, NOV)["target"] == 2.0
    # the view over the history
    n = mart_lake.con.sql("SELECT count(*) FROM marts.kpi_values").fetchall()[0][0]
    assert n == table.height


def test_month_recorded_before_its_end_is_recomputed(mart_lake: Fixture) -> None:
    lake = mart_lake.lake
    build_portraits(lake, mart_lake.con, scenarios=[])
    # a run on 10-20 recorded October early
    build_kpis(lake, mart_lake.con, computed_at=RUN, as_of=date(2026, 10, 20))
    assert months_to_compute(lake, OCT, AS_OF) == [OCT, NOV]
    early = _cell(read_kpi_history(lake), "meal_aid_users_30d", D, OCT)
    assert early["period_end"] == date(2026, 10, 20)
    build_kpis(lake, mart_lake.con, computed_at=RUN)
    final = _cell(read_kpi_history(lake), "meal_aid_users_30d", D, OCT)
    assert (final["period_end"], final["value"]) == (date(2026, 10, 31), 3.0)
    assert months_to_compute(lake, OCT, AS_OF) == [NOV]


def test_a_broken_formula_is_no_data_and_reported(mart_lake: Fixture) -> None:
    good = load_kpis()[0]
    broken = Kpi.model_validate(
        {
            **good.model_dump(),
            "id": "broken",
            "formula": good.formula.replace("library.elder_devices", "library.no_such_table"),
        }
    )
    stats = build_kpis(mart_lake.lake, mart_lake.con, computed_at=RUN, kpis=[good, broken])
    assert set(stats["errors"]) == {"broken"}
    table = read_kpi_history(mart_lake.lake)
    assert set(table.filter(pl.col("kpi_id") == "broken")["status"]) == {"NO_DATA"}
    assert _cell(table, good.id, D, NOV)["value"] == 2.0


def test_kpi_values_match_their_contract(mart_lake: Fixture) -> None:
    _build(mart_lake)
    table = read_parquet(month_file(mart_lake.lake, NOV))
    contract = load_registry().derived("kpi_values")
    assert table.columns == contract.column_names
    for c in contract.columns:
        if not c.nullable:
            assert table[c.name].null_count() == 0, c.name
    assert table.select(contract.primary_key).is_duplicated().sum() == 0

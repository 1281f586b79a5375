"""Small cells of leadership's views cannot be recomputed from published totals.

Leadership sees a street's total elders (the KPI 在册老年人数, and every elder aggregate of
the street adds up to the same number) and each KPI's district value beside its streets'.
With only the cells under k suppressed, a line (row or column) with one suppressed cell
gives it back: total minus the published cells. These tests plant such tables, show the
total is there and the attack works on primary suppression alone, and check that the
views leave no line with a lone suppressed cell - while cells nothing forces away stay.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from datetime import date
from typing import Any

import duckdb
import polars as pl
import pytest

from masking.policy import load_policy
from masking.release import Measure, aggregate_cells
from masking.role_views import ViewPlan, plan_role_views
from schemas import load_registry
from tests.access.access_fixtures import frame

REG = load_registry()
POLICY = load_policy()
K = POLICY.settings.k
A, B, C = "310110001000", "310110006000", "310110012000"
NOV, OCT = date(2026, 11, 1), date(2026, 10, 1)
PLANTED = {
    ("library", "dim_elder"): "planted_elders",
    ("library", "fact_service_event"): "planted_events",
    ("marts", "kpi_values"): "planted_kpis",
}


def _views(
    con: duckdb.DuckDBPyConnection, tables: dict[tuple[str, str], list[dict[str, Any]]]
) -> dict[str, ViewPlan]:
    """Leadership's views over the planted tables (registered on ``con``)."""
    for (zone, name), rows in tables.items():
        con.register(PLANTED[(zone, name)], frame(list(REG.derived(name).columns), rows))
    plans = plan_role_views(POLICY, REG, "leadership", refs=PLANTED)
    return {p.name: p for p in plans}


def _run(con: duckdb.DuckDBPyConnection, plan: ViewPlan) -> pl.DataFrame:
    return con.sql(plan.sql).pl()


def _elders(cells: dict[tuple[str, str], int]) -> list[dict[str, Any]]:
    """``count`` active elders per (street, age band); all living with a spouse."""
    rows, n = [], 0
    for (street, band), count in cells.items():
        for _ in range(count):
            n += 1
            rows.append(
                {
                    "elder_key": f"E{n:08d}",
                    "street": street,
                    "age_band": band,
                    "status": "ACTIVE",
                    "living_arrangement": "SPOUSE",
                    "care_level": "0",
                }
            )
    return rows


def _recovered(
    cells: Iterable[tuple[Any, Any, int | None]], totals: dict[Any, int], line_of: int
) -> dict[tuple[Any, Any], int]:
    """The attack: each line (cells sharing element ``line_of`` of their key) with a known
    total and exactly one NULL cell gives that cell back as total minus the published cells."""
    lines: dict[Any, list[tuple[tuple[Any, Any], int | None]]] = {}
    for a, b, value in cells:
        lines.setdefault((a, b)[line_of], []).append(((a, b), value))
    out = {}
    for line, members in lines.items():
        hidden = [key for key, v in members if v is None]
        if line in totals and len(hidden) == 1:
            out[hidden[0]] = totals[line] - sum(v for _, v in members if v is not None)
    return out


# A's 75-79 (2) is under k; A's 80-84 (6) and 70-74 (9) are not, and A's total (17) is published.
PLANT = {
    (A, "70-74"): 9,
    (A, "75-79"): 2,
    (A, "80-84"): 6,
    (B, "70-74"): 12,
    (B, "75-79"): 8,
    (B, "80-84"): 7,
    (C, "60-64"): 5,
}


def test_a_lone_suppressed_cell_is_recoverable_from_the_published_street_total_without_protection() -> None:
    con = duckdb.connect()
    views = _views(con, {("library", "dim_elder"): _elders(PLANT)})
    # the street totals are there: every elder of A lives with a spouse, so that view shows all 17
    living = _run(con, views["agg_elders_by_street_living_arrangement"])
    totals = {s: n for s, _, n in living.rows()}
    assert totals == {A: 17, B: 27, C: 5}
    # primary suppression alone (cells under k NULL) would give A x 75-79 back
    primary_only = [(s, band, n if n >= K else None) for (s, band), n in PLANT.items()]
    assert _recovered(primary_only, totals, line_of=0) == {(A, "75-79"): 2}


def test_leadership_view_leaves_no_line_with_a_lone_suppressed_cell() -> None:
    con = duckdb.connect()
    views = _views(con, {("library", "dim_elder"): _elders(PLANT)})
    bands = _run(con, views["agg_elders_by_street_age_band"])
    rows = bands.select("street", "age_band", "elders").rows()
    street_totals = {s: sum(n for (t, _), n in PLANT.items() if t == s) for s in (A, B, C)}
    band_totals = {b: sum(n for (_, c), n in PLANT.items() if c == b) for _, b in PLANT}
    # neither a street's total nor an age band's district total gives a suppressed cell back
    assert _recovered(rows, street_totals, line_of=0) == {}
    assert _recovered(rows, band_totals, line_of=1) == {}
    assert rows == [
        (A, "70-74", 9),  # A's line already has two suppressed cells: stays
        (A, "75-79", None),  # primary (2 < k)
        (A, "80-84", None),  # complementary: the smallest published cell of A's line
        (B, "70-74", 12),  # B's line has two suppressed cells after 75-79 and 80-84: stays
        (B, "75-79", None),  # complementary: 75-79's column had only A's cell suppressed
        (B, "80-84", None),  # complementary: 80-84's column had only A's (complementary) cell
        (C, "60-64", 5),  # exactly k, in lines with nothing suppressed: stays
    ]
    # a query filtering the view (a dashboard's one street) sees the same cells: the
    # suppression is the whole table's, not recomputed over the filtered rows
    con.execute(f"CREATE VIEW bands AS {views['agg_elders_by_street_age_band'].sql}")
    one_street = con.sql(f"SELECT street, age_band, elders FROM bands WHERE street = '{A}'").pl().rows()
    assert one_street == [r for r in rows if r[0] == A]


def test_cells_at_or_above_k_stay_when_nothing_needs_protecting() -> None:
    con = duckdb.connect()
    plant = {(A, "70-74"): 9, (A, "75-79"): 5, (B, "70-74"): 6, (B, "75-79"): 7}
    views = _views(con, {("library", "dim_elder"): _elders(plant)})
    rows = _run(con, views["agg_elders_by_street_age_band"]).rows()
    assert rows == [(s, b, n) for (s, b), n in plant.items()]
    # one lone small cell in a 1 x 1 line cannot be protected by its line; nothing else is taken
    con = duckdb.connect()
    views = _views(con, {("library", "dim_elder"): _elders({**plant, (C, "90-94"): 1})})
    rows = _run(con, views["agg_elders_by_street_age_band"]).rows()
    assert rows == [*((s, b, n) for (s, b), n in plant.items()), (C, "90-94", None)]


def _events(seed: int) -> list[dict[str, Any]]:
    """Meal aid / love milk events of random small numbers of elders per street and month."""
    rnd = random.Random(seed)
    rows: list[dict[str, Any]] = []
    n = 0
    for street in (A, B, C):
        for programme in ("MEAL_AID", "LOVE_MILK", "CARE_BED"):
            for month in (9, 10, 11):
                for _ in range(rnd.choice([0, 1, 2, 3, 4, 5, 6, 8, 12])):
                    n += 1
                    for day in range(rnd.randint(1, 3)):
                        rows.append(
                            {
                                "service_event_id": f"S{n}-{day}",
                                "elder_key": f"E{rnd.randint(1, 400):08d}",
                                "programme": programme,
                                "service_date": date(2026, month, 1 + 7 * day),
                                "subsidy": float(rnd.randint(1, 9)),
                                "street": street,
                            }
                        )
    return rows


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_view_suppresses_exactly_the_cells_the_export_rule_does(seed: int) -> None:
    """The view's SQL and masking.release.aggregate_cells (export packages) are one rule."""
    events = _events(seed)
    con = duckdb.connect()
    views = _views(con, {("library", "fact_service_event"): events})
    seen = _run(con, views["agg_services_by_street_programme_month"])
    planted = pl.DataFrame(events).with_columns(pl.col("service_date").dt.truncate("1mo").alias("month"))
    cells, report = aggregate_cells(
        planted,
        ["street", "programme", "month"],
        [Measure("elders", "persons"), Measure("events", "count"), Measure("subsidy", "sum", "subsidy")],
        K,
        person="elder_key",
    )
    assert report["primary_suppressed"] > 0 and report["complementary_suppressed"] > 0
    expected = cells.select("street", "programme", "month", "elders", "events", "subsidy")
    assert seen.rows() == expected.rows()
    for keep in (["programme", "month"], ["street", "month"], ["street", "programme"]):
        lone = seen.group_by(keep).agg(pl.col("elders").is_null().sum().alias("s"), pl.len().alias("n"))
        assert lone.filter((pl.col("s") == 1) & (pl.col("n") >= 2)).height == 0, keep


def _kpi(kpi_id: str, month: date, area: str, value: float | None, unit: str = "人") -> dict[str, Any]:
    district = area == "310110000000"
    return {
        "kpi_id": kpi_id,
        "level": "district" if district else "street",
        "area_code": area,
        "street": None if district else area,
        "month": month,
        "value": value,
        "value_text": "暂无数据" if value is None else f"{value:g}{'%' if unit == '%' else ''}",
        "unit": unit,
    }


def test_kpi_district_total_does_not_give_back_a_suppressed_street() -> None:
    district = "310110000000"
    rows = [
        # November: A (3) under k; the district (30) minus B and C would give it back
        _kpi("elders_registered", NOV, district, 30.0),
        _kpi("elders_registered", NOV, A, 3.0),
        _kpi("elders_registered", NOV, B, 12.0),
        _kpi("elders_registered", NOV, C, 15.0),
        # October: two streets under k already: nothing more to hide
        _kpi("elders_registered", OCT, district, 30.0),
        _kpi("elders_registered", OCT, A, 3.0),
        _kpi("elders_registered", OCT, B, 4.0),
        _kpi("elders_registered", OCT, C, 23.0),
        # no district row published: no total to subtract from
        _kpi("meal_aid_users_30d", NOV, A, 2.0),
        _kpi("meal_aid_users_30d", NOV, B, 9.0),
        # a share is not a count of persons
        _kpi("cognitive_screening_coverage", NOV, district, 40.0, "%"),
        _kpi("cognitive_screening_coverage", NOV, A, 2.5, "%"),
        _kpi("cognitive_screening_coverage", NOV, B, 9.0, "%"),
    ]
    con = duckdb.connect()
    views = _views(con, {("marts", "kpi_values"): rows})
    seen = _run(con, views["kpi_values"]).sort("kpi_id", "month", "area_code")
    got = {(r["kpi_id"], r["month"], r["area_code"]): (r["value"], r["value_text"]) for r in seen.to_dicts()}
    assert got == {
        ("cognitive_screening_coverage", NOV, A): (2.5, "2.5%"),
        ("cognitive_screening_coverage", NOV, B): (9.0, "9%"),
        ("cognitive_screening_coverage", NOV, district): (40.0, "40%"),
        ("elders_registered", OCT, A): (None, None),
        ("elders_registered", OCT, B): (None, None),
        ("elders_registered", OCT, C): (23.0, "23"),
        ("elders_registered", OCT, district): (30.0, "30"),
        ("elders_registered", NOV, A): (None, None),  # primary
        ("elders_registered", NOV, B): (None, None),  # complementary: the smallest other street
        ("elders_registered", NOV, C): (15.0, "15"),
        ("elders_registered", NOV, district): (30.0, "30"),
        ("meal_aid_users_30d", NOV, A): (None, None),
        ("meal_aid_users_30d", NOV, B): (9.0, "9"),
    }
    con.execute(f"CREATE VIEW kpis AS {views['kpi_values'].sql}")
    one_street = con.sql(f"SELECT kpi_id, month, value FROM kpis WHERE street = '{B}' AND unit = '人'").pl()
    assert sorted(one_street.rows()) == [
        ("elders_registered", OCT, None),
        ("elders_registered", NOV, None),
        ("meal_aid_users_30d", NOV, 9.0),
    ]
    # the attack: district value minus the published streets, where one street is hidden
    for (kpi, month, area), (value, _) in got.items():
        if area == district or kpi == "cognitive_screening_coverage":
            continue
        line = [v for (k2, m2, a2), (v, _) in got.items() if (k2, m2) == (kpi, month) and a2 != district]
        has_total = (kpi, month, district) in got
        assert not (has_total and value is None and line.count(None) == 1), (kpi, month, area)

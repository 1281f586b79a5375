"""Generalisation hierarchies, the k-anonymity search, risk metrics and cell suppression."""

from __future__ import annotations

from datetime import date, datetime

import polars as pl
import pytest

from masking.release import (
    STAR,
    Measure,
    QuasiIdentifier,
    ReleaseError,
    aggregate_cells,
    anonymise,
    classes_in,
    hierarchy_for,
    nice_width,
    risk_metrics,
)
from schemas import load_registry
from schemas.contract import Column
from tests.exports.export_helpers import least

REGISTRY = load_registry()
ELDER = REGISTRY.derived("dim_elder")
EVENTS = REGISTRY.derived("fact_service_event")


def test_age_ladder() -> None:
    h = hierarchy_for(ELDER.column("age"))
    ages = pl.Series("age", [59, 60, 64, 78, 83, 95, 101])
    assert h.generalise(ages, 0).to_list() == ages.to_list()
    assert h.generalise(ages, h.level("5y")).to_list() == [
        "<60",
        "60-64",
        "60-64",
        "75-79",
        "80-84",
        "95-99",
        "100+",
    ]
    assert h.generalise(ages, h.level("10y")).to_list() == [
        "<60",
        "60-69",
        "60-69",
        "70-79",
        "80-89",
        "90+",
        "90+",
    ]
    assert h.generalise(ages, 3).to_list() == ["<60", "60-79", "60-79", "60-79", "80+", "80+", "80+"]
    assert h.generalise(ages, h.top).to_list() == [STAR] * 7


def test_age_band_birth_date_date_timestamp_street_ladders() -> None:
    band = hierarchy_for(ELDER.column("age_band"))
    assert band.generalise(pl.Series(["85-89", "100+", "60-64", None]), 1).to_list() == [
        "80-89",
        "90+",
        "60-69",
        None,
    ]
    assert band.generalise(pl.Series(["85-89", "70-74", None]), 2).to_list() == ["80+", "60-79", None]
    birth = hierarchy_for(ELDER.column("birth_date"))
    b = pl.Series([date(1943, 9, 25)])
    assert [birth.generalise(b, i).to_list()[0] for i in range(1, 5)] == [
        "1943",
        "1940-1944",
        "1940-1949",
        STAR,
    ]
    day = hierarchy_for(EVENTS.column("service_date"))
    d = pl.Series([date(2026, 11, 5)])
    assert [day.generalise(d, i).to_list()[0] for i in range(1, 5)] == ["2026-11", "2026-Q4", "2026", STAR]
    ts = hierarchy_for(EVENTS.column("started_at"))
    t = pl.Series([datetime(2026, 11, 5, 8, 6)])
    assert [ts.generalise(t, i).to_list()[0] for i in range(1, 4)] == ["2026-11-05", "2026-11", "2026-Q4"]
    street = hierarchy_for(EVENTS.column("street"))
    assert street.generalise(pl.Series(["310110016000"]), 1).to_list() == ["310110000000"]
    assert hierarchy_for(ELDER.column("sex")).levels == ("value", STAR)


def test_numeric_ranges() -> None:
    assert nice_width(100) == 10 and nice_width(37) == 5 and nice_width(0) == 1
    lo, hi = EVENTS.column("duration_minutes").range or (0, 0)
    assert hierarchy_for(EVENTS.column("duration_minutes")).width == nice_width(hi - lo)  # contract range
    column = Column(name="x", source="x", type="integer", zh="x", pii="none")
    h = hierarchy_for(column, pl.Series([0, 200]))  # data
    assert h.kind == "numeric" and h.width == 20
    assert h.generalise(pl.Series([7, 45, None]), 1).to_list() == ["[0, 20)", "[40, 60)", None]
    assert h.generalise(pl.Series([45]), 2).to_list() == ["[0, 100)"]


def _people(n: int) -> pl.DataFrame:
    """n persons, 3 rows each, with a sex, an age and a street that make many small classes."""
    rows = []
    for i in range(n):
        for j in range(3):
            rows.append(
                {
                    "person": f"P{i}",
                    "sex": "1" if i % 2 else "2",
                    "age": 60 + (i * 7) % 40,
                    "street": f"310110{(i % 12) + 1:03d}000",
                    "visit": j,
                }
            )
    return pl.DataFrame(rows)


def test_anonymise_reaches_k_in_persons_with_bounded_suppression() -> None:
    frame = _people(200)
    qis = [
        QuasiIdentifier("sex", hierarchy_for(ELDER.column("sex"))),
        QuasiIdentifier("age", hierarchy_for(ELDER.column("age"))),
        QuasiIdentifier("street", hierarchy_for(ELDER.column("street"))),
    ]
    result = anonymise(frame, qis, k=5, max_suppression=0.05, person="person")
    assert result.suppressed <= 0.05 * frame.height
    assert result.frame.height == frame.height - result.suppressed
    sizes = classes_in(result.frame, ["sex", "age", "street"], person="person").get_column("f")
    assert least(sizes.min()) >= 5
    # counted in records, the same data would look 3x safer: persons are the stricter unit
    by_records = anonymise(frame, qis, k=5, max_suppression=0.05)
    assert sum(by_records.levels.values()) <= sum(result.levels.values())


def test_anonymise_prefers_the_lowest_generalisation() -> None:
    frame = pl.DataFrame({"sex": ["1"] * 10 + ["2"] * 10, "age": [70] * 10 + [71] * 10})
    qis = [
        QuasiIdentifier("sex", hierarchy_for(ELDER.column("sex"))),
        QuasiIdentifier("age", hierarchy_for(ELDER.column("age"))),
    ]
    result = anonymise(frame, qis, k=5)
    assert result.levels == {"sex": 0, "age": 0} and result.suppressed == 0
    result = anonymise(frame, qis, k=15)
    # 10 of each sex, 10 of each age: only merging both sexes and both ages makes a class of 15+
    assert result.level_names() == {"sex": "*", "age": "5y"} and result.frame.height == 20


def test_anonymise_minimum_levels_are_respected() -> None:
    frame = pl.DataFrame({"service_date": [date(2026, 11, d) for d in range(1, 29)] * 5})
    h = hierarchy_for(EVENTS.column("service_date"))
    result = anonymise(frame, [QuasiIdentifier("service_date", h, h.level("month"))], k=2)
    assert result.level_names() == {"service_date": "month"}
    assert result.frame.get_column("service_date").unique().to_list() == ["2026-11"]


def test_anonymise_refuses_when_fewer_than_k_persons() -> None:
    frame = pl.DataFrame({"person": ["a", "b", "a"], "sex": ["1", "2", "1"]})
    with pytest.raises(ReleaseError, match="k=5"):
        anonymise(frame, [QuasiIdentifier("sex", hierarchy_for(ELDER.column("sex")))], k=5, person="person")


def test_risk_metrics_by_hand() -> None:
    frame = pl.DataFrame({"sex": ["1", "1", "2", "2", "2"]})
    risk = risk_metrics(frame, ["sex"], k=2)
    assert risk["k_achieved"] == 2 and risk["equivalence_classes"] == 2
    assert risk["prosecutor_risk"]["highest"] == 0.5
    assert risk["prosecutor_risk"]["average"] == pytest.approx(2 / 5)
    assert risk["prosecutor_risk"]["records_at_highest_risk"] == pytest.approx(2 / 5)
    assert risk["journalist_risk"]["highest"] == 0.5  # no population: the release is the population
    population = pl.DataFrame({"sex": ["1"] * 10 + ["2"] * 4})
    risk = risk_metrics(frame, ["sex"], k=2, population=population)
    assert risk["journalist_risk"]["highest"] == 0.25
    assert risk["journalist_risk"]["smallest_population_class"] == 4
    assert risk["marketer_risk"] == pytest.approx((2 / 10 + 3 / 4) / 5)


def _lines_with_lone_suppression(cells: pl.DataFrame, keys: list[str]) -> int:
    lone = 0
    for d in keys:
        others = [c for c in keys if c != d]
        per_line = (
            cells.group_by(others).agg(pl.len().alias("n"), pl.col("suppressed").sum().alias("s"))
            if others
            else cells.select(pl.len().alias("n"), pl.col("suppressed").sum().alias("s"))
        )
        lone += per_line.filter((pl.col("n") >= 2) & (pl.col("s") == 1)).height
    return lone


def test_aggregate_cells_under_k_are_null_and_complemented() -> None:
    rows = []
    counts = {("A", "x"): 10, ("A", "y"): 2, ("A", "z"): 8, ("B", "x"): 9, ("B", "y"): 7, ("B", "z"): 6}
    for (street, programme), n in counts.items():
        rows += [
            {"street": street, "programme": programme, "person": f"{street}{programme}{i}", "amount": 1.0}
            for i in range(n)
        ]
    frame = pl.DataFrame(rows)
    measures = [Measure("elders", "persons"), Measure("events", "count"), Measure("amount", "sum", "amount")]
    cells, report = aggregate_cells(frame, ["street", "programme"], measures, k=5, person="person")
    primary = cells.filter(pl.col("suppression") == "primary")
    assert primary.select("street", "programme").rows() == [("A", "y")]
    assert primary.select(pl.col("elders", "events", "amount").is_null().all()).row(0) == (True, True, True)
    assert report["primary_suppressed"] == 1 and report["complementary_suppressed"] >= 2
    assert _lines_with_lone_suppression(cells, ["street", "programme"]) == 0
    published = cells.filter(~pl.col("suppressed"))
    assert least(published.get_column("elders").min()) >= 5
    assert report["smallest_published_cell"] >= 5


def test_aggregate_single_dimension_protects_the_total() -> None:
    frame = pl.DataFrame({"street": ["A"] * 3 + ["B"] * 9 + ["C"] * 6})
    cells, report = aggregate_cells(frame, ["street"], [Measure("n", "count")], k=5)
    assert cells.filter(pl.col("suppressed")).get_column("street").to_list() == ["A", "C"]
    assert report == {
        "cells": 3,
        "unit": "records",
        "k_required": 5,
        "primary_suppressed": 1,
        "complementary_suppressed": 1,
        "smallest_published_cell": 9,
    }

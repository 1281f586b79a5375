"""Data quality of the library and mart tables, and the generator's faults against every check.

GX suites generated from the library / mart contracts (:mod:`quality.suites`)
pass on the built library of a generated sample, and a frame mutated to break
exactly one rule family fails exactly that family's rule (one test per family);
the cross-table SQL rules (:mod:`quality.library_checks`) likewise. Last, the
faults the generator plants are caught at the rates the ingestion issue (#3)
sets: every hard fault quarantined with its reason (floor 99%), no clean row
quarantined, every soft ID/phone fault normalised, and the planted breaches
(meals at a closed meal point, the deceased still served) flagged by the
quality rules - all of them, and nothing else.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb
import polars as pl
import pytest

from assets.library.build import as_of_date, bind_as_of, create_library_views
from assets.library_assets import build_library_check, build_table_asset, library_asset_key
from assets.staging.stage import create_staged_views, staged_dir
from pipelines.resources import LakeResource
from quality.library_checks import (
    DerivedBatch,
    cross_table_rules,
    evaluate,
    load_batches,
    validate_batches,
    validate_derived,
)
from quality.report import write_report
from quality.rules import AS_OF, FAMILIES
from quality.runner import validate
from quality.scorecard import load_thresholds, read_history, record_results, scorecard
from quality.suites import FORMATS, not_future_columns, rules_for, suite_for
from rainbow.settings import Lake
from rainbow.warehouse import connect_warehouse
from sample_data.scoring import score_quarantine
from sample_data.truth import read_truth
from schemas import load_registry
from tests.lakefiles import read_parquet

REG = load_registry()
ID18 = re.compile(r"(?<!\d)\d{17}[\dXx](?!\d)")
MOBILE11 = re.compile(r"(?<!\d)1[3-9]\d{9}(?!\d)")
# Planted breaches the WARN rules must flag (and nothing else may fail on the generated sample).
PLANTED_WARN = {"consistency.served_while_alive", "consistency.meal_point_open"}


def as_of(lake: Lake) -> date:
    value = as_of_date(lake, REG)
    assert value is not None
    return date.fromisoformat(value)


def library(lake: Lake, table: str) -> pl.DataFrame:
    """A library table as the checks load it: with the build's as-of date in ``_as_of``."""
    return read_parquet(lake.library / table / "data.parquet").with_columns(
        pl.lit(as_of(lake)).alias(AS_OF)
    )


def _failed(df: pl.DataFrame, table: str) -> set[str]:
    return {o.rule_id for o in validate(df, table, REG).failed()}


def _set(df: pl.DataFrame, row: int, **values: Any) -> pl.DataFrame:
    i = pl.int_range(pl.len())
    return df.with_columns(
        [pl.when(i == row).then(pl.lit(v)).otherwise(pl.col(k)).alias(k) for k, v in values.items()]
    )


@pytest.fixture()
def views(library_lake: Lake) -> Iterator[duckdb.DuckDBPyConnection]:
    """An in-memory DuckDB with the sample's staged and library views (the lake stays untouched)."""
    con = duckdb.connect()
    for _, t in REG.tables():
        create_staged_views(con, library_lake, t)
    create_library_views(con, library_lake, REG)
    bind_as_of(con, as_of(library_lake).isoformat())
    yield con
    con.close()


# ------------------------------------------------------------------ suites from the contracts


def test_every_library_and_mart_suite_is_built_from_its_contract() -> None:
    for _, table in REG.derived_tables():
        suite = suite_for(table, REG)
        assert suite.name == f"derived.{table.name}"
        metas: list[dict[str, Any]] = [e.meta or {} for e in suite.expectations]
        assert {m["family"] for m in metas} <= set(FAMILIES), table.name
        ids = {m["rule_id"] for m in metas}
        for col in table.columns:
            assert f"conformance.type.{col.name}" in ids
            required = not col.nullable or col.name in table.primary_key
            assert (f"completeness.not_null.{col.name}" in ids) == required, (table.name, col.name)
            assert (f"conformance.codelist.{col.name}" in ids) == bool(col.codelist)
            assert (f"plausibility.range.{col.name}" in ids) == bool(col.range)
            assert (f"conformance.format.{col.name}" in ids) == (col.semantic in FORMATS)
        for name in not_future_columns(table):
            assert f"timeliness.not_future.{name}" in ids
        assert ("uniqueness.primary_key" in ids) == bool(table.primary_key)
        # every contract rule guards downstream (ERROR); no lineage column is expected
        contract = [m for m in metas if m["rule_id"].split(".")[0] in ("conformance", "completeness")]
        assert all(m["severity"] == "ERROR" for m in contract), table.name
        (columns,) = [e for e in suite.expectations if (e.meta or {})["rule_id"] == "conformance.columns"]
        assert set(getattr(columns, "column_set")) == set(table.column_names)  # noqa: B009
    assert {"service_date"} == set(not_future_columns(REG.derived("fact_service_event")))
    elder = {r.id: r for r in rules_for(REG.derived("dim_elder"), REG)}
    assert elder["plausibility.age_60_plus"].severity == "WARN"
    assert elder["consistency.id_birth_date"].severity == "WARN"
    vitals = {r.id for r in rules_for(REG.derived("fact_vitals_daily"), REG)}
    assert {
        "plausibility.systolic_above_diastolic",
        "consistency.summary_order.heart_rate_max_ge_heart_rate_mean",
    } <= vitals
    screening = {r.id: r for r in rules_for(REG.derived("fact_screening"), REG)}
    assert screening["plausibility.instrument_range.AD8"].severity == "ERROR"


def test_no_rule_is_evaluated_twice_by_gx_and_by_sql() -> None:
    for _, table in REG.derived_tables():
        gx_ids = {r.id for r in rules_for(table, REG)}
        sql_ids = {r.id for r in cross_table_rules(table, REG)}
        assert not gx_ids & sql_ids, table.name
    sql = {r.id for r in cross_table_rules(REG.derived("fact_service_event"), REG)}
    assert sql == {
        "consistency.served_while_alive",
        "consistency.meal_point_open",
        "consistency.reconciles_with_staged",
        "conformance.elder_key_known",
    }


def test_every_library_suite_passes_on_the_generated_library(
    views: duckdb.DuckDBPyConnection, library_lake: Lake
) -> None:
    day = as_of(library_lake)
    for _, table in REG.derived_tables("library"):
        for result in validate_derived(views, table, REG, day):
            assert not result.failed("ERROR"), (table.name, [o.rule_id for o in result.failed("ERROR")])
            assert {o.rule_id for o in result.failed("WARN")} <= PLANTED_WARN, table.name
            assert all(o.evaluated for o in result.outcomes), (table.name, [o.note for o in result.outcomes])
            assert result.rows > 0 or table.name == "elder_key_changes", table.name


def test_big_facts_are_validated_by_their_newest_month(
    views: duckdb.DuckDBPyConnection, library_lake: Lake
) -> None:
    day = as_of(library_lake)
    table = REG.derived("fact_service_event")
    (batch,) = load_batches(views, table, REG, day)
    assert batch.label == day.strftime("%Y-%m")
    assert batch.frame["service_date"].min() == day.replace(day=1)
    assert (batch.frame[AS_OF] == day).all()
    (whole,) = load_batches(views, REG.derived("dim_elder"), REG, day)
    assert (
        whole.label == "all"
        and whole.frame.height == views.sql("SELECT * FROM library.dim_elder").pl().height
    )


# ------------------------------------------------------------------ one test per rule family


@pytest.fixture(scope="module")
def screenings(library_lake: Lake) -> pl.DataFrame:
    df = library(library_lake, "fact_screening")
    assert df.height >= 10 and "AD8" in df["instrument"].to_list()
    assert _failed(df, "fact_screening") == set()
    return df


def test_when_a_library_code_is_not_in_its_list_then_only_the_conformance_rule_fails(
    screenings: pl.DataFrame,
) -> None:
    assert _failed(_set(screenings, 3, instrument="XYZ"), "fact_screening") == {
        "conformance.codelist.instrument"
    }


def test_when_a_required_library_value_is_missing_then_only_the_completeness_rule_fails(
    screenings: pl.DataFrame,
) -> None:
    assert _failed(_set(screenings, 3, screening_date=None), "fact_screening") == {
        "completeness.not_null.screening_date"
    }


def test_when_a_library_key_repeats_then_only_the_uniqueness_rule_fails(screenings: pl.DataFrame) -> None:
    assert _failed(pl.concat([screenings, screenings.tail(1)]), "fact_screening") == {
        "uniqueness.primary_key"
    }


def test_when_a_library_score_leaves_its_instrument_scale_then_only_the_plausibility_rule_fails(
    screenings: pl.DataFrame,
) -> None:
    ad8 = screenings["instrument"].to_list().index("AD8")
    assert _failed(_set(screenings, ad8, score=12), "fact_screening") == {"plausibility.instrument_range.AD8"}


def test_when_a_library_date_lies_after_the_as_of_date_then_only_the_timeliness_rule_fails(
    screenings: pl.DataFrame,
) -> None:
    later = screenings[AS_OF][0] + timedelta(days=3)
    result = validate(_set(screenings, 3, screening_date=later), "fact_screening", REG)
    assert {o.rule_id for o in result.failed()} == {"timeliness.not_future.screening_date"}
    (example,) = result.outcome("timeliness.not_future.screening_date").examples
    assert (
        example["screening_date"] == later.isoformat() and example[AS_OF] == screenings[AS_OF][0].isoformat()
    )


def test_when_the_golden_birth_date_disagrees_with_the_id_then_only_the_consistency_rule_fails(
    library_lake: Lake,
) -> None:
    elders = library(library_lake, "dim_elder")
    assert _failed(elders, "dim_elder") == set()
    row = (elders["id_number"].is_not_null() & elders["birth_date"].is_not_null()).arg_true()[0]
    result = validate(
        _set(elders, row, birth_date=elders["birth_date"][row] - timedelta(days=1)), "dim_elder", REG
    )
    assert {o.rule_id for o in result.failed()} == {"consistency.id_birth_date"}
    outcome = result.outcome("consistency.id_birth_date")
    assert outcome.severity == "WARN" and outcome.family == "consistency"
    (example,) = outcome.examples
    assert example["_dq_birth_gap_days"] == "-1"
    assert re.fullmatch(r"\d{4}\*{10}[\dX]{4}", example["id_number"] or "")  # masked
    assert not ID18.search(json.dumps(example, ensure_ascii=False))


def test_when_an_elder_is_served_after_their_death_then_only_the_cross_table_consistency_rule_fails(
    views: duckdb.DuckDBPyConnection,
) -> None:
    table = REG.derived("fact_service_event")
    before = {o.rule.id: o for o in evaluate(views, table, cross_table_rules(table, REG))}
    assert before["consistency.served_while_alive"].unexpected > 0  # the planted deceased still served
    events = views.sql("SELECT * FROM library.fact_service_event").pl()
    elders = views.sql("SELECT * FROM library.dim_elder").pl()
    living = elders.filter(pl.col("death_date").is_null())["elder_key"]
    served = events.filter(pl.col("elder_key").is_in(living.to_list()))
    key = served["elder_key"][0]
    first = served.filter(pl.col("elder_key") == key)["service_date"].min()
    assert isinstance(first, date)
    mutated = elders.with_columns(
        death_date=pl.when(pl.col("elder_key") == key)
        .then(pl.lit(first - timedelta(days=1)))
        .otherwise(pl.col("death_date")),
        status=pl.when(pl.col("elder_key") == key).then(pl.lit("DECEASED")).otherwise(pl.col("status")),
    )
    views.register("mutated_dim_elder", mutated.to_arrow())
    views.execute("CREATE OR REPLACE VIEW library.dim_elder AS SELECT * FROM mutated_dim_elder")
    after = {o.rule.id: o for o in evaluate(views, table, cross_table_rules(table, REG))}
    changed = {r for r in after if after[r].unexpected != before[r].unexpected}
    assert changed == {"consistency.served_while_alive"}
    extra = (
        after["consistency.served_while_alive"].unexpected
        - before["consistency.served_while_alive"].unexpected
    )
    assert extra == served.filter(pl.col("elder_key") == key).height
    assert after["consistency.served_while_alive"].rule.severity == "WARN"


def test_when_a_fact_names_an_elder_the_golden_record_does_not_know_then_the_key_rule_fails(
    views: duckdb.DuckDBPyConnection,
) -> None:
    table = REG.derived("fact_screening")
    screenings = views.sql("SELECT * FROM library.fact_screening").pl()
    views.register("mutated", _set(screenings, 0, elder_key="E99999999").to_arrow())
    views.execute("CREATE OR REPLACE VIEW library.fact_screening AS SELECT * FROM mutated")
    (outcome,) = evaluate(views, table, cross_table_rules(table, REG))
    assert outcome.rule.id == "conformance.elder_key_known" and outcome.rule.severity == "ERROR"
    assert outcome.unexpected == 1 and outcome.examples[0]["screening_id"] == screenings["screening_id"][0]


# ------------------------------------------------------------------ marts


@pytest.fixture(scope="module")
def mart_lake(library_lake: Lake, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lake]:
    from assets.marts.kpis import build_kpis
    from assets.marts.portraits import build_portraits

    lake = Lake(tmp_path_factory.mktemp("marts") / "lake")
    shutil.copytree(library_lake.root, lake.root)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RAINBOW_PSEUDONYM_KEY", bytes(range(32)).hex())
        with connect_warehouse(lake) as con:
            create_library_views(con, lake, REG)
            for _, t in REG.tables():
                create_staged_views(con, lake, t)
            day = as_of(library_lake)
            bind_as_of(con, day.isoformat())
            build_portraits(lake, con, as_of=day)
            build_kpis(lake, con, as_of=day, registry=REG)
        yield lake


def test_every_mart_suite_passes_on_the_generated_marts(mart_lake: Lake) -> None:
    day = as_of(mart_lake)
    with connect_warehouse(mart_lake, read_only=True) as con:
        bind_as_of(con, day.isoformat())
        for name in ("elder_portrait", "elder_risk_tags", "elder_scenarios", "kpi_values"):
            (result,) = validate_derived(con, REG.derived(name), REG, day)
            assert result.rows > 0 and result.success, (name, [o.rule_id for o in result.failed()])
            assert all(o.evaluated for o in result.outcomes), name


# ------------------------------------------------------------------ history, report, Dagster check


def test_library_results_are_scored_and_reported_per_data_set(library_lake: Lake, tmp_path: Path) -> None:
    lake = Lake(tmp_path / "lake")
    table = REG.derived("fact_screening")
    frame = _set(library(library_lake, "fact_screening"), 0, instrument="XYZ")
    results = validate_batches([DerivedBatch("all", frame)], [], table, REG)
    record_results(lake, REG, results, run_date=date(2026, 12, 6))
    record_results(lake, REG, results, run_date=date(2026, 12, 7))
    history = read_history(lake, newest_partitions=30)
    assert set(history["system"]) == {"library.health"} and history["run_date"].n_unique() == 2
    card = scorecard(history, load_thresholds())
    conformance = card.filter(pl.col("family") == "conformance")
    assert conformance.height == 2 and (conformance["failed_error"] == 1).all()
    text = write_report(lake, REG).read_text(encoding="utf-8")
    assert "主题库·健康档案" in text and "认知障碍筛查" in text and "conformance.codelist.instrument" in text
    assert "12-06<br>" in text and "12-07<br>" in text  # a table validated whole: its trend is nightly


@pytest.mark.integration
def test_the_library_check_blocks_with_masked_examples_and_reports(
    library_lake: Lake, tmp_path: Path
) -> None:
    lake = Lake(tmp_path / "lake")
    shutil.copytree(library_lake.root, lake.root)
    path = lake.library / "dim_elder" / "data.parquet"
    elders = read_parquet(path)
    rows = (elders["id_number"].is_not_null() & elders["phone"].is_not_null()).arg_true()[:2].to_list()
    for r in rows:  # a phone not in its normalised form (ERROR) and a birth date off its ID (WARN)
        elders = _set(
            elders, r, phone="+86 13812345678", birth_date=elders["birth_date"][r] - timedelta(days=2)
        )
    elders.write_parquet(path)
    dataset, table = REG.dataset_of("dim_elder"), REG.derived("dim_elder")
    check = build_library_check(REG, table)
    asset = build_table_asset(REG, dataset, table)
    result = dg.materialize(
        [asset, check],
        resources={"lake": LakeResource(root=str(lake.root))},
        selection=dg.AssetSelection.checks(check),
        raise_on_error=False,
    )
    assert not result.success  # blocking: an ERROR fails the step
    (evaluation,) = result.get_asset_check_evaluations()
    assert evaluation.asset_key == library_asset_key("dim_elder")
    assert evaluation.check_name == "library_contract" and not evaluation.passed
    assert evaluation.severity == dg.AssetCheckSeverity.ERROR
    md: dict[str, Any] = dict(evaluation.metadata)
    assert md["failed_error_rules"].value >= 1 and md["failed_warn_rules"].value >= 1
    blob = "\n".join(json.dumps(getattr(v, "value", v), ensure_ascii=False, default=str) for v in md.values())
    assert "conformance.format.phone" in blob and "consistency.id_birth_date" in blob
    assert "138****5678" in blob
    assert not ID18.search(blob) and not MOBILE11.search(blob)
    assert all(elders["name"][r] not in blob for r in rows if elders["name"][r])
    report = Path(md["quality_report"].value)
    assert md["quality_report_url"].value == report.as_uri()
    text = report.read_text(encoding="utf-8")
    assert "conformance.format.phone" in text and "老年人全景档案" in text
    assert not ID18.search(text) and not MOBILE11.search(text)
    history = read_history(lake)
    assert set(history["table"]) == {"dim_elder"} and set(history["system"]) == {"library.basics"}


# ------------------------------------------------------------------ the generator's faults


SOFT_FORMAT_FAULTS = ("id_15_digit", "id_lowercase_x", "id_fullwidth", "phone_plus86", "phone_separators")


def _staged(lake: Lake, table: str) -> pl.DataFrame:
    return read_parquet(staged_dir(lake, table) / "**" / "*.parquet")


def test_generator_faults_are_caught_at_the_rates_the_ingestion_issue_sets(library_lake: Lake) -> None:
    truth = read_truth(library_lake.truth, "faults")
    # 1. hard faults: quarantined with their reason code (issue #3: >= 99%), no clean row quarantined
    score = score_quarantine(library_lake)
    assert score.hard_faults > 300 and score.recall >= 0.99, score.by_kind
    assert score.clean_rows_quarantined == 0

    # 2. soft ID and phone faults: every such row that was staged carries the true value, normalised
    soft = truth.filter(pl.col("kind").is_in(SOFT_FORMAT_FAULTS))
    checked = 0
    for (table, column), faults in soft.group_by("table", "column"):
        staged = _staged(library_lake, str(table)).select(
            pl.col("_source_file").alias("source_file"), pl.col("_row_number").alias("row_number"), column
        )
        both = faults.join(staged, on=["source_file", "row_number"])
        regex = FORMATS[REG.table(str(table)).column(str(column)).semantic or ""][0]
        assert both[str(column)].str.contains(regex).all(), (table, column)
        wanted = both["original"].str.replace_all(r"\D", "") if "phone" in str(column) else both["original"]
        assert (both[str(column)] == wanted).all(), (table, column)
        checked += both.height
    assert checked > 300

    # 3. meals at a closed meal point: flagged by the staged rule (with staged facilities) and by the
    #    library's SQL rule - every planted meal, and no other
    incidents = read_truth(library_lake.truth, "incidents")
    links = read_truth(library_lake.truth, "links").filter(pl.col("role") == "subject")
    planted = incidents.filter(pl.col("kind") == "meal_at_closed_point").select(
        "person_id", pl.col("start").dt.date().alias("day")
    )
    assert planted.height > 0
    meals = _staged(library_lake, "meal_transactions")
    staged_result = validate(
        meals, "meal_transactions", REG, related={"facilities": _staged(library_lake, "facilities")}
    )
    assert staged_result.outcome("consistency.meal_point_open").unexpected_count == planted.height
    people = meals.join(
        links.select(
            pl.col("source_file").alias("_source_file"),
            pl.col("row_number").alias("_row_number"),
            "person_id",
        ),
        on=["_source_file", "_row_number"],
    ).with_columns(day=pl.col("meal_time").dt.date())
    assert planted.join(people, on=["person_id", "day"], how="semi").height == planted.height  # all staged
    with connect_warehouse(library_lake, read_only=True) as con:
        bind_as_of(con, as_of(library_lake).isoformat())
        table = REG.derived("fact_service_event")
        sql = {o.rule.id: o for o in evaluate(con, table, cross_table_rules(table, REG))}
        closed = con.sql(
            "SELECT t.record_id FROM library.fact_service_event t JOIN library.dim_facility f "
            "ON f.facility_id = t.provider_id "
            "WHERE t.programme = 'MEAL_AID' AND t.service_date >= f.closed_on"
        ).pl()
        dead = con.sql(
            "SELECT t.elder_key, t.service_date FROM library.fact_service_event t JOIN library.dim_elder e "
            "USING (elder_key) WHERE t.service_date > e.death_date"
        ).pl()
        deceased = con.sql(
            "SELECT elder_key, death_date FROM library.dim_elder WHERE death_date IS NOT NULL"
        ).pl()
        elder_links = con.sql(
            "SELECT source_table, source_file, row_number, elder_key FROM library.elder_links"
        ).pl()
    assert sql["consistency.meal_point_open"].unexpected == planted.height == closed.height

    # 4. the deceased still served: every planted case whose death the golden record knows is flagged
    #    (served_while_alive), and every flagged event belongs to a planted case
    key_of = (
        elder_links.join(
            links.select(pl.col("table").alias("source_table"), "source_file", "row_number", "person_id"),
            on=["source_table", "source_file", "row_number"],
        )
        .group_by("person_id")
        .agg(pl.col("elder_key").mode().first())
    )
    dead_planted = (
        incidents.filter(pl.col("kind") == "deceased_still_served")
        .join(key_of, on="person_id")
        .join(deceased, on="elder_key")
    )
    assert dead_planted.height > 0
    assert sql["consistency.served_while_alive"].unexpected == dead.height > 0
    assert set(dead["elder_key"]) == set(dead_planted["elder_key"])

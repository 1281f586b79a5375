"""Data quality of the staged zone: suites, rule families, scorecards, health, checks, masking."""

from __future__ import annotations

import json
import re
import shutil
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl
import pytest

from assets.ingest.ledger import LedgerEntry, save_entries
from assets.partitions import daily_partitions
from assets.staged_assets import build_staged_asset
from assets.staging.stage import ingest_and_stage, staged_dir
from pipelines.resources import LakeResource
from quality.checks import CHECK_NAME, Batch, build_quality_checks, choose_batches, validate_staged
from quality.redact import mask_name, mask_phone, mask_row, scrub
from quality.report import report_path, write_report
from quality.rules import FAMILIES
from quality.runner import QualityResult, validate
from quality.scorecard import (
    CheckSettings,
    history_dir,
    load_thresholds,
    read_history,
    record_results,
    scorecard,
    source_health,
    system_day_scorecard,
)
from quality.suites import rules_for, suite_for
from rainbow.settings import Lake
from sample_data.config import GeneratorConfig
from sample_data.generate import generate
from schemas import load_registry
from tests.lakefiles import read_parquet

ID18 = re.compile(r"(?<!\d)\d{17}[\dXx](?!\d)")
MOBILE11 = re.compile(r"(?<!\d)1[3-9]\d{9}(?!\d)")
REG = load_registry()


@pytest.fixture(scope="module")
def staged_lake(tmp_path_factory: pytest.TempPathFactory) -> Lake:
    """1,000 elders x 10 days, ingested and staged in the layout the staged assets write."""
    lake = Lake(tmp_path_factory.mktemp("quality") / "lake")
    generate(GeneratorConfig(elders=1_000, days=10), lake)
    now = datetime(2026, 11, 11, 2, tzinfo=UTC)
    ingest_and_stage(lake, REG, now)
    return lake


def _staged(lake: Lake, table: str) -> pl.DataFrame:
    return read_parquet(staged_dir(lake, table) / "**" / "*.parquet").sort("_delivery_date", "_row_number")


def _failed(df: pl.DataFrame, table: str = "screenings", **kw: Any) -> set[str]:
    return {o.rule_id for o in validate(df, table, REG, **kw).failed()}


def _set(df: pl.DataFrame, row: int, **values: Any) -> pl.DataFrame:
    """``df`` with some columns of one row replaced."""
    i = pl.int_range(pl.len())
    return df.with_columns(
        [pl.when(i == row).then(pl.lit(v)).otherwise(pl.col(k)).alias(k) for k, v in values.items()]
    )


# ------------------------------------------------------------------ suites


def test_every_suite_is_tagged_and_built_from_the_contract() -> None:
    for _, table in REG.tables():
        suite = suite_for(table, REG)
        metas = [e.meta or {} for e in suite.expectations]
        assert {m["family"] for m in metas} <= set(FAMILIES), table.name
        ids = {m["rule_id"] for m in metas}
        for col in table.columns:
            assert f"conformance.type.{col.name}" in ids
            assert (f"completeness.not_null.{col.name}" in ids) == (not col.nullable)
            assert (f"conformance.codelist.{col.name}" in ids) == bool(col.codelist)
            assert (f"plausibility.range.{col.name}" in ids) == bool(col.range)
        for name in table.event_time_columns:
            assert f"timeliness.not_future.{name}" in ids
        assert "uniqueness.primary_key" in ids
    screening_ids = {r.id for r in rules_for(REG.table("screenings"), REG)}
    assert {
        "consistency.id_birth_date",
        "plausibility.age_60_plus",
        "plausibility.instrument_range.AD8",
        "plausibility.instrument_range.MMSE",
        "plausibility.instrument_range.MOCA",
    } <= screening_ids
    assert "plausibility.age_60_plus" not in {r.id for r in rules_for(REG.table("caregivers"), REG)}
    assert "plausibility.systolic_above_diastolic" in {
        r.id for r in rules_for(REG.table("wristband_vitals"), REG)
    }
    ltci = {r.id for r in rules_for(REG.table("muni_ltci_services"), REG)}
    assert {"consistency.order.end_time_after_start_time", "consistency.duration_matches_times"} <= ltci


def test_every_suite_passes_on_clean_generated_staged_data(staged_lake: Lake) -> None:
    settings = load_thresholds()
    for _, table in REG.tables():
        days = (
            None  # the whole table
            if not table.delivery.partitioned
            else sorted(
                date.fromisoformat(p.parent.name[5:])
                for p in staged_dir(staged_lake, table).glob("date=*/*.parquet")
            )
        )
        results, missing = validate_staged(
            staged_lake,
            table,
            REG,
            partitioned=table.delivery.partitioned,
            run_days=days,
            thresholds=settings,
        )
        assert not missing
        for res in results:
            assert res.success, (
                table.name,
                res.partition,
                [(o.rule_id, o.unexpected_count) for o in res.failed()],
            )
            assert all(o.evaluated for o in res.outcomes), (
                table.name,
                [o.note for o in res.outcomes if o.note],
            )
        assert sum(r.rows for r in results) == _staged(staged_lake, table.name).height


# ------------------------------------------------------------------ one test per rule family


@pytest.fixture(scope="module")
def screenings(staged_lake: Lake) -> pl.DataFrame:
    df = _staged(staged_lake, "screenings")
    assert df.height >= 10 and "AD8" in df["instrument"].to_list()
    assert _failed(df) == set()
    return df


def test_when_a_code_is_not_in_its_list_then_only_the_conformance_rule_fails(
    screenings: pl.DataFrame,
) -> None:
    assert _failed(_set(screenings, 3, instrument="XYZ")) == {"conformance.codelist.instrument"}


def test_when_a_required_value_is_missing_then_only_the_completeness_rule_fails(
    screenings: pl.DataFrame,
) -> None:
    assert _failed(_set(screenings, 3, name=None)) == {"completeness.not_null.name"}


def test_when_a_score_leaves_its_instrument_scale_then_only_the_plausibility_rule_fails(
    screenings: pl.DataFrame,
) -> None:
    ad8 = screenings["instrument"].to_list().index("AD8")
    # 12 is inside the contract's 0-30 but outside AD8's 0-8.
    assert _failed(_set(screenings, ad8, score=12)) == {"plausibility.instrument_range.AD8"}


def test_when_a_key_is_delivered_twice_in_a_day_then_only_the_uniqueness_rule_fails(
    screenings: pl.DataFrame,
) -> None:
    assert _failed(pl.concat([screenings, screenings.head(1)])) == {"uniqueness.primary_key"}


def test_monthly_full_lists_keep_one_snapshot_per_delivery_and_pass(staged_lake: Lake) -> None:
    """A full list delivered every month repeats every key once per snapshot: that is not a
    duplicate (a year of deliveries failed here); a key twice in one snapshot is."""
    caregivers = _staged(staged_lake, "caregivers")
    assert caregivers.height > 10 and caregivers["_delivery_date"].n_unique() == 1
    later = caregivers.with_columns(pl.col("_delivery_date") + timedelta(days=30))
    assert _failed(pl.concat([caregivers, later]), "caregivers") == set()
    assert _failed(pl.concat([caregivers, later, later.head(1)]), "caregivers") == {"uniqueness.primary_key"}


def test_when_the_birth_date_disagrees_with_the_id_then_only_the_consistency_rule_fails(
    screenings: pl.DataFrame,
) -> None:
    row = screenings["id_birth_date"].is_not_null().arg_true()[0]
    earlier = screenings["birth_date"][row] - timedelta(days=1)
    result = validate(_set(screenings, row, birth_date=earlier), "screenings", REG)
    assert {o.rule_id for o in result.failed()} == {"consistency.id_birth_date"}
    (example,) = result.outcome("consistency.id_birth_date").examples
    assert example["_dq_birth_gap_days"] == "-1"
    assert example["id_number"] is not None and re.fullmatch(r"\d{4}\*{10}[\dX]{4}", example["id_number"])


def test_when_an_event_is_dated_after_its_delivery_then_only_the_timeliness_rule_fails(
    screenings: pl.DataFrame,
) -> None:
    later = screenings["_delivery_date"][3] + timedelta(days=3)
    assert _failed(_set(screenings, 3, screening_date=later)) == {"timeliness.not_future.screening_date"}


def test_when_a_meal_is_taken_at_a_closed_meal_point_then_the_cross_table_rule_fails(
    staged_lake: Lake,
) -> None:
    meals = _staged(staged_lake, "meal_transactions")
    facilities = _staged(staged_lake, "facilities")
    point = meals["meal_point_id"][0]
    closed = meals["meal_time"].dt.date().min()
    assert _failed(meals, "meal_transactions", related={"facilities": facilities}) == set()
    shut = facilities.with_columns(
        closed_on=pl.when(pl.col("facility_id") == point).then(pl.lit(closed)).otherwise(pl.col("closed_on"))
    )
    result = validate(meals, "meal_transactions", REG, related={"facilities": shut})
    assert {o.rule_id for o in result.failed()} == {"consistency.meal_point_open"}
    assert (
        result.outcome("consistency.meal_point_open").unexpected_count
        == meals.filter(pl.col("meal_point_id") == point).height
    )
    # Without the facilities table the cross-table rules are reported as not evaluated, not passed.
    alone = validate(meals, "meal_transactions", REG)
    assert not alone.outcome("consistency.meal_point_open").evaluated
    assert "facilities" in (alone.outcome("consistency.meal_point_open").note or "")


def test_when_a_column_is_missing_then_the_columns_rule_fails_and_its_rules_are_not_evaluated(
    screenings: pl.DataFrame,
) -> None:
    result = validate(screenings.drop("education"), "screenings", REG)
    assert {o.rule_id for o in result.failed()} == {"conformance.columns"}
    assert not result.outcome("conformance.codelist.education").evaluated


# ------------------------------------------------------------------ masking


def test_masking_keeps_no_identifier_whole() -> None:
    assert mask_phone("13812345678") == "138****5678"
    assert mask_phone("+86 138-1234-5678") == "138****5678"
    assert mask_phone("021-65432178") == "021-****2178"
    assert mask_name("张三") == "张*"
    assert scrub("身份证310110195111017635，电话13812345678") == "身份证3101**********7635，电话138****5678"
    assert scrub("老证号310110511101763") == "老证号3101*******1763"
    assert scrub("记录 RZ2026110100000123 不是证件") == "记录 RZ2026110100000123 不是证件"
    row = mask_row(
        REG.table("district_registry"),
        {
            "id_number": "310110195111017635",
            "phone": "13812345678",
            "name": "欧阳娜娜",
            "remarks": "见13812345678",
        },
    )
    assert row == {
        "id_number": "3101**********7635",
        "phone": "138****5678",
        "name": "欧***",
        "remarks": "[12 字已隐去]",
    }


# ------------------------------------------------------------------ scorecard, history, health, report


def test_history_is_idempotent_per_table_partition_and_run_date(staged_lake: Lake, tmp_path: Path) -> None:
    lake = Lake(tmp_path / "lake")
    df = _staged(staged_lake, "screenings")
    day = df["_delivery_date"].max()
    result = validate(df.filter(pl.col("_delivery_date") == day), "screenings", REG, partition=str(day))
    first = record_results(lake, REG, [result], run_date=date(2026, 11, 12))
    once = read_history(lake)
    record_results(lake, REG, [result], run_date=date(2026, 11, 12))
    assert sorted(p for p in lake.root.rglob("*.parquet")) == sorted(first)
    again = read_history(lake)
    assert again.drop("run_at").equals(once.drop("run_at")) and again.height == len(result.outcomes)
    record_results(lake, REG, [result], run_date=date(2026, 11, 13))
    history = read_history(lake)
    assert history.height == 2 * len(result.outcomes)
    card = scorecard(history, load_thresholds())
    assert set(card["family"]) == {o.family for o in result.outcomes}
    assert (card["score"] == 1.0).all() and (card["status"] == "green").all()
    assert card.select("run_date").n_unique() == 2
    by_day = system_day_scorecard(history, load_thresholds())
    assert set(by_day["system"]) == {"cognitive_screening"} and set(by_day["partition"]) == {str(day)}
    path = write_report(lake, REG)
    text = path.read_text(encoding="utf-8")
    assert path == report_path(lake) and "彩虹桥数据质量报告" in text and "认知障碍筛查记录" in text


def test_scores_and_status_follow_the_thresholds() -> None:
    limits = load_thresholds()
    assert limits.status("screenings", "completeness", 1.0) == "green"
    assert limits.status("screenings", "completeness", 0.99) == "amber"
    assert limits.status("screenings", "completeness", 0.5) == "red"
    assert limits.status("screenings", "completeness", None) is None


def test_source_health_flags_late_tables_and_zombie_systems(staged_lake: Lake) -> None:
    limits = load_thresholds()
    now = source_health(staged_lake, REG, limits)
    assert now["as_of"][0] == date(2026, 11, 10)
    assert not now["late"].any() and not now["system_zombie"].any()
    later = source_health(staged_lake, REG, limits, as_of=date(2026, 11, 16))
    by_table = {r["table"]: r for r in later.iter_rows(named=True)}
    assert by_table["screenings"]["late"] and by_table["screenings"]["silent"]
    assert by_table["screenings"]["system_zombie"] and by_table["screenings"]["status"] == "僵尸系统"
    # the wristband platform's monthly device list is not overdue: the system is not a zombie
    assert by_table["wristband_vitals"]["silent"] and not by_table["wristband_vitals"]["system_zombie"]
    assert not by_table["wristband_devices"]["late"]


def test_source_health_flags_a_volume_anomaly(tmp_path: Path) -> None:
    lake = Lake(tmp_path / "lake")
    start = date(2026, 11, 1)
    rows = [100, 96, 104, 99, 101, 98, 102, 20]
    entries = [
        LedgerEntry(
            file_sha256=f"{i:064x}",
            source_file=f"cognitive_screening/screenings_{start + timedelta(days=i):%Y%m%d}.csv",
            delivered_date=start + timedelta(days=i),
            status="ingested",
            ingested_at=datetime(2026, 11, 1, tzinfo=UTC) + timedelta(days=i),
            file_size=1,
            file_mtime_ns=1,
            delivered_rows=n,
            rows=n,
            broken_rows=0,
        )
        for i, n in enumerate(rows)
    ]
    save_entries(lake, "screenings", entries, by_day=True)
    health = source_health(lake, REG, load_thresholds())
    row = health.filter(pl.col("table") == "screenings").row(0, named=True)
    assert row["rows_on_day"] == 20 and row["trailing_median"] == 100
    assert row["volume_anomaly"] and row["status"] == "数据量异常"


# ------------------------------------------------------------------ Dagster checks


def test_choose_batches_validates_the_newest_day_alone_and_older_days_together(staged_lake: Lake) -> None:
    table = REG.table("meal_transactions")
    days = [date(2026, 11, 1) + timedelta(days=i) for i in range(10)]
    batches, missing = choose_batches(staged_lake, table, True, [*days, date(2026, 11, 20)], CheckSettings())
    assert batches == [Batch("2026-11-01..2026-11-09", tuple(days[:9])), Batch("2026-11-10", (days[9],))]
    assert missing == [date(2026, 11, 20)]
    assert choose_batches(staged_lake, table, True, [], CheckSettings(latest_partitions=2))[0] == [
        Batch("2026-11-09", (days[8],)),
        Batch("2026-11-10", (days[9],)),
    ]
    facilities = REG.table("facilities")
    assert choose_batches(staged_lake, facilities, False, None, CheckSettings())[0] == [Batch("all", None)]
    # a dated list with nothing new in the run: its newest delivery (the one list of these days)
    assert choose_batches(staged_lake, facilities, False, [], CheckSettings())[0] == [
        Batch("2026-11-01", (date(2026, 11, 1),))
    ]
    # older days in batches under the row budget: one day each with a budget of one row
    small, _ = choose_batches(staged_lake, table, True, days, CheckSettings(max_batch_rows=1))
    assert small == [Batch(f"{d.isoformat()}..{d.isoformat()}", (d,)) for d in days[:9]] + [
        Batch("2026-11-10", (days[9],))
    ]


def test_an_event_tables_batches_two_at_a_time_give_the_outcomes_of_one_at_a_time(
    staged_lake: Lake, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading

    from quality import checks
    from rainbow.workers import WORKERS_ENV

    table = REG.table("meal_transactions")
    days = checks.partitions_on_disk(staged_lake, table)
    assert len(days) >= 6
    limits = load_thresholds()
    limits = limits.model_copy(update={"checks": CheckSettings(max_batch_rows=1, parallel_batches=2)})
    load_one = checks.load_batch
    threads: set[str] = set()

    def with_faults(lake: Lake, t: Any, batch: Batch) -> pl.DataFrame:
        threads.add(threading.current_thread().name)
        frame = load_one(lake, t, batch)
        if batch.days and batch.days[0].day % 2:  # every other day: a key delivered twice
            frame = pl.concat([frame, frame.head(2)])
        return frame

    monkeypatch.setattr(checks, "load_batch", with_faults)
    runs = {}
    for width in (1, 2):
        monkeypatch.setenv(WORKERS_ENV, str(width))
        threads.clear()
        results, _ = validate_staged(
            staged_lake, table, REG, partitioned=True, run_days=days, thresholds=limits
        )
        runs[width] = ([(r.partition, r.rows, r.outcomes) for r in results], set(threads))
    (one, one_threads), (two, two_threads) = runs[1], runs[2]
    assert len(one) == len(days)
    assert two == one  # every rule's counts and masked examples, batch by batch in day order
    failed = [p for p, _, outcomes in one if any(o.failed for o in outcomes)]
    assert failed and len(failed) < len(one)
    assert len(one_threads) == 1 and len(two_threads) == 2


def _check_for(table: str, daily: dg.PartitionsDefinition) -> dg.AssetChecksDefinition:
    (check,) = [
        c
        for c in build_quality_checks(REG, daily)
        if any(k.asset_key.path[-1] == table for k in c.check_keys)
    ]
    return check


def _value(metadata: Any, key: str) -> Any:
    """A Dagster metadata entry's plain value (typed as any of the metadata kinds)."""
    return metadata[key].value


def _texts(value: Any) -> list[str]:
    raw = getattr(value, "value", value)
    return [raw if isinstance(raw, str) else json.dumps(raw, ensure_ascii=False, default=str)]


@pytest.mark.integration
def test_the_check_blocks_with_masked_examples_when_a_guarding_rule_fails(
    staged_lake: Lake, tmp_path: Path
) -> None:
    lake = Lake(tmp_path / "lake")
    shutil.copytree(staged_lake.root, lake.root)
    part = sorted(staged_dir(lake, "district_registry").glob("date=*/data.parquet"))[-1]
    frame = read_parquet(part)
    rows = (frame["id_number"].is_not_null() & frame["birth_date"].is_not_null()).arg_true()[:3].to_list()
    for r in rows:  # a phone not in its staged form (ERROR) and a birth date off its ID (WARN)
        frame = _set(frame, r, phone="+86 13812345678", birth_date=frame["birth_date"][r] - timedelta(days=2))
    frame.write_parquet(part)
    daily = daily_partitions("2026-11-01")
    table = REG.table("district_registry")
    check = _check_for("district_registry", daily)
    asset = build_staged_asset(REG.system_of(table.name), table, REG, daily)
    result = dg.materialize(
        [asset, check],
        resources={"lake": LakeResource(root=str(lake.root))},
        selection=dg.AssetSelection.checks(check),
        raise_on_error=False,
    )
    assert not result.success  # blocking: an ERROR fails the step
    (evaluation,) = result.get_asset_check_evaluations()
    assert evaluation.check_name == CHECK_NAME and not evaluation.passed
    assert evaluation.severity == dg.AssetCheckSeverity.ERROR
    md = evaluation.metadata
    assert _value(md, "failed_error_rules") >= 1 and _value(md, "failed_warn_rules") >= 1
    texts = [t for v in md.values() for t in _texts(v)]
    blob = "\n".join(texts)
    assert "conformance.format.phone" in blob and "consistency.id_birth_date" in blob
    assert "138****5678" in blob  # the example is there, masked
    assert not ID18.search(blob) and not MOBILE11.search(blob)
    assert all(frame["name"][r] not in blob for r in rows)
    assert Path(_value(md, "quality_report")).exists()
    report = Path(_value(md, "quality_report")).read_text(encoding="utf-8")
    assert "conformance.format.phone" in report
    assert not ID18.search(report) and not MOBILE11.search(report)
    history = read_history(lake)
    assert set(history["table"]) == {"district_registry"} and set(history["partition"]) == {"all"}


@pytest.mark.integration
def test_the_check_of_an_event_table_validates_the_run_partition_and_passes(
    staged_lake: Lake, tmp_path: Path
) -> None:
    lake = Lake(tmp_path / "lake")
    shutil.copytree(staged_lake.root, lake.root)
    daily = daily_partitions("2026-11-01")
    table = REG.table("meal_transactions")
    check = _check_for(table.name, daily)
    asset = build_staged_asset(REG.system_of(table.name), table, REG, daily)
    result = dg.materialize(
        [asset, check], resources={"lake": LakeResource(root=str(lake.root))}, partition_key="2026-11-04"
    )
    assert result.success
    (evaluation,) = result.get_asset_check_evaluations()
    assert evaluation.passed
    assert evaluation.metadata["partitions_validated"].value == ["2026-11-04"]
    rows = _staged(lake, "meal_transactions").filter(pl.col("_delivery_date") == date(2026, 11, 4)).height
    assert evaluation.metadata["dagster/row_count"].value == rows


def test_quality_result_reports_failures_by_severity(screenings: pl.DataFrame) -> None:
    row = screenings["id_birth_date"].is_not_null().arg_true()[0]
    earlier = screenings["birth_date"][row] - timedelta(days=1)
    result: QualityResult = validate(
        _set(screenings, row, instrument="XYZ", birth_date=earlier), "screenings", REG
    )
    assert [o.rule_id for o in result.failed("ERROR")] == ["conformance.codelist.instrument"]
    assert [o.rule_id for o in result.failed("WARN")] == ["consistency.id_birth_date"]


@pytest.mark.slow
def test_the_nightly_build_with_the_checks_wired_in_passes_them_all(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The checks as wired in pipelines.definitions, over a real nightly build."""
    from pipelines.instance import run_nightly

    lake = Lake(tmp_path / "lake")
    # run_nightly sets $DAGSTER_HOME; set it here first so the test restores it afterwards
    monkeypatch.setenv("DAGSTER_HOME", str(lake.dagster_home))
    generate(GeneratorConfig(elders=600, days=5), lake)
    assert run_nightly(lake)
    with dg.DagsterInstance.from_config(str(lake.dagster_home)) as instance:
        for _, table in REG.tables():
            key = dg.AssetCheckKey(dg.AssetKey(["staged", table.name]), CHECK_NAME)
            record = instance.event_log_storage.get_latest_asset_check_execution_by_key([key])[key]
            assert record.status.value == "SUCCEEDED", table.name
    assert report_path(lake).exists()
    # every staged, library and contract-checked mart table has its scores in the history
    checked = {t.name for _, t in REG.tables()} | {t.name for _, t in REG.derived_tables("library")}
    checked |= {"elder_portrait", "elder_risk_tags", "elder_scenarios", "kpi_values"}
    assert set(read_history(lake)["table"]) == checked


def test_history_read_again_sees_a_partition_recorded_again(staged_lake: Lake, tmp_path: Path) -> None:
    """read_history keeps files it has read in memory; a file replaced since is read again."""
    lake = Lake(tmp_path / "lake")
    df = _staged(staged_lake, "screenings")
    whole = validate(df, "screenings", REG, partition="all")
    fewer = validate(df.head(2), "screenings", REG, partition="all")
    assert whole.rows != fewer.rows
    record_results(lake, REG, [whole], run_date=date(2026, 11, 12))
    assert set(read_history(lake)["rows"]) == {whole.rows}
    record_results(lake, REG, [fewer], run_date=date(2026, 11, 12))  # replaces the same file
    assert set(read_history(lake)["rows"]) == {fewer.rows}


@pytest.mark.integration
def test_a_dated_list_is_validated_by_the_dates_its_run_staged(staged_lake: Lake, tmp_path: Path) -> None:
    """muni_elders is not partitioned, but staged per delivery date: its check validates what the
    run staged (older dates as one batch, the newest alone), the newest date when nothing was new,
    and the whole table when the check runs without its asset."""
    lake = Lake(tmp_path / "lake")
    shutil.copytree(staged_lake.root, lake.root)
    table = REG.table("muni_elders")
    parts = staged_dir(lake, table).glob("date=*/data.parquet")
    days = sorted(p.parent.name.removeprefix("date=") for p in parts)
    assert len(days) >= 3
    for p in staged_dir(lake, table).glob("date=*"):  # as if never staged: every date is new
        shutil.rmtree(p)
    daily = daily_partitions("2026-11-01")
    check = _check_for("muni_elders", daily)
    asset = build_staged_asset(REG.system_of(table.name), table, REG, daily)
    resources = {"lake": LakeResource(root=str(lake.root))}
    with dg.DagsterInstance.ephemeral() as instance:

        def evaluate(selection: dg.AssetSelection) -> dg.AssetCheckEvaluation:
            result = dg.materialize(
                [asset, check],
                resources=resources,
                selection=selection,
                instance=instance,
                raise_on_error=False,
            )
            (evaluation,) = result.get_asset_check_evaluations()
            return evaluation

        def validated(evaluation: dg.AssetCheckEvaluation) -> list[str]:
            return list(_value(evaluation.metadata, "partitions_validated"))

        everything = dg.AssetSelection.assets(asset) | dg.AssetSelection.checks(check)
        first = evaluate(everything)
        assert validated(first) == [f"{days[0]}..{days[-2]}", days[-1]] and first.passed
        assert "validation_reused" not in first.metadata
        records = sorted(history_dir(lake).rglob("*.parquet"))
        # nothing new: the newest list's validation of the first run stands, GX does not run again
        again = evaluate(everything)
        assert validated(again) == [days[-1]] and again.passed
        assert _value(again.metadata, "validation_reused")["partition"] == days[-1]
        assert sorted(history_dir(lake).rglob("*.parquet")) == records  # nothing recorded
        # ... and so does its verdict: a guarding rule recorded as failed fails the check again
        newest = next(p for p in records if f"/{days[-1]}/" in p.as_posix() and "muni_elders" in p.as_posix())
        one = pl.col("rule_id") == pl.col("rule_id").first()
        failed = pl.read_parquet(newest).with_columns(
            success=pl.when(one).then(False).otherwise("success"),
            evaluated=pl.lit(True),
            severity=pl.when(one).then(pl.lit("ERROR")).otherwise("severity"),
        )
        failed.write_parquet(newest)
        blocked = evaluate(everything)
        assert not blocked.passed and blocked.severity == dg.AssetCheckSeverity.ERROR
        assert validated(evaluate(dg.AssetSelection.checks(check))) == ["all"]

"""The library zone: master elder index tables, golden record, facts, reconciliation, checks."""

from __future__ import annotations

import shutil
from datetime import date, datetime
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from assets.library.build import (
    ContractMismatch,
    as_of_date,
    bind_as_of,
    build_library,
    check_columns,
    create_library_views,
    library_order,
    sql_path,
)
from assets.library.golden import load_rules, provenance_sql, validate_rules
from assets.library.mei import read_decisions, read_key_changes, record_decision
from assets.library.records import elder_tables
from quality.library_checks import SERVICE_SOURCES, validate_derived
from rainbow.settings import Lake
from rainbow.warehouse import connect_warehouse
from sample_data.scoring import score_golden
from sample_data.truth import read_truth
from schemas import load_registry
from tests.lakefiles import read_parquet

REG = load_registry()


def read(lake: Lake, table: str) -> pl.DataFrame:
    return read_parquet(lake.library / table / "data.parquet")


def as_of(lake: Lake) -> date:
    """The as-of date, read from the staged files' statistics - checked against the maximum
    delivery date of every staged row (what it stands for)."""
    value = as_of_date(lake, REG)
    parts = [f"SELECT max(_delivery_date) AS d FROM staged.{t.name}" for _, t in REG.tables()]
    with connect_warehouse(lake, read_only=True) as con:
        row = con.execute(f"SELECT max(d) FROM ({' UNION ALL '.join(parts)})").fetchone()
    assert row is not None and value is not None and date.fromisoformat(value) == row[0]
    return date.fromisoformat(value)


@pytest.fixture()
def lake_copy(library_lake: Lake, tmp_path: Path) -> Lake:
    lake = Lake(tmp_path / "lake")
    shutil.copytree(library_lake.root, lake.root)
    return lake


# ------------------------------------------------------------------ contracts


def test_every_library_table_has_a_contract_and_sql_tables_their_sql_file() -> None:
    tables = [t for _, t in REG.derived_tables("library")]
    assert {d.name for d in REG.datasets if d.zone == "library"} >= {
        "mei",
        "basics",
        "services",
        "health",
        "providers",
        "workforce",
        "supervision",
    }
    for t in tables:
        assert sql_path(t).exists() == (t.build == "sql"), t.name
    sql_files = {p.stem for p in sql_path("x").parent.glob("*.sql")}
    assert sql_files == {t.name for t in tables if t.build == "sql"}
    order = [t.name for t in library_order(REG)]
    assert sorted(order) == sorted(t.name for t in tables)
    for t in tables:  # every library upstream is built before the table
        assert all(order.index(u) < order.index(t.name) for u in t.upstream if u in order), t.name


def test_survivorship_rules_name_real_columns_and_a_bad_rule_is_refused() -> None:
    validate_rules(load_rules(), REG)
    bad = load_rules().model_copy(
        update={
            "attributes": {
                **load_rules().attributes,
                "phone": load_rules().attributes["phone"].model_copy(update={"sources": ["facilities.nope"]}),
            }
        }
    )
    with pytest.raises(ValueError, match="facilities has no column 'nope'"):
        provenance_sql(REG, bad)


def test_a_built_table_must_match_its_contract() -> None:
    table = REG.derived("dim_facility")
    duck = {"string": "VARCHAR", "integer": "INTEGER", "decimal": "DOUBLE", "date": "DATE"}
    duck |= {"timestamp": "TIMESTAMP", "boolean": "BOOLEAN"}
    good = [(c.name, duck[c.type]) for c in table.columns]
    check_columns(table, good)
    with pytest.raises(ContractMismatch, match="differ from the contract"):
        check_columns(table, good[:-1])
    with pytest.raises(ContractMismatch, match="beds is VARCHAR"):
        check_columns(table, [(n, "VARCHAR" if n == "beds" else t) for n, t in good])


# ------------------------------------------------------------------ golden record


def test_golden_record_matches_the_generators_truth(library_lake: Lake) -> None:
    score = score_golden(library_lake, as_of(library_lake))
    for attr in ("sex", "birth_date", "id_number", "living_arrangement"):
        assert score[attr] >= 0.999, (attr, score)
    for attr in ("name", "street", "status"):
        assert score[attr] >= 0.99, (attr, score)
    assert score["filled_id_number"] >= 0.97 and score["filled_street"] >= 0.97


def test_one_golden_record_per_elder_with_provenance_for_every_attribute(library_lake: Lake) -> None:
    elders = read(library_lake, "dim_elder")
    links = read(library_lake, "elder_links")
    prov = read(library_lake, "elder_attribute_provenance")
    assert elders["elder_key"].is_unique().all()
    assert set(elders["elder_key"]) == set(links["elder_key"])
    # every non-null surviving attribute has exactly one provenance row naming a linked record
    assert prov.select("elder_key", "attribute").is_unique().all()
    assert prov.join(links, on="record_id", how="anti").height == 0
    check = prov.join(links.select("record_id", pl.col("elder_key").alias("owner")), on="record_id")
    assert (check["elder_key"] == check["owner"]).all()
    for attr in ("name", "id_number", "street", "living_arrangement"):
        have = elders.filter(pl.col(attr).is_not_null()).height
        assert prov.filter(pl.col("attribute") == attr).height == have, attr
    # birth dates and sexes come from the validated ID whenever the elder has one
    with_id = set(elders.filter(pl.col("id_number").is_not_null())["elder_key"])
    by_id = prov.filter(pl.col("attribute").is_in(["sex", "birth_date"]) & pl.col("elder_key").is_in(with_id))
    assert by_id.height > 0 and (by_id["rule"] == "validated_id").all()
    assert elders.filter(pl.col("status") == "ACTIVE")["age"].min() >= 55  # type: ignore[operator]


def test_provenance_names_the_latest_record_of_the_winning_value(library_lake: Lake) -> None:
    """A winning value seen in many records of its source (a meal user's transactions, a
    registry's monthly snapshots) names the latest of them, by observation time and then record
    id, and that record's time - checked against the staged rows themselves (the query combines
    each table's records per elder and value before it ranks them)."""
    links = read(library_lake, "elder_links").select("record_id", "elder_key")
    prov = read(library_lake, "elder_attribute_provenance")
    checked = repeated = 0
    for table in ("meal_transactions", "district_registry"):
        staged = read_parquet(library_lake.staged / table / "**" / "*.parquet").select(
            pl.format("{}:{}:{}", pl.lit(table), "_source_file", "_row_number").alias("record_id"),
            pl.col("name").cast(pl.String).alias("value"),
            pl.col("_delivery_date").cast(pl.Datetime("us")).alias("observed_at"),
        )
        latest = (
            staged.join(links, on="record_id")
            .sort("observed_at", "record_id")
            .group_by("elder_key", "value")
            .agg(latest=pl.col("record_id").last(), at=pl.col("observed_at").last(), n=pl.len())
        )
        won = prov.filter((pl.col("attribute") == "name") & (pl.col("source_table") == table)).join(
            latest, on=["elder_key", "value"], how="left"
        )
        assert won.height > 0 and won["latest"].null_count() == 0, table
        assert (won["record_id"] == won["latest"]).all(), table
        assert (won["observed_at"].cast(pl.Datetime("us")) == won["at"]).all(), table
        checked += won.height
        repeated += won.filter(pl.col("n") > 1).height
    assert checked > 100 and repeated > 100  # values seen more than once: there is a latest to choose


def test_deaths_are_life_events_and_deceased_still_served_is_a_reconciliation_issue(
    library_lake: Lake,
) -> None:
    elders = read(library_lake, "dim_elder")
    events = read(library_lake, "elder_life_events")
    deceased = elders.filter(pl.col("status") == "DECEASED")
    assert deceased.height > 0
    deaths = events.filter(pl.col("event_type") == "DEATH")
    assert set(deaths["elder_key"]) == set(deceased["elder_key"])
    assert events.filter(pl.col("event_type") == "REGISTERED").height > 0.9 * elders.height

    # every planted "deceased still served" whose death the municipal platform reported is found
    truth_links = read_truth(library_lake.truth, "links").select(
        pl.col("table").alias("source_table"), "source_file", pl.col("row_number").cast(pl.Int64), "person_id"
    )
    key_of = (
        read(library_lake, "elder_links")
        .join(truth_links, on=["source_table", "source_file", "row_number"])
        .group_by("person_id")
        .agg(pl.col("elder_key").mode().first())
    )
    planted = (
        read_truth(library_lake.truth, "incidents")
        .filter(pl.col("kind") == "deceased_still_served")
        .join(key_of, on="person_id")
        .filter(pl.col("elder_key").is_in(deceased["elder_key"].to_list()))
    )
    issues = read(library_lake, "reconciliation_issues")
    found = set(issues.filter(pl.col("issue_type") == "DECEASED_SERVED")["elder_key"])
    assert planted.height > 0
    assert set(planted["elder_key"]) <= found
    assert issues["issue_id"].is_unique().all()
    assert {"ONLY_MUNICIPAL", "ONLY_DISTRICT", "ATTRIBUTE_CONFLICT"} <= set(issues["issue_type"])


# ------------------------------------------------------------------ counts and checks


def test_counts_reconcile_from_staged_to_library(library_lake: Lake) -> None:
    with connect_warehouse(library_lake, read_only=True) as con:
        staged = {t.name: con.execute(f"SELECT count(*) FROM staged.{t.name}").fetchone()[0] for t in elder_tables(REG)}  # type: ignore[index]  # noqa: E501
        services = {s: con.execute(f"SELECT count(*) FROM staged.{s}").fetchone()[0] for s in SERVICE_SOURCES}  # type: ignore[index]
    links = read(library_lake, "elder_links")
    assert links.group_by("source_table").len().sort("source_table").rows() == sorted(
        (k, v) for k, v in staged.items() if v
    )
    assert links["elder_key"].null_count() == 0
    facts = read(library_lake, "fact_service_event")
    assert dict(facts.group_by("source_table").len().rows()) == {k: v for k, v in services.items() if v}
    assert facts["service_event_id"].is_unique().all()
    assert facts["elder_key"].null_count() / facts.height < 0.01


def test_every_library_rule_passes_on_the_built_library(library_lake: Lake) -> None:
    day = as_of(library_lake)
    with connect_warehouse(library_lake, read_only=True) as con:
        bind_as_of(con, day.isoformat())
        failed = {
            (t.name, o.rule_id): o.unexpected_count
            for _, t in REG.derived_tables("library")
            for r in validate_derived(con, t, REG, day)
            for o in r.failed("ERROR")
        }
    assert failed == {}


def test_library_rules_catch_a_broken_golden_record(lake_copy: Lake) -> None:
    path = lake_copy.library / "dim_elder" / "data.parquet"
    elders = read_parquet(path)
    broken = pl.concat([elders, elders.head(1)]).with_columns(
        sex=pl.when(pl.int_range(pl.len()) == 1).then(pl.lit("9")).otherwise(pl.col("sex"))
    )
    broken.write_parquet(path)
    day = as_of(lake_copy)
    with connect_warehouse(lake_copy) as con:
        create_library_views(con, lake_copy, REG)  # the copied views still point at the original lake
        bind_as_of(con, day.isoformat())
        (result,) = validate_derived(con, REG.derived("dim_elder"), REG, day)
    assert {o.rule_id for o in result.failed()} == {"uniqueness.primary_key", "conformance.codelist.sex"}
    assert result.outcome("uniqueness.primary_key").unexpected_count == 2  # both copies of the key
    codes = result.outcome("conformance.codelist.sex")
    assert codes.unexpected_count == 1 and codes.severity == "ERROR"
    (example,) = codes.examples
    assert example["sex"] == "9" and example["elder_key"] != broken["elder_key"][1]  # the key is masked


# ------------------------------------------------------------------ stability and stewards


def test_a_rebuild_renumbers_nobody_and_changes_no_table(
    lake_copy: Lake, monkeypatch: pytest.MonkeyPatch
) -> None:
    import assets.library.mei as mei

    tables = [t.name for _, t in REG.derived_tables("library") if t.name != "elder_key_changes"]
    before = {t: read(lake_copy, t) for t in tables}
    # elder_links written in slices of 997 rows (a district year: 1 M) is the same table
    monkeypatch.setattr(mei, "LINK_SLICE_ROWS", 997)
    build_library(lake_copy, REG, datetime(2026, 12, 11, 2, 0))
    for t in tables:
        assert read(lake_copy, t).equals(before[t]), t
    assert read_key_changes(lake_copy).height == 0


def test_steward_decisions_are_honoured_and_recorded(lake_copy: Lake) -> None:
    queue = read(lake_copy, "match_review_queue")
    assert queue.height > 0 and (queue["status"] == "OPEN").all()
    assert queue["field_weights"].str.contains('"name"').all()
    unlinked = queue.filter(~pl.col("linked") & (pl.col("elder_key_l") != pl.col("elder_key_r")))
    apart = unlinked.row(0, named=True)
    together = queue.filter(pl.col("linked")).row(0, named=True)
    record_decision(lake_copy, apart["record_id_l"], apart["record_id_r"], "match", "张管理员")
    l_id, r_id = together["record_id_l"], together["record_id_r"]
    record_decision(lake_copy, l_id, r_id, "no_match", "张管理员", "不同人")
    # a decision on a record no longer delivered is kept but changes nothing
    ghost = queue.filter(pl.col("linked")).row(1, named=True)
    record_decision(lake_copy, ghost["record_id_l"], "meal_transactions:gone.csv:1", "no_match", "张管理员")
    assert read_decisions(lake_copy).height == 3
    before = read(lake_copy, "elder_links")
    with pytest.raises(ValueError, match="match"):
        record_decision(lake_copy, "a", "b", "maybe", "张管理员")

    build_library(lake_copy, REG, datetime(2026, 12, 11, 2, 0))
    links = read(lake_copy, "elder_links")
    key = dict(zip(links["record_id"], links["elder_key"], strict=True))
    method = dict(zip(links["record_id"], links["link_method"], strict=True))
    assert key[apart["record_id_l"]] == key[apart["record_id_r"]]
    assert "steward" in (method[apart["record_id_l"]], method[apart["record_id_r"]])
    assert key[together["record_id_l"]] != key[together["record_id_r"]]
    assert key[ghost["record_id_l"]] == key[ghost["record_id_r"]]
    ghost_before = before.filter(pl.col("record_id") == ghost["record_id_l"])
    assert links.filter(pl.col("record_id") == ghost["record_id_l"]).equals(ghost_before)
    changes = read_key_changes(lake_copy)
    assert {"merged"} <= set(changes["change"])  # the match merged two previous keys
    assert changes.filter(pl.col("change").is_in(["split", "moved"])).height >= 1  # the no_match split one
    # a second run with the same decisions changes nothing more
    build_library(lake_copy, REG, datetime(2026, 12, 12, 2, 0))
    assert read(lake_copy, "elder_links").equals(links)
    assert read_key_changes(lake_copy).height == changes.height
    decided = read(lake_copy, "match_review_queue").filter(pl.col("status") == "DECIDED")
    assert set(decided["decided_by"]) <= {"张管理员"}


def test_provenance_built_in_elder_ranges_equals_the_single_query(lake_copy: Lake) -> None:
    """Ranges of 300 elders (the district build uses 100,000) give the one-query rows, in order."""
    from assets.library.build import build_provenance, elder_key_ranges

    with connect_warehouse(lake_copy) as con:
        whole = con.sql(provenance_sql(REG)).pl()
        ranges = elder_key_ranges(con, 300)
        assert len(ranges) > 5 and ranges[0][0] == "" and ranges[-1][1] > "E99999999"
        rows = build_provenance(con, lake_copy, REG, per_range=300, incremental=False).rows
    assert rows == whole.height > 10_000
    assert read(lake_copy, "elder_attribute_provenance").equals(whole)


def test_provenance_recomputes_only_affected_elders_and_equals_a_full_build(lake_copy: Lake) -> None:
    """An elder's provenance depends on its own linked records and on the district-wide
    character counts: a run recomputes the elders whose inputs changed and carries the
    others over, and the table always equals the one-query build."""
    from assets.library.build import build_provenance, create_library_views
    from assets.staging.stage import create_staged_views
    from rainbow.io import atomic_path
    from rainbow.parquet import read_frame, write_frame

    def warehouse() -> Any:
        """The copy's warehouse with its views over the copy's files (not the fixture's)."""
        con = connect_warehouse(lake_copy)
        for _, t in REG.tables():
            create_staged_views(con, lake_copy, t)
        create_library_views(con, lake_copy, REG)
        return con

    def build(max_share: float = 1.0) -> Any:
        with warehouse() as con:
            return build_provenance(con, lake_copy, REG, per_range=300, max_share=max_share)

    def full() -> pl.DataFrame:
        with warehouse() as con:
            return con.sql(provenance_sql(REG)).pl()

    def rewrite(path: Path, frame: pl.DataFrame) -> None:
        with atomic_path(path) as tmp:
            write_frame(frame, tmp, lake_copy)

    def elders_delivered(links: pl.DataFrame, source: str, rows: pl.DataFrame) -> set[str]:
        """The elders linked to records of the files ``rows`` (a staged part) came from."""
        files = rows["_source_file"].unique().implode()
        mine = links.filter((pl.col("source_table") == source) & pl.col("source_file").is_in(files))
        return set(mine["elder_key"])

    table = "elder_attribute_provenance"
    before = read(lake_copy, table)
    elders = read(lake_copy, "elder_links")["elder_key"].n_unique()
    multi = set(before.filter((pl.col("attribute") == "name") & (pl.col("candidates") > 1))["elder_key"])
    assert len(multi) > 10

    path = lake_copy.library / table / "data.parquet"
    mtime = path.stat().st_mtime_ns
    same = build()  # nothing changed since the fixture's build: the table is left alone
    assert (same.mode, same.recomputed, same.rows) == ("unchanged", 0, before.height)
    assert path.stat().st_mtime_ns == mtime and read(lake_copy, table).equals(before)
    # a cache of an earlier version, without the character counts: an unchanged run adds them
    from assets.library.build import PROVENANCE_CHARS, provenance_cache
    from rainbow.parquet import file_metadata

    cache = provenance_cache(lake_copy)
    meta = file_metadata(cache, lake_copy)
    with atomic_path(cache) as tmp:
        older = {k: v for k, v in meta.items() if k != PROVENANCE_CHARS}
        write_frame(read_frame(cache, lake_copy), tmp, lake_copy, metadata=older)
    assert PROVENANCE_CHARS not in file_metadata(cache, lake_copy)
    assert build().mode == "unchanged" and path.stat().st_mtime_ns == mtime
    assert file_metadata(cache, lake_copy)[PROVENANCE_CHARS] == meta[PROVENANCE_CHARS]
    # a delivery that names nobody (an empty staged part): the inputs moved, no elder did
    some = sorted((lake_copy.staged / "screenings").glob("date=*/data.parquet"))[-1]
    empty = lake_copy.staged / "screenings" / "date=2026-12-31" / "data.parquet"
    empty.parent.mkdir()
    rewrite(empty, read_frame(some, lake_copy).head(0))
    nobody = build()
    assert (nobody.mode, nobody.recomputed) == ("incremental", 0)
    assert read(lake_copy, table).equals(before)
    empty.unlink()
    empty.parent.rmdir()

    # 1. a corrected re-delivery: the newest registry snapshot restaged with other living
    #    arrangements (it names most elders: by default that is a full build, see the end)
    part = sorted((lake_copy.staged / "district_registry").glob("date=*/data.parquet"))[-1]
    rows = read_frame(part, lake_copy)
    rewrite(part, rows.with_columns(pl.col("living_arrangement").reverse()))
    links = read(lake_copy, "elder_links")
    in_part = elders_delivered(links, "district_registry", rows)
    corrected = build()
    assert corrected.mode == "incremental" and corrected.recomputed == len(in_part) < elders
    after = read(lake_copy, table)
    assert after.equals(full()) and not after.equals(before)

    # 2. names changed in a meal part: its elders, and (character counts moved) the elders
    #    choosing between spellings that the new counts order otherwise, are recomputed
    meals = sorted((lake_copy.staged / "meal_transactions").glob("date=*/data.parquet"))[-1]
    rows = read_frame(meals, lake_copy)
    rewrite(
        meals,
        rows.with_columns(name=pl.when(pl.int_range(pl.len()) < 5).then(pl.lit("龘靐")).otherwise("name")),
    )
    eaters = elders_delivered(links, "meal_transactions", rows)
    renamed = build()
    assert renamed.mode == "incremental" and len(eaters) <= renamed.recomputed < len(eaters | multi)
    assert "order otherwise" in renamed.reason
    assert read(lake_copy, table).equals(full())

    # 3. a steward merge: one elder's records move to another key
    keep, gone = sorted(set(links["elder_key"]) - multi)[:2]
    moved = links.with_columns(
        elder_key=pl.when(pl.col("elder_key") == gone).then(pl.lit(keep)).otherwise("elder_key")
    )
    rewrite(lake_copy.library / "elder_links" / "data.parquet", moved)
    merged = build()
    assert merged.mode == "incremental" and keep in set(read(lake_copy, table)["elder_key"])
    assert gone not in set(read(lake_copy, table)["elder_key"])
    assert read(lake_copy, table).equals(full())
    assert merged.elders == elders - 1

    # above half of the elders affected (the default share), the whole table is built
    rewrite(part, read_frame(part, lake_copy).with_columns(pl.col("living_arrangement").reverse()))
    snapshot = build(max_share=0.5)
    assert snapshot.mode == "full" and snapshot.recomputed == snapshot.elders
    assert read(lake_copy, table).equals(full())


def test_new_character_counts_recompute_only_elders_whose_spellings_they_reorder() -> None:
    """An unchanged elder's name can only change with the district's character counts when two of
    its spellings' plausibilities (their rarest character's count) compare otherwise."""
    import duckdb

    from assets.library.build import CHAR_ROWS_TABLE, CHAR_TABLE, PREVIOUS_CHARS_TABLE, _reordered_sql

    rows = [
        ("E1", "张三", "张三"),
        ("E1", "张叁", "张叁"),  # 叁 overtakes 三: reordered
        ("E2", "李四", "李四"),
        ("E2", "李泗", "李泗"),  # both counts move, 四 stays ahead: not reordered
        ("E3", "王五", "王五"),  # one spelling: nothing to order
        ("E4", "赵六", "赵六"),
        ("E4", "赵陆", "赵陆"),  # a tie broken: reordered
    ]
    before = {
        "张": 100,
        "三": 10,
        "叁": 5,
        "李": 90,
        "四": 30,
        "泗": 2,
        "王": 80,
        "五": 9,
        "赵": 70,
        "六": 4,
        "陆": 4,
    }
    after = {**before, "叁": 12, "四": 31, "泗": 3, "五": 1, "陆": 5}
    con = duckdb.connect()
    columns = "attribute VARCHAR, elder_key VARCHAR, value VARCHAR, ch VARCHAR"
    con.execute(f"CREATE TEMP TABLE {CHAR_ROWS_TABLE} ({columns})")
    for elder, value, _ in rows:
        for ch in value:
            con.execute(f"INSERT INTO {CHAR_ROWS_TABLE} VALUES ('name', ?, ?, ?)", [elder, value, ch])
    for name, counts in ((PREVIOUS_CHARS_TABLE, before), (CHAR_TABLE, after)):
        con.execute(f"CREATE TEMP TABLE {name} (attribute VARCHAR, ch VARCHAR, people BIGINT)")
        con.executemany(f"INSERT INTO {name} VALUES ('name', ?, ?)", list(counts.items()))
    flipped = sorted(r[0] for r in con.execute(_reordered_sql()).fetchall())
    assert flipped == ["E1", "E4"]

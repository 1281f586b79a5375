"""landing -> raw: discovery, duplicates by checksum, idempotent reruns, reconciliation."""

from __future__ import annotations

import hashlib
import os
import shutil
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest

from assets.ingest.ledger import ledger_files, ledger_path, read_ledger, write_ledger
from assets.ingest.raw import (
    discover_files,
    ingest_table,
    parse_delivery_name,
    pending_deliveries,
    raw_part_paths,
    reconcile_table,
    template_glob,
)
from rainbow.settings import Lake
from rainbow.warehouse import connect_warehouse
from schemas import load_registry
from schemas.contract import Table
from tests.lakefiles import content_digest, read_parquet

T0 = datetime(2024, 11, 6, 2, 0, tzinfo=UTC)


def table(name: str) -> Table:
    return load_registry().table(name)


def write_meal_csv(lake: Lake, day: str, n: int, broken: int = 0, name: str | None = None) -> Path:
    t = table("meal_transactions")
    lines = [",".join(c.source for c in t.columns)]
    lines += [
        f"T{day}{i:03d},C{i},张{i},,P01,长者食堂,2024/11/5 11:30:00,午餐,15.00,10,5.00,敬老卡"
        for i in range(n)
    ]
    lines += [f"T{day}B{i},截断" for i in range(broken)]
    path = lake.landing / "meal_aid" / (name or f"meal_txn_{day}.csv")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(("\r\n".join(lines) + "\r\n").encode("gbk"))
    return path


def tree_digest(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture
def lake(tmp_path: Path) -> Lake:
    return Lake(tmp_path / "lake")


def test_template_becomes_glob_and_name_parser() -> None:
    template = "district/registry_{street}_{date:%Y%m}.xlsx"
    assert template_glob(template) == "district/registry_*_*.xlsx"
    name = parse_delivery_name(template, "district/registry_殷行街道_202411.xlsx")
    assert name is not None
    assert name.delivered_date == date(2024, 11, 1)
    assert name.fields == {"street": "殷行街道"}
    assert name.suffix == ""
    resend = parse_delivery_name(template, "district/registry_殷行街道_202411_重发.xlsx")
    assert resend is not None and resend.suffix == "_重发" and resend.fields == {"street": "殷行街道"}
    assert parse_delivery_name(template, "district/registry_殷行街道_2024.xlsx") is None
    assert parse_delivery_name(template, "district/registry_殷行街道_202413.xlsx") is None  # month 13
    daily = parse_delivery_name("meal_aid/meal_txn_{date:%Y%m%d}.csv", "meal_aid/meal_txn_20241105.csv")
    assert daily is not None and daily.delivered_date == date(2024, 11, 5)


def test_discovery_puts_canonical_names_first_and_reports_misfits(lake: Lake) -> None:
    write_meal_csv(lake, "20241105", 1, name="meal_txn_20241105_重发.csv")
    write_meal_csv(lake, "20241105", 1)
    write_meal_csv(lake, "20241104", 1)
    write_meal_csv(lake, "2024110", 1)  # meal_txn_2024110.csv: date too short
    found = discover_files(lake, table("meal_transactions"))
    assert [p.name for p, _ in found.files] == [
        "meal_txn_20241104.csv",
        "meal_txn_20241105.csv",
        "meal_txn_20241105_重发.csv",
    ]
    assert found.unmatched == ["meal_aid/meal_txn_2024110.csv"]


def test_when_a_file_is_resent_then_it_is_skipped_by_checksum(lake: Lake) -> None:
    t = table("meal_transactions")
    original = write_meal_csv(lake, "20241105", 3)
    shutil.copy(original, original.with_name("meal_txn_20241105_重发.csv"))
    (lake.landing / "meal_aid" / "copy").mkdir()
    shutil.copy(original, lake.landing / "meal_aid" / "copy" / original.name)  # not on the template's path

    report = ingest_table(lake, t, T0)

    assert [(f.source_file, f.status) for f in report.files] == [
        ("meal_aid/meal_txn_20241105.csv", "ingested"),
        ("meal_aid/meal_txn_20241105_重发.csv", "duplicate"),
    ]
    assert report.duplicates[0].duplicate_of == "meal_aid/meal_txn_20241105.csv"
    assert report.raw_rows_total == 3
    assert len(raw_part_paths(lake, t)) == 1
    ledger = read_ledger(lake, t.name)
    assert ledger.get_column("status").to_list() == ["ingested", "duplicate"]
    assert ledger.get_column("file_sha256").n_unique() == 1

    # a later resend of the same bytes under yet another name: duplicate again, never doubled
    shutil.copy(original, original.with_name("meal_txn_20241105 (1).csv"))
    again = ingest_table(lake, t, T0 + timedelta(days=1))
    assert [f.status for f in again.files] == ["duplicate"]
    assert again.known_files == 2
    assert again.raw_rows_total == 3


def test_when_rerun_without_new_files_then_outputs_are_byte_identical(lake: Lake) -> None:
    t = table("meal_transactions")
    write_meal_csv(lake, "20241104", 2, broken=1)
    write_meal_csv(lake, "20241105", 3)
    first = ingest_table(lake, t, T0)
    assert [f.status for f in first.files] == ["ingested", "ingested"]
    before = tree_digest(lake.raw)

    second = ingest_table(lake, t, T0 + timedelta(hours=5))

    assert second.files == ()
    assert second.known_files == 2
    assert tree_digest(lake.raw) == before
    # a new day adds one part and keeps the first ingestion time of the others
    write_meal_csv(lake, "20241106", 1)
    third = ingest_table(lake, t, T0 + timedelta(days=1))
    assert [f.source_file for f in third.files] == ["meal_aid/meal_txn_20241106.csv"]
    raw = read_parquet(lake.raw / t.name / "*.parquet")
    by_file = dict(raw.group_by("_source_file").agg(pl.col("_ingested_at").max()).iter_rows())
    assert by_file["meal_aid/meal_txn_20241104.csv"] == T0
    assert by_file["meal_aid/meal_txn_20241106.csv"] == T0 + timedelta(days=1)


def test_when_a_part_is_lost_then_the_rerun_rewrites_it_identically(lake: Lake) -> None:
    t = table("meal_transactions")
    write_meal_csv(lake, "20241105", 3, broken=1)
    ingest_table(lake, t, T0)
    before = content_digest(lake.raw)  # by content: a rewrite draws fresh encryption nonces
    (part,) = raw_part_paths(lake, t)
    part.unlink()

    report = ingest_table(lake, t, T0 + timedelta(days=2))

    assert report.healed == ("meal_aid/meal_txn_20241105.csv",)
    assert content_digest(lake.raw) == before


def test_delivered_rows_reconcile_with_raw_and_broken_rows_per_file(lake: Lake) -> None:
    t = table("meal_transactions")
    write_meal_csv(lake, "20241104", 4, broken=2)
    write_meal_csv(lake, "20241105", 0)  # header only

    report = ingest_table(lake, t, T0)

    counts = {f.source_file: (f.delivered_rows, f.raw_rows, f.broken_rows) for f in report.files}
    assert counts == {
        "meal_aid/meal_txn_20241104.csv": (6, 4, 2),
        "meal_aid/meal_txn_20241105.csv": (0, 0, 0),
    }
    assert report.reconciles
    broken = read_parquet(lake.raw / t.name / "_broken" / "*.parquet")
    assert broken.get_column("_row_number").to_list() == [5, 6]
    assert broken.get_column("_raw_text").to_list() == ["T20241104B0,截断", "T20241104B1,截断"]
    raw = read_parquet(raw_part_paths(lake, t)[0])
    assert raw.get_column("_row_number").to_list() == [1, 2, 3, 4]
    assert set(raw.get_column("_file_sha256").to_list()) == {report.files[0].file_sha256}
    assert raw.columns[-5:] == ["_extra", "_source_file", "_row_number", "_file_sha256", "_ingested_at"]

    ok = reconcile_table(lake, t)
    assert ok.passed and ok.files_checked == 2

    # tamper: a part losing rows, and a part the ledger does not know, both fail reconciliation
    part = next(p for p in raw_part_paths(lake, t) if "20241104" in p.name)
    read_parquet(part).head(3).write_parquet(part)
    read_parquet(part).write_parquet(part.with_name("stray-00000000.parquet"))
    bad = reconcile_table(lake, t)
    assert not bad.passed
    assert [m["source_file"] for m in bad.mismatches] == ["meal_aid/meal_txn_20241104.csv"]
    assert bad.orphan_parts == ("raw/meal_transactions/stray-00000000.parquet",)


def test_when_a_file_cannot_be_read_then_it_fails_and_is_retried(lake: Lake) -> None:
    t = table("meal_transactions")
    write_meal_csv(lake, "20241104", 2)
    garbage = lake.landing / "meal_aid" / "meal_txn_20241105.csv"
    garbage.write_text("this is not the meal export\n", encoding="utf-8")

    report = ingest_table(lake, t, T0)

    assert [(f.source_file, f.status) for f in report.files] == [
        ("meal_aid/meal_txn_20241104.csv", "ingested"),
        ("meal_aid/meal_txn_20241105.csv", "failed"),
    ]
    assert "no header row" in (report.failed[0].error or "")
    assert read_ledger(lake, t.name).height == 1
    retry = ingest_table(lake, t, T0 + timedelta(days=1))
    assert [f.status for f in retry.files] == ["failed"]


def test_when_the_same_path_is_redelivered_with_new_content_then_both_versions_are_kept(lake: Lake) -> None:
    t = table("meal_transactions")
    write_meal_csv(lake, "20241105", 2)
    ingest_table(lake, t, T0)
    write_meal_csv(lake, "20241105", 3)  # corrected export, same name

    report = ingest_table(lake, t, T0 + timedelta(days=1))

    assert [f.status for f in report.files] == ["ingested"]
    assert len(raw_part_paths(lake, t)) == 2
    assert report.raw_rows_total == 5


def test_now_must_be_timezone_aware(lake: Lake) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        ingest_table(lake, table("meal_transactions"), datetime(2024, 11, 6, 2, 0))


def test_json_dump_ingest_keeps_the_declared_total(lake: Lake) -> None:
    t = table("muni_elders")
    path = lake.landing / "municipal" / "elders_20241105.json"
    path.parent.mkdir(parents=True)
    path.write_text(
        '{"code": 0, "msg": "ok", "data": {"total": 3, "records": ['
        '{"lrbh": "E1", "xm": "周九", "ryzt": "正常", "gxsj": "2024-11-05 10:00:00"},'
        '{"lrbh": "E2", "xm": "吴十", "ryzt": "正常", "gxsj": "2024-11-05 10:01:00"}]}}',
        encoding="utf-8",
    )
    report = ingest_table(lake, t, T0)
    assert report.files[0].declared_total == 3
    rec = reconcile_table(lake, t)
    assert rec.passed
    assert rec.declared_total_mismatches == (
        {"source_file": "municipal/elders_20241105.json", "declared_total": 3, "records": 2},
    )


def test_header_only_files_of_other_days_are_deliveries_not_duplicates(lake: Lake) -> None:
    t = table("meal_transactions")
    first = write_meal_csv(lake, "20241104", 0)
    write_meal_csv(lake, "20241105", 0)  # same bytes, another day: that day's empty delivery
    shutil.copy(first, first.with_name("meal_txn_20241104(1).csv"))  # a copy: duplicate

    report = ingest_table(lake, t, T0)

    assert [(f.source_file, f.status) for f in report.files] == [
        ("meal_aid/meal_txn_20241104.csv", "ingested"),
        ("meal_aid/meal_txn_20241104(1).csv", "duplicate"),
        ("meal_aid/meal_txn_20241105.csv", "ingested"),
    ]
    assert report.raw_rows_total == 0
    assert reconcile_table(lake, t).passed


D4, D5, D6 = date(2024, 11, 4), date(2024, 11, 5), date(2024, 11, 6)


def test_when_limited_to_dates_then_only_their_files_are_ingested_with_a_ledger_file_per_day(
    lake: Lake,
) -> None:
    t = table("meal_transactions")
    write_meal_csv(lake, "20241104", 2)
    d5 = write_meal_csv(lake, "20241105", 3, broken=1)
    shutil.copy(d5, d5.with_name("meal_txn_20241105(1).csv"))
    write_meal_csv(lake, "20241106", 4)

    report = ingest_table(lake, t, T0, dates=[D5])

    assert [(f.source_file, f.status, f.delivered_date) for f in report.files] == [
        ("meal_aid/meal_txn_20241105.csv", "ingested", D5),
        ("meal_aid/meal_txn_20241105(1).csv", "duplicate", D5),
    ]
    assert report.dates == (D5,)
    assert report.per_date() == [
        {
            "date": "2024-11-05",
            "files_ingested": 1,
            "duplicates_skipped": 1,
            "files_failed": 0,
            "files_already_known": 0,
            "rows_ingested": 3,
            "broken_rows": 1,
            "date_rows": 3,
        }
    ]
    assert ledger_files(lake, t.name) == [ledger_path(lake, t.name, D5)]
    assert not ledger_path(lake, t.name).exists()  # no single ledger file for a partitioned table
    # the other days are still pending (path, size, mtime), the ingested day's files are not
    assert {(f.source_file, f.delivered_date) for f in pending_deliveries(lake, t)} == {
        ("meal_aid/meal_txn_20241104.csv", D4),
        ("meal_aid/meal_txn_20241106.csv", D6),
    }

    # a range of days in one call: only the new days are read, the known one is counted per date
    ranged = ingest_table(lake, t, T0 + timedelta(hours=1), dates=[D4, D5, D6])
    assert [f.source_file for f in ranged.files] == [
        "meal_aid/meal_txn_20241104.csv",
        "meal_aid/meal_txn_20241106.csv",
    ]
    per_date = {r["date"]: r for r in ranged.per_date()}
    assert per_date["2024-11-05"]["files_already_known"] == 2
    assert per_date["2024-11-05"]["date_rows"] == 3
    assert per_date["2024-11-06"]["rows_ingested"] == 4
    assert ranged.rows_in_dates == 2 + 3 + 4 == ranged.raw_rows_total
    assert ledger_files(lake, t.name) == [ledger_path(lake, t.name, d) for d in (D4, D5, D6)]
    assert pending_deliveries(lake, t) == []


def test_when_a_day_is_rerun_then_nothing_changes_byte_for_byte(lake: Lake) -> None:
    t = table("meal_transactions")
    write_meal_csv(lake, "20241104", 2)
    d5 = write_meal_csv(lake, "20241105", 3, broken=1)
    shutil.copy(d5, d5.with_name("meal_txn_20241105(1).csv"))
    ingest_table(lake, t, T0, dates=[D4, D5])
    before = tree_digest(lake.raw)

    again = ingest_table(lake, t, T0 + timedelta(days=1), dates=[D5])

    assert again.files == ()
    assert again.known_files == 2
    assert tree_digest(lake.raw) == before


def test_when_a_resend_lands_under_another_day_then_the_ledger_of_every_day_finds_it(lake: Lake) -> None:
    t = table("meal_transactions")
    d4 = write_meal_csv(lake, "20241104", 3)
    ingest_table(lake, t, T0, dates=[D4])
    day4_ledger = ledger_path(lake, t.name, D4).read_bytes()
    # the vendor re-sends the 4th's export as the 5th's file, then the 4th's again as a "(1)" copy
    shutil.copy(d4, d4.with_name("meal_txn_20241105.csv"))
    shutil.copy(d4, d4.with_name("meal_txn_20241104(1).csv"))

    fifth = ingest_table(lake, t, T0 + timedelta(days=1), dates=[D5])
    fourth = ingest_table(lake, t, T0 + timedelta(days=1), dates=[D4])

    assert [(f.source_file, f.status, f.duplicate_of) for f in fifth.files] == [
        ("meal_aid/meal_txn_20241105.csv", "duplicate", "meal_aid/meal_txn_20241104.csv"),
    ]
    assert [(f.source_file, f.status, f.duplicate_of) for f in fourth.files] == [
        ("meal_aid/meal_txn_20241104(1).csv", "duplicate", "meal_aid/meal_txn_20241104.csv"),
    ]
    assert fourth.raw_rows_total == 3 and len(raw_part_paths(lake, t)) == 1
    assert read_ledger(lake, t.name).get_column("status").to_list() == ["ingested", "duplicate", "duplicate"]
    assert ledger_path(lake, t.name, D4).read_bytes() != day4_ledger  # the (1) copy went to the 4th's file
    assert read_ledger(lake, t.name).filter(pl.col("delivered_date") == D5).height == 1


def test_a_single_ledger_file_of_a_partitioned_table_is_still_read_and_never_doubled(lake: Lake) -> None:
    """Lakes ingested before partitioning keep their one ledger file; new days get their own."""
    t = table("meal_transactions")
    write_meal_csv(lake, "20241104", 2)
    ingest_table(lake, t, T0, dates=[D4])
    old = read_ledger(lake, t.name)
    ledger_path(lake, t.name, D4).unlink()
    write_ledger(lake, t.name, old)  # the pre-partitioning layout: raw/_ledger/meal_transactions.parquet
    write_meal_csv(lake, "20241105", 1)

    report = ingest_table(lake, t, T0 + timedelta(days=1))

    assert [f.source_file for f in report.files] == ["meal_aid/meal_txn_20241105.csv"]
    assert report.known_files == 1
    assert ledger_files(lake, t.name) == [ledger_path(lake, t.name), ledger_path(lake, t.name, D5)]
    assert read_ledger(lake, t.name).get_column("source_file").to_list() == [
        "meal_aid/meal_txn_20241104.csv",
        "meal_aid/meal_txn_20241105.csv",
    ]
    assert reconcile_table(lake, t).passed


def test_an_unpartitioned_table_keeps_one_ledger_file(lake: Lake) -> None:
    t = table("muni_elders")
    assert not t.delivery.partitioned
    path = lake.landing / "municipal" / "elders_20241105.json"
    path.parent.mkdir(parents=True)
    path.write_text('{"code": 0, "data": {"total": 0, "records": []}}', encoding="utf-8")
    ingest_table(lake, t, T0)
    assert ledger_files(lake, t.name) == [ledger_path(lake, t.name)]


@pytest.mark.integration
def test_generated_sample_ingests_and_matches_the_generator_truth(sample_lake: Lake, tmp_path: Path) -> None:
    """Every generated delivery reads; counts, duplicates and broken lines equal the truth."""
    lake = Lake(tmp_path / "lake")
    lake.root.mkdir()
    lake.landing.symlink_to(sample_lake.landing, target_is_directory=True)  # the sample stays read-only
    truth_files = read_parquet(sample_lake.truth / "files" / "*.parquet")
    truth_cut = (
        read_parquet(sample_lake.truth / "faults" / "*.parquet")
        .filter(pl.col("kind") == "truncated_line")
        .select("source_file", pl.col("row_number").cast(pl.Int64))
    )

    for _, t in load_registry().tables():
        report = ingest_table(lake, t, T0)
        assert not report.failed, (t.name, [f.error for f in report.failed])
        assert not report.unmatched, t.name
        assert reconcile_table(lake, t).passed, t.name
        expected = truth_files.filter(pl.col("table") == t.name)
        copies = expected.filter(pl.col("duplicate_of").is_not_null())
        assert {(f.source_file, f.duplicate_of) for f in report.duplicates} == set(
            copies.select("source_file", "duplicate_of").iter_rows()
        ), t.name
        rows = dict(
            expected.filter(pl.col("duplicate_of").is_null()).select("source_file", "rows").iter_rows()
        )
        assert {f.source_file: f.delivered_rows for f in report.ingested} == rows, t.name
        broken = {(f.source_file, n) for f in report.ingested for n in _broken_rows(lake, f.broken_part)}
        cut = {(s, n) for s, n in truth_cut.iter_rows() if s in rows}
        assert broken == cut, t.name


def _broken_rows(lake: Lake, part: str | None) -> list[int]:
    return [] if part is None else read_parquet(lake.root / part).get_column("_row_number").to_list()


def test_views_cover_every_day_and_both_ledger_layouts_and_are_rewritten_only_when_changed(
    lake: Lake,
) -> None:

    from assets.ingest.views import create_raw_views

    meal, elders = table("meal_transactions"), table("muni_elders")
    write_meal_csv(lake, "20241104", 2)
    write_meal_csv(lake, "20241105", 3)
    ingest_table(lake, meal, T0, dates=[D4])
    ingest_table(lake, meal, T0, dates=[D5])
    dump = lake.landing / "municipal" / "elders_20241105.json"
    dump.parent.mkdir(parents=True)
    dump.write_text('{"code": 0, "data": {"total": 1, "records": [{"lrbh": "E1"}]}}', encoding="utf-8")
    ingest_table(lake, elders, T0)
    lake.root.mkdir(exist_ok=True)

    with connect_warehouse(lake) as con:
        assert create_raw_views(con, lake, meal) == [
            "meal_transactions",
            "meal_transactions__broken",
            "ingest_ledger",
        ]
        assert create_raw_views(con, lake, elders) == ["muni_elders", "muni_elders__broken"]
        assert con.sql("select count(*) from raw.meal_transactions").fetchall() == [(5,)]
        ledger = con.sql(
            "select table_name, delivered_date, source_file from raw.ingest_ledger order by all"
        ).fetchall()
    assert ledger == [
        ("meal_transactions", D4, "meal_aid/meal_txn_20241104.csv"),
        ("meal_transactions", D5, "meal_aid/meal_txn_20241105.csv"),
        ("muni_elders", D5, "municipal/elders_20241105.json"),
    ]
    before = hashlib.sha256(lake.warehouse.read_bytes()).hexdigest()
    with connect_warehouse(lake) as con:
        assert create_raw_views(con, lake, meal) == []  # a new day needs no new view: they read globs
    assert hashlib.sha256(lake.warehouse.read_bytes()).hexdigest() == before


def test_files_read_two_at_a_time_give_the_reports_ledger_and_parts_of_one_at_a_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading

    from assets.ingest import raw
    from rainbow.workers import WORKERS_ENV

    t = table("meal_transactions")
    threads: set[str] = set()
    read_one = raw.read_delivery

    def noting_thread(path: Path, tbl: Table) -> object:
        threads.add(threading.current_thread().name)
        return read_one(path, tbl)

    monkeypatch.setattr(raw, "read_delivery", noting_thread)
    seen = {}
    for width in (1, 2):
        lake = Lake(tmp_path / f"width{width}")
        first = write_meal_csv(lake, "20241101", 40, broken=2)
        shutil.copy(first, first.with_name("meal_txn_20241101(1).csv"))  # while the first is read
        for day, n in (("20241102", 30), ("20241103", 0), ("20241104", 0), ("20241105", 25)):
            write_meal_csv(lake, day, n, broken=1 if n else 0)
        (lake.landing / "meal_aid" / "meal_txn_20241106.csv").write_text("not the export\n", encoding="utf-8")
        shutil.copy(first, first.with_name("meal_txn_20241107.csv"))  # a resend under a later day
        for f in (lake.landing / "meal_aid").iterdir():  # the ledger notes each file's mtime
            os.utime(f, ns=(1_730_000_000_000_000_000, 1_730_000_000_000_000_000))
        monkeypatch.setenv(WORKERS_ENV, str(width))
        threads.clear()
        report = ingest_table(lake, t, T0)
        seen[width] = (report, content_digest(lake.raw), set(threads))

    (one, one_raw, one_threads), (two, two_raw, two_threads) = seen[1], seen[2]
    assert [(f.source_file, f.status, f.duplicate_of) for f in one.files] == [
        ("meal_aid/meal_txn_20241101.csv", "ingested", None),
        ("meal_aid/meal_txn_20241101(1).csv", "duplicate", "meal_aid/meal_txn_20241101.csv"),
        ("meal_aid/meal_txn_20241102.csv", "ingested", None),
        ("meal_aid/meal_txn_20241103.csv", "ingested", None),
        ("meal_aid/meal_txn_20241104.csv", "ingested", None),  # header only, another day's
        ("meal_aid/meal_txn_20241105.csv", "ingested", None),
        ("meal_aid/meal_txn_20241106.csv", "failed", None),
        ("meal_aid/meal_txn_20241107.csv", "duplicate", "meal_aid/meal_txn_20241101.csv"),
    ]
    assert two == one  # every file's counts, parts and notes, in discovery order
    assert two_raw == one_raw  # the ledger and every part, by content
    assert one_threads == {threading.current_thread().name} and len(two_threads) == 2

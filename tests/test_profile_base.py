"""The kept grouping of the closed months' person records (assets.library.profile_base): a run
that starts from it gives the profiles a fresh grouping of every record gives, and it is not
used once anything it covers changed."""

from __future__ import annotations

import os
import shutil
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest

from assets.library.identity import (
    PROFILE_KEY,
    Profiled,
    ProfileGrouper,
    profile_person_records,
    profile_records,
)
from assets.library.profile_base import base_folder, profile_lake_records
from assets.library.record_cache import iter_person_records, person_records
from assets.library.records import elder_tables
from assets.staging.stage import ingest_and_stage, staged_dir
from rainbow.settings import Lake
from sample_data.config import GeneratorConfig
from sample_data.generate import generate
from schemas import load_registry

REG = load_registry()
# November closed, December the newest month
SAMPLE = GeneratorConfig(elders=600, days=35)


@pytest.fixture(scope="module")
def staged(tmp_path_factory: pytest.TempPathFactory) -> Lake:
    lake = Lake(tmp_path_factory.mktemp("profile_base") / "lake")
    generate(SAMPLE, lake)
    ingest_and_stage(lake, REG, datetime(2026, 12, 6, tzinfo=UTC), elder_tables(REG))
    return lake


@pytest.fixture()
def lake(staged: Lake, tmp_path: Path) -> Lake:
    copy = Lake(tmp_path / "lake")
    shutil.copytree(staged.root, copy.root, symlinks=True)
    return copy


def fresh(lake: Lake, decisions: pl.DataFrame | None = None) -> Profiled:
    return profile_person_records(
        iter_person_records(lake, REG),
        decisions,
        carry=("_delivery_date",),
        carry_schema={"_delivery_date": pl.Date()},
    )[0]


def assert_same(got: Profiled, want: Profiled) -> None:
    assert got.profiles.equals(want.profiles)
    assert got.records.sort("record_id").equals(want.records.sort("record_id"))


def test_a_new_day_groups_only_the_newest_month_and_gets_the_fresh_profiles(lake: Lake) -> None:
    want = fresh(lake)
    first, _, run = profile_lake_records(lake, REG)
    assert_same(first, want)
    assert run.rewritten and run.kept_chunks == 0 and run.reason == "no kept grouping"
    kept = {p.name for p in base_folder(lake).iterdir()}
    assert kept == {"profiles.parquet", "records.parquet"}
    second, _, run = profile_lake_records(lake, REG)
    assert_same(second, want)
    assert not run.rewritten and run.kept_chunks > 0
    december = want.records.filter(pl.col("_delivery_date") >= pl.date(2026, 12, 1)).height
    assert run.grouped_records == december and 0 < december < want.records.height / 2


def test_a_changed_or_gone_part_of_a_closed_month_is_not_taken_from_the_kept_grouping(lake: Lake) -> None:
    profile_lake_records(lake, REG)
    november = sorted((staged_dir(lake, REG.table("meal_transactions"))).glob("**/date=2026-11-*/*.parquet"))
    assert len(november) > 2
    st = november[0].stat()
    os.utime(november[0], ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # delivered again
    got, _, run = profile_lake_records(lake, REG)
    assert "changed or gone" in run.reason and run.kept_chunks == 0 and run.rewritten
    assert_same(got, fresh(lake))
    delivered = fresh(lake).records.height
    november[1].unlink()
    got, _, run = profile_lake_records(lake, REG)
    assert "changed or gone" in run.reason and "meal_transactions/2026-11" in run.reason
    want = fresh(lake)
    assert_same(got, want)
    assert want.records.height < delivered  # the part's rows are gone
    again, _, run = profile_lake_records(lake, REG)
    assert run.kept_chunks > 0 and not run.rewritten
    assert_same(again, want)


def test_a_new_steward_decision_regroups_and_isolates_its_records(lake: Lake) -> None:
    before, _, _ = profile_lake_records(lake, REG)
    # two November records of one profile: a decision on them isolates both
    twins = (
        before.records.filter(pl.col("_delivery_date") < pl.date(2026, 12, 1))
        .group_by("profile")
        .agg(pl.col("record_id").sort().head(2), pl.len())
        .filter(pl.col("len") > 2)
        .sort("profile")
        .row(0, named=True)
    )
    decisions = pl.DataFrame(
        {
            "record_id_l": [twins["record_id"][0]],
            "record_id_r": [twins["record_id"][1]],
            "decision": ["no_match"],
        }
    )
    got, known, run = profile_lake_records(lake, REG, decisions)
    assert run.reason == "grouping code, carried columns or decisions changed" and run.rewritten
    want = fresh(lake, decisions)
    assert_same(got, want)
    assert known.height == 1 and got.profiles.height == before.profiles.height + 2
    again, _, run = profile_lake_records(lake, REG, decisions)
    assert run.kept_chunks > 0 and not run.rewritten
    assert_same(again, want)


def test_a_grouping_started_from_a_snapshot_equals_one_of_every_chunk(lake: Lake) -> None:
    """Snapshots taken after compactions and before, with records isolated: the same profiles,
    the same record -> profile."""
    records = person_records(lake, REG).sample(fraction=1.0, shuffle=True, seed=3)
    chunks = [records.slice(i, 400) for i in range(0, records.height, 400)]
    twin = (records.group_by(PROFILE_KEY).agg(pl.col("record_id").min(), pl.len()).filter(pl.col("len") > 1))[
        "record_id"
    ][0]
    isolate = pl.Series([twin, "meal_transactions:not-delivered.csv:1"])
    want = profile_records(chunks, isolate, carry=("_delivery_date",), keep_isolated=lambda ids: ids)
    for cut in (1, len(chunks) // 2, len(chunks) - 1):
        for compact_rows in (300, 2_000_000):
            head = ProfileGrouper(isolate, ("_delivery_date",), compact_rows)
            for chunk in chunks[:cut]:
                head.add(chunk)
            tail = ProfileGrouper(isolate, ("_delivery_date",), compact_rows)
            tail.start(head.snapshot())
            for chunk in chunks[cut:]:
                tail.add(chunk)
            got = tail.finish(keep_isolated=lambda ids: ids)
            assert_same(got, want)
    assert want.records.filter(pl.col("record_id") == twin).height == 1
    with pytest.raises(RuntimeError, match="before any chunk"):
        tail.start(head.snapshot())


def test_previous_keys_of_records_in_order_and_in_no_order_are_the_same() -> None:
    """Records in record order (a run started from the kept grouping) and shuffled find the
    same previous keys: null for records new since, none for records gone."""
    import random

    from assets.library.mei import previous_key_of

    rng = random.Random(5)
    ids = sorted(
        {f"t{rng.randint(0, 3)}:f{rng.randint(0, 40)}.csv:{rng.randint(0, 999)}" for _ in range(4000)}
    )
    previous = pl.DataFrame(
        {"record_id": [i for i in ids if rng.random() < 0.8], "elder_key": None},
        schema_overrides={"elder_key": pl.String},
    ).with_columns(elder_key=pl.format("E{}", pl.int_range(pl.len()) % 97))
    previous = previous.sample(fraction=1.0, shuffle=True, seed=1)  # the function sorts it
    records = pl.Series("record_id", [i for i in ids if rng.random() < 0.9] + ["zz:new.csv:1"])
    assert records.is_sorted()
    merged = previous_key_of(records, previous)
    searched = previous_key_of(records.shuffle(seed=3), previous)  # not in order: binary search
    by_id = dict(zip(records.shuffle(seed=3).to_list(), searched.to_list(), strict=True))
    assert merged.to_list() == [by_id[r] for r in records.to_list()]
    known = dict(previous.iter_rows())
    assert merged.to_list() == [known.get(r) for r in records.to_list()]
    assert merged.null_count() > 1 and merged.len() == records.len()


def test_a_run_from_the_kept_grouping_gives_its_records_in_record_order(lake: Lake) -> None:
    profile_lake_records(lake, REG)
    again, _, run = profile_lake_records(lake, REG)
    assert run.kept_chunks > 0
    ids = again.records["record_id"]
    assert ids.to_list() == sorted(ids.to_list())

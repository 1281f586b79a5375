"""Identity resolution (master elder index): hand-made cases, key stability, steward decisions,
a generated sample scored against the truth, and the ``rainbow link`` command."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from stdnum.cn import ric
from typer.testing import CliRunner

from assets.library.identity import (
    LinkResult,
    id_exact_assignments,
    link_records,
    pairwise_scores,
)
from assets.library.identity_keys import assign_keys
from assets.library.identity_model import name_pinyin
from assets.library.record_cache import person_records
from assets.library.records import STANDARD_COLUMNS, elder_tables, normalise_records
from assets.staging.stage import ingest_and_stage
from rainbow.cli import app
from rainbow.settings import Lake
from sample_data.config import GeneratorConfig
from sample_data.generate import generate
from sample_data.truth import read_truth
from schemas import load_registry
from tests.lakefiles import read_parquet

REG = load_registry()


def _id(body17: str) -> str:
    return body17 + ric.calc_check_digit(body17 + "0")  # stdnum wants a placeholder check digit


ID_WANG = _id("31011019450312123")  # 1945-03-12, odd sequence: male
ID_LI = _id("31011019500101224")  # 1950-01-01, female
ID_ZHAO = _id("31011019380707335")
assert all(ric.is_valid(i) for i in (ID_WANG, ID_LI, ID_ZHAO))


def _records(*rows: dict[str, Any]) -> pl.DataFrame:
    return pl.DataFrame(
        [{c: r.get(c) for c in STANDARD_COLUMNS} for r in rows],
        schema=dict.fromkeys(STANDARD_COLUMNS, pl.String),
    )


def _keys(result: LinkResult) -> dict[str, str]:
    return dict(result.assignments.select("record_id", "elder_key").iter_rows())


WANG = {"source": "district_registry", "name": "王秀英", "sex": "1", "birth_date": "1945-03-12"}
BASE = [
    {
        **WANG,
        "record_id": "reg:1",
        "id_number": ID_WANG,
        "phone": "13812345678",
        "address": "控江路100弄1号101室",
    },
    {
        "record_id": "reg:2",
        "source": "district_registry",
        "name": "李红",
        "sex": "2",
        "birth_date": "1950-01-01",
        "id_number": ID_LI,
        "phone": "13900001111",
        "address": "平凉路20弄3号202室",
    },
    {
        "record_id": "reg:3",
        "source": "district_registry",
        "name": "赵国强",
        "birth_date": "1938-07-07",
        "id_number": ID_ZHAO,
        "phone": "021-65551234",
    },
]


def test_homophone_name_same_birth_date_and_phone_is_linked() -> None:
    # 瑛 and 英 are both "ying": a homophone typo; the phone is written +86 with dashes.
    assert name_pinyin("王秀瑛") == name_pinyin("王秀英")
    other = {
        "record_id": "milk:1",
        "source": "milk_deliveries",
        "name": "王秀瑛",
        "birth_date": "1945/3/12",
        "phone": "+86 138-1234-5678",
    }
    result = link_records(_records(*BASE, other))
    keys = _keys(result)
    assert keys["milk:1"] == keys["reg:1"]
    assert len(set(keys.values())) == 3
    row = result.assignments.filter(pl.col("record_id") == "milk:1").row(0, named=True)
    assert row["link_method"] == "model" and row["match_probability"] >= 0.9


def test_same_name_different_birth_date_without_shared_identifier_is_not_linked() -> None:
    other = {"record_id": "milk:1", "source": "milk_deliveries", "name": "李红", "birth_date": "1952-06-30"}
    other2 = {**other, "record_id": "milk:2", "phone": "13700002222", "birth_date": "1950-11-30"}
    keys = _keys(link_records(_records(*BASE, other, other2)))
    assert keys["milk:1"] != keys["reg:2"]
    assert keys["milk:2"] != keys["reg:2"]


def test_15_digit_and_18_digit_id_of_one_person_are_linked() -> None:
    fifteen = ID_WANG[:6] + ID_WANG[8:17]
    assert len(fifteen) == 15
    other = {"record_id": "muni:1", "source": "muni_elders", "name": "王秀英", "id_number": fifteen}
    result = link_records(_records(*BASE, other))
    keys = _keys(result)
    assert keys["muni:1"] == keys["reg:1"]
    assert result.assignments.filter(pl.col("record_id") == "muni:1")["link_method"].item() == "id"
    normalised = normalise_records(_records(other))
    assert normalised["id_number"].item() == ID_WANG
    assert normalised["birth_date"].item().isoformat() == "1945-03-12"  # derived from the ID
    assert normalised["sex"].item() == "1"


def test_invalid_id_is_not_trusted() -> None:
    bad = ID_LI[:-1] + ("1" if ID_LI[-1] != "1" else "2")  # wrong check digit
    other = {"record_id": "x:1", "source": "screenings", "name": "王秀英", "id_number": bad}
    normalised = normalise_records(_records(other))
    assert normalised["id_number"].item() is None
    result = link_records(_records(*BASE, other))
    keys = _keys(result)
    assert keys["x:1"] not in (keys["reg:1"], keys["reg:2"])
    assert result.assignments.filter(pl.col("record_id") == "x:1")["link_method"].item() is None


def test_keys_are_stable_across_a_rerun_with_one_new_record() -> None:
    first = link_records(_records(*BASE))
    assert sorted(_keys(first).values()) == ["E00000001", "E00000002", "E00000003"]
    new = {"record_id": "reg:4", "source": "district_registry", "name": "孙丽", "birth_date": "1960-02-02"}
    again = link_records(_records(new, *reversed(BASE)), previous=first.assignments)
    keys = _keys(again)
    assert {k: keys[k] for k in _keys(first)} == _keys(first)
    assert keys["reg:4"] == "E00000004"
    assert again.key_changes.height == 0


def test_steward_no_match_splits_and_match_forces_a_link() -> None:
    homophone = {
        "record_id": "milk:1",
        "source": "milk_deliveries",
        "name": "王秀瑛",
        "birth_date": "1945-03-12",
        "phone": "13812345678",
    }
    stranger = {"record_id": "hot:1", "source": "district_hotline", "name": "钱多多"}
    records = _records(*BASE, homophone, stranger)
    plain = _keys(link_records(records))
    assert plain["milk:1"] == plain["reg:1"] and plain["hot:1"] not in (plain["reg:2"],)
    decisions = pl.DataFrame(
        {
            "record_id_l": ["reg:1", "hot:1"],
            "record_id_r": ["milk:1", "reg:2"],
            "decision": ["no_match", "match"],
        }
    )
    result = link_records(records, decisions=decisions)
    keys = _keys(result)
    assert keys["milk:1"] != keys["reg:1"]
    assert keys["hot:1"] == keys["reg:2"]
    forced = result.assignments.filter(pl.col("record_id") == "hot:1").row(0, named=True)
    assert forced["link_method"] == "steward" and forced["match_probability"] == 1.0
    # Decided pairs never come back for review.
    pairs = set(result.review_pairs.select("record_id_l", "record_id_r").iter_rows())
    assert ("milk:1", "reg:1") not in pairs and ("reg:1", "milk:1") not in pairs


def test_no_match_splits_records_of_one_id() -> None:
    twin = {**BASE[0], "record_id": "reg:9", "source": "muni_elders"}
    decisions = pl.DataFrame({"record_id_l": ["reg:1"], "record_id_r": ["reg:9"], "decision": ["no_match"]})
    keys = _keys(link_records(_records(*BASE, twin), decisions=decisions))
    assert keys["reg:1"] != keys["reg:9"]


def test_merges_keep_the_older_key_and_splits_keep_it_on_the_larger_part() -> None:
    records = pl.DataFrame({"record_id": ["a", "b", "c", "d", "e"], "cluster": [1, 1, 1, 2, 2]})
    previous = pl.DataFrame(
        {
            "record_id": ["a", "b", "c", "d", "e"],
            "elder_key": ["E00000009", "E00000009", "E00000004", "E00000009", "E00000012"],
        }
    )
    out = assign_keys(records, previous, prefix="E", digits=8)
    keys = dict(out.keys.iter_rows())
    # Cluster 1 holds most of E9 and all of E4: it keeps the older E4, E9 is merged into it.
    assert keys[1] == "E00000004"
    # Cluster 2 holds E12 (and a minority of E9): it keeps E12.
    assert keys[2] == "E00000012"
    changes = set(out.changes.select("old_key", "new_key", "change").iter_rows())
    assert ("E00000009", "E00000004", "merged") in changes
    # A split: the larger part keeps the key, the smaller gets the next number.
    split = assign_keys(
        pl.DataFrame({"record_id": ["a", "b", "c"], "cluster": [5, 5, 6]}),
        pl.DataFrame({"record_id": ["a", "b", "c"], "elder_key": ["E00000002"] * 3}),
        prefix="E",
        digits=8,
    )
    assert dict(split.keys.iter_rows()) == {5: "E00000002", 6: "E00000003"}
    assert split.changes.row(0, named=True) == {
        "old_key": "E00000002",
        "new_key": "E00000003",
        "change": "split",
        "records": 1,
    }
    # the MEI's way: each record's previous key joined as the records were read, the previous
    # run's keys alone (one of them no longer on any record: still never issued again)
    from assets.library.identity_keys import PREVIOUS_KEY

    joined = records.with_columns(pl.Series(PREVIOUS_KEY, previous["elder_key"]))
    issued = pl.concat([previous["elder_key"], pl.Series(["E00000030"])])
    same = assign_keys(joined.with_row_index(), issued, prefix="E", digits=8)
    assert same.keys.equals(out.keys) and same.changes.equals(out.changes)
    gone = assign_keys(
        pl.DataFrame(
            {"record_id": ["z"], "cluster": [7], PREVIOUS_KEY: [None]},
            schema_overrides={PREVIOUS_KEY: pl.String},
        ),
        issued,
        prefix="E",
        digits=8,
    )
    assert dict(gone.keys.iter_rows()) == {7: "E00000031"}


# ------------------------------------------------------------------ generated sample

SAMPLE = GeneratorConfig(elders=1_500, days=20)


@pytest.fixture(scope="module")
def staged_sample(tmp_path_factory: pytest.TempPathFactory) -> Lake:
    """1,500 elders x 20 days, elder-bearing tables ingested and staged."""
    lake = Lake(tmp_path_factory.mktemp("identity") / "lake")
    generate(SAMPLE, lake)
    ingest_and_stage(lake, REG, datetime(2026, 12, 1, tzinfo=UTC), elder_tables(REG))
    return lake


def test_person_records_cover_every_elder_row_and_skip_other_people(staged_sample: Lake) -> None:
    tables = {t.name for t in elder_tables(REG)}
    assert "caregivers" not in tables and {"muni_elders", "meal_transactions", "district_hotline"} <= tables
    records = person_records(staged_sample, REG)
    assert records.columns == [*STANDARD_COLUMNS, "_source_file", "_row_number", "_delivery_date"]
    assert records["record_id"].n_unique() == records.height
    links = read_truth(staged_sample.truth, "links")
    joined = records.join(
        links,
        left_on=["source", "_source_file", "_row_number"],
        right_on=["table", "source_file", "row_number"],
    )
    assert joined.height == records.height  # every record is a true elder row
    # Where a table has no birth date column, the ID's is used.
    meals = records.filter(pl.col("source") == "meal_transactions")
    assert meals.filter(pl.col("id_number").is_not_null())["birth_date"].null_count() == 0


def test_normalising_distinct_attributes_once_gives_every_record_the_same_values(
    staged_sample: Lake,
) -> None:
    from assets.library.records import DISTINCT_FIRST_MIN_ROWS, _normalise_rows

    records = person_records(staged_sample, REG)
    # raw text as a steward's file would hold it, some records without an id, an extra column
    text = pl.concat([records] * 3).with_columns(
        pl.col("birth_date").dt.strftime("%Y年%m月%d日"),
        pl.when(pl.int_range(pl.len()) % 7 == 0).then(None).otherwise(pl.col("record_id")).alias("record_id"),
    )
    assert text.height >= DISTINCT_FIRST_MIN_ROWS
    assert text.select([c for c in STANDARD_COLUMNS if c != "record_id"]).n_unique() < text.height // 2
    fast = normalise_records(text, REG)
    assert fast.columns == [*STANDARD_COLUMNS, "_source_file", "_row_number", "_delivery_date"]
    assert fast.equals(_normalise_rows(text, REG))
    assert fast["record_id"].str.starts_with("row:").sum() == text["record_id"].null_count() > 0


def test_generated_sample_pairwise_precision_and_recall(staged_sample: Lake) -> None:
    records = person_records(staged_sample, REG)
    links = read_truth(staged_sample.truth, "links")
    truth = records.join(
        links,
        left_on=["source", "_source_file", "_row_number"],
        right_on=["table", "source_file", "row_number"],
    ).select("record_id", "person_id")
    result = link_records(records)
    ours = pairwise_scores(result.assignments, truth)
    baseline = pairwise_scores(id_exact_assignments(records), truth)
    assert ours["precision"] >= 0.99 and ours["recall"] >= 0.99, ours
    assert ours["recall"] > baseline["recall"] + 0.1
    assert result.review_pairs.height > 0
    assert {"mw_name", "mw_birth_date", "mw_phone", "name_l", "name_r"} <= set(result.review_pairs.columns)
    # A rerun with the previous keys renumbers nobody.
    again = link_records(records.sample(fraction=1.0, shuffle=True, seed=7), previous=result.assignments)
    assert again.assignments.equals(result.assignments)
    assert again.key_changes.height == 0


def test_without_any_id_em_training_still_links(staged_sample: Lake) -> None:
    records = person_records(staged_sample, REG)
    links = read_truth(staged_sample.truth, "links")
    truth = records.join(
        links,
        left_on=["source", "_source_file", "_row_number"],
        right_on=["table", "source_file", "row_number"],
    ).select("record_id", "person_id")
    result = link_records(records.with_columns(id_number=pl.lit(None, dtype=pl.String)))
    score = pairwise_scores(result.assignments, truth)
    assert score["precision"] >= 0.99 and score["recall"] >= 0.95, score
    assert "id" not in set(result.assignments["link_method"].drop_nulls().to_list())


# ------------------------------------------------------------------ CLI


def test_rainbow_link_on_a_raw_csv(tmp_path: Path) -> None:
    src = tmp_path / "people.csv"
    fifteen = ID_WANG[:6] + ID_WANG[8:17]
    src.write_text(
        "record_id,source,name,sex,birth_date,id_number,other_id,phone,address\n"
        f"a,registry,王秀英,男,1945-03-12,{ID_WANG},,13812345678,控江路100弄1号101室\n"
        f"b,muni,王 秀英,,,{fifteen},,,\n"
        "c,milk,王秀瑛,,1945年3月12日,,,+86 138 1234 5678,\n"
        f"d,registry,李红,女,1950/1/1,{ID_LI.lower()},,13900001111,\n"
        "e,milk,李红,,1952-06-30,,,13700002222,\n",
        encoding="utf-8",
    )
    out = tmp_path / "keys.parquet"
    result = CliRunner().invoke(app, ["link", "--input", str(src), "--output", str(out)])
    assert result.exit_code == 0, result.output
    keys = read_parquet(out)
    assert keys.columns == ["record_id", "elder_key", "match_probability"]
    k = dict(keys.select("record_id", "elder_key").iter_rows())
    assert k["a"] == k["b"] == k["c"]
    assert k["d"] != k["e"] and k["d"] != k["a"]
    # CSV out, with the first run's keys kept.
    out_csv = tmp_path / "keys.csv"
    again = CliRunner().invoke(
        app, ["link", "--input", str(src), "--output", str(out_csv), "--previous", str(out)]
    )
    assert again.exit_code == 0, again.output
    assert dict(pl.read_csv(out_csv).select("record_id", "elder_key").iter_rows()) == k


def test_person_records_are_kept_between_runs_and_follow_new_and_changed_parts(tmp_path: Path) -> None:
    """A year of daily parts is read once: later runs read the parts that are new or changed and
    rewrite only their month's file; the result always equals reading every part."""
    import json
    import shutil

    from assets.library.record_cache import RECORDS_PARTS, records_cache
    from masking.encryption import is_encrypted
    from rainbow.io import atomic_path
    from rainbow.parquet import file_metadata, read_frame, write_frame

    reg = load_registry()
    lake = Lake(tmp_path / "lake")
    generate(GeneratorConfig(elders=200, days=3, start=date(2026, 10, 30)), lake)  # Oct 30 - Nov 1
    ingest_and_stage(lake, reg, datetime(2026, 12, 1, 2, tzinfo=UTC))

    def uncached() -> pl.DataFrame:
        shutil.rmtree(lake.library / "_cache", ignore_errors=True)
        return person_records(lake, reg)

    def covered(month: str) -> dict[str, list[int]]:
        return dict(json.loads(file_metadata(folder / f"{month}.parquet", lake)[RECORDS_PARTS]))

    parts = sorted((lake.staged / "meal_transactions").glob("date=*/data.parquet"))
    assert [p.parent.name for p in parts] == ["date=2026-10-30", "date=2026-10-31", "date=2026-11-01"]
    held = tmp_path / "held.parquet"
    shutil.move(parts[-1], held)  # the newest day is not staged yet
    first = uncached()
    folder = records_cache(lake, "meal_transactions")
    assert sorted(p.name for p in folder.iterdir()) == ["2026-10.parquet"]
    october = folder / "2026-10.parquet"
    assert is_encrypted(october)  # names and IDs: encrypted like the rest of the library zone
    assert len(covered("2026-10")) == 2
    written = october.stat().st_mtime_ns
    assert person_records(lake, reg).equals(first)  # from the cache

    shutil.move(held, parts[-1])  # the new day lands: a November file; October's is not rewritten
    with_new = person_records(lake, reg)
    assert sorted(p.name for p in folder.iterdir()) == ["2026-10.parquet", "2026-11.parquet"]
    assert october.stat().st_mtime_ns == written and len(covered("2026-11")) == 1
    assert with_new.height > first.height
    assert with_new.equals(uncached())

    # a part restaged with a row fewer: its records are read again, the others come from the cache
    part = parts[0]
    rows = read_frame(part, lake)
    with atomic_path(part) as tmp:
        write_frame(rows.head(rows.height - 1), tmp, lake)
    fewer = person_records(lake, reg)
    assert fewer.height == with_new.height - 1
    assert fewer.equals(uncached())
    # a month whose parts are all gone loses its file
    shutil.rmtree(parts[-1].parent)
    cached = person_records(lake, reg)
    assert sorted(p.name for p in folder.iterdir()) == ["2026-10.parquet"]
    assert cached.equals(uncached())


def test_kept_person_records_are_normalised_and_rebuilt_when_the_normaliser_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The cache holds normalised records (a new day normalises only its own parts); a change
    to the normalisation code makes every kept record stale."""
    import json

    import assets.library.record_cache as records_module
    from assets.library.record_cache import RECORDS_VERSION, records_cache
    from rainbow.io import atomic_path
    from rainbow.parquet import file_metadata, read_frame, write_frame

    reg = load_registry()
    lake = Lake(tmp_path / "lake")
    generate(GeneratorConfig(elders=200, days=2), lake)
    ingest_and_stage(lake, reg, datetime(2026, 12, 1, 2, tzinfo=UTC))
    part = sorted((lake.staged / "meal_transactions").glob("date=*/data.parquet"))[-1]
    rows = read_frame(part, lake)
    # a staged row as a careless writer might leave it: spaces inside the name
    spaced = rows.with_columns(
        pl.when(pl.int_range(pl.len()) == 0)
        .then(pl.col("name").str.split("").list.join(" "))
        .otherwise(pl.col("name"))
        .alias("name")
    )
    with atomic_path(part) as tmp:
        write_frame(spaced, tmp, lake)
    first_name = spaced["name"][0]
    assert " " in first_name
    records = person_records(lake, reg)
    row_id = f"meal_transactions:{rows['_source_file'][0]}:{rows['_row_number'][0]}"
    mine = records.filter(pl.col("record_id") == row_id)
    assert mine["name"].to_list() == [first_name.replace(" ", "")]
    # already normalised: linking them as they are or normalising again gives the same elders
    plain = link_records(records.select(STANDARD_COLUMNS))
    as_they_are = link_records(records.select(STANDARD_COLUMNS), normalised=True)
    assert as_they_are.assignments.equals(plain.assignments)

    (cache,) = records_cache(lake, "meal_transactions").glob("*.parquet")  # two days of one month
    version = file_metadata(cache, lake)[RECORDS_VERSION]
    assert person_records(lake, reg).equals(records)
    assert file_metadata(cache, lake)[RECORDS_VERSION] == version  # nothing changed: kept as is
    monkeypatch.setattr(records_module, "_normaliser_fingerprint", lambda: "a changed normaliser")
    read: list[Path] = []
    real_read = records_module.read_frame

    def reading(path: Path, *args: Any, **kwargs: Any) -> pl.DataFrame:
        read.append(Path(path))
        return real_read(path, *args, **kwargs)

    monkeypatch.setattr(records_module, "read_frame", reading)
    assert person_records(lake, reg).equals(records)
    assert file_metadata(cache, lake)[RECORDS_VERSION] != version
    staged_parts = set((lake.staged / "meal_transactions").glob("date=*/data.parquet"))
    assert staged_parts <= set(read)  # every part read again, none taken from the stale cache
    assert json.loads(file_metadata(cache, lake)[records_module.RECORDS_PARTS])


def test_a_kept_model_scores_only_new_profiles_and_links_as_scoring_every_pair_with_it(
    staged_sample: Lake, tmp_path: Path
) -> None:
    """A new day scores only the pairs touching profiles the kept linkage has not seen; the
    result equals scoring every pair with the same model. The model is trained again when too
    much changed or its code did; the kept state round-trips through the lake."""
    from dataclasses import replace

    from assets.library.identity import LinkSettings, kept_fingerprint
    from assets.library.mei import LINKAGE_STATE, linkage_cache, read_kept, write_kept
    from rainbow.io import atomic_path
    from rainbow.parquet import file_metadata, read_frame, write_frame

    records = person_records(staged_sample, REG)
    last = records["_delivery_date"].max()
    settings = LinkSettings(retrain_share=0.5)
    first = link_records(records.filter(pl.col("_delivery_date") < last), normalised=True, settings=settings)
    assert first.kept is not None and first.stats["model_trained"] == 1

    today = link_records(
        records, previous=first.assignments, kept=first.kept, normalised=True, settings=settings
    )
    assert today.stats["model_trained"] == 0
    # the kept linkage given as its reader (as build_mei gives it, so its pairs can be let go)
    read = link_records(
        records, previous=first.assignments, kept=lambda: first.kept, normalised=True, settings=settings
    )
    assert read.assignments.equals(today.assignments) and read.review_pairs.equals(today.review_pairs)
    assert read.kept is not None and read.kept.pairs.equals(today.kept.pairs)  # type: ignore[union-attr]
    assert first.kept.pairs.height == first.stats["kept_pairs"]  # the caller's linkage untouched
    assert 0 < today.stats["new_profiles"] < today.stats["profiles"] // 10
    # the reference: the same model scoring every pair (a kept linkage that has scored nothing)
    blank = replace(
        first.kept,
        profiles=first.kept.profiles.clear(),
        pairs=first.kept.pairs.clear(),
        trained_profiles=10**9,
    )
    every = link_records(records, previous=first.assignments, kept=blank, normalised=True, settings=settings)
    assert every.stats["model_trained"] == 0 and every.stats["new_profiles"] == every.stats["profiles"]
    assert today.stats["kept_pairs"] == every.stats["kept_pairs"] > 0
    assert today.assignments.equals(every.assignments)
    assert today.review_pairs.equals(every.review_pairs)
    assert today.key_changes.equals(every.key_changes)
    assert today.kept is not None and every.kept is not None
    assert today.kept.profiles.equals(every.kept.profiles)
    assert today.kept.pairs.equals(every.kept.pairs)  # the same profiles: the same numbers
    assert today.kept.changed == today.stats["new_profiles"] + today.stats["gone_profiles"]

    # trained again: beyond the share of changed profiles, or with other model code
    strict = link_records(records, kept=first.kept, normalised=True, settings=LinkSettings(retrain_share=0.0))
    assert strict.stats["model_trained"] == 1
    stale = link_records(
        records, kept=replace(first.kept, fingerprint="x"), normalised=True, settings=settings
    )
    assert stale.stats["model_trained"] == 1

    # kept in the lake: three files with one token; a file of another state means retraining
    lake = Lake(tmp_path / "lake")
    write_kept(lake, today.kept)
    back = read_kept(lake, kept_fingerprint(settings))
    assert back is not None and back.model.model == today.kept.model.model
    assert read_kept(lake, "made by other code") is None  # not read at all
    assert back.pairs.equals(today.kept.pairs) and back.profiles.equals(today.kept.profiles)
    assert (back.trained_profiles, back.changed, back.fingerprint) == (
        today.kept.trained_profiles,
        today.kept.changed,
        today.kept.fingerprint,
    )
    again = link_records(records, previous=today.assignments, kept=back, normalised=True, settings=settings)
    assert again.stats["model_trained"] == 0 and again.stats["new_profiles"] == 0
    assert again.assignments.equals(today.assignments)
    # records withdrawn (the first day's): profiles gone, others renumbered - still as scoring
    # every pair with the kept model
    fewer = records.filter(pl.col("_delivery_date") > records["_delivery_date"].min())
    loose = LinkSettings(retrain_share=1.0)  # the same model, kept however much changed
    shrunk = link_records(fewer, previous=today.assignments, kept=back, normalised=True, settings=loose)
    assert shrunk.stats["model_trained"] == 0 and shrunk.stats["gone_profiles"] > 0
    cleared = replace(back, profiles=back.profiles.clear(), pairs=back.pairs.clear(), trained_profiles=10**9)
    reference = link_records(
        fewer, previous=today.assignments, kept=cleared, normalised=True, settings=settings
    )
    assert shrunk.assignments.equals(reference.assignments)
    assert shrunk.review_pairs.equals(reference.review_pairs)
    assert shrunk.kept is not None and reference.kept is not None
    assert shrunk.kept.pairs.equals(reference.kept.pairs)
    profiles = linkage_cache(lake) / "profiles.parquet"
    frame = read_frame(profiles, lake)
    with atomic_path(profiles) as tmp:
        write_frame(frame, tmp, lake, metadata={LINKAGE_STATE: '{"token": "another run"}'})
    assert "another run" in file_metadata(profiles, lake)[LINKAGE_STATE]
    assert read_kept(lake) is None


def test_profiles_do_not_depend_on_how_the_records_are_split_into_chunks(staged_sample: Lake) -> None:
    """The MEI collapses a district year to profiles one kept chunk at a time: any split, in
    any order, gives the profiles of all records at once - grouped on every attribute, nulls
    equal, numbered in order of their first record - and each record the same profile."""
    from assets.library.identity import PROFILE_KEY, profile_records

    records = person_records(staged_sample, REG)
    whole = profile_records([records], carry=("_delivery_date",))
    reference = (
        records.group_by(PROFILE_KEY)
        .agg(pl.col("record_id").min().alias("first_record"), pl.len().alias("records"))
        .sort("first_record")
    )
    assert whole.profiles.select(*PROFILE_KEY, "first_record", "records").equals(reference)
    assert whole.profiles["profile"].to_list() == list(range(reference.height))
    assert whole.records.height == records.height and whole.records.columns == [
        "record_id",
        "_delivery_date",
        "profile",
    ]
    shuffled = records.sample(fraction=1.0, shuffle=True, seed=7)
    chunks = [shuffled.slice(i, 777) for i in range(0, shuffled.height, 777)][::-1]
    split = profile_records(chunks, carry=("_delivery_date",))
    assert split.profiles.equals(whole.profiles)
    assert split.records.sort("record_id").equals(whole.records.sort("record_id"))
    # the chunks' groups grouped again every few chunks (a year: every 2 M groups)
    compacted = profile_records(chunks, carry=("_delivery_date",), compact_rows=500)
    assert compacted.profiles.equals(whole.profiles)
    assert compacted.records.equals(split.records)
    # a record a steward decided on stands alone, beside its identical twins
    twins = reference.filter(pl.col("records") > 1).row(0, named=True)
    alone = profile_records(chunks, pl.Series([twins["first_record"]]))
    assert alone.profiles.height == whole.profiles.height + 1
    mine = alone.records.filter(pl.col("record_id") == twins["first_record"])["profile"]
    assert alone.records.filter(pl.col("profile") == mine[0]).height == 1
    # a decision naming a record that is not delivered (any more) isolates nothing
    from assets.library.identity import profile_person_records

    ghost = pl.DataFrame(
        {"record_id_l": [twins["first_record"]], "record_id_r": ["meal_transactions:gone.csv:1"]},
    ).with_columns(decision=pl.lit("no_match"))
    profiled, known = profile_person_records(chunks, ghost)
    assert known.height == 0 and profiled.profiles.equals(whole.profiles)
    assert profiled.records.sort("record_id").equals(whole.records.drop("_delivery_date").sort("record_id"))


def test_the_pairs_left_out_of_the_linkage_change_no_link(
    staged_sample: Lake, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only pairs at or above the lower of the link threshold and the review band, or touching
    a weak profile, are kept (a district year: 15.3 M of 24.5 M); keeping every pair links,
    reviews and renumbers exactly the same."""
    import assets.library.identity as identity

    records = person_records(staged_sample, REG)
    lean = link_records(records, normalised=True)
    monkeypatch.setattr(identity, "_useful_pairs", lambda profiles, floor: None)
    every = link_records(records, normalised=True)
    assert lean.stats["kept_pairs"] < every.stats["kept_pairs"] == every.stats["pairs_scored"]
    assert lean.stats["pairs_scored"] == every.stats["pairs_scored"]
    assert lean.assignments.equals(every.assignments)
    assert lean.review_pairs.equals(every.review_pairs)
    assert lean.stats["source_population_links"] == every.stats["source_population_links"] > 0
    assert lean.kept is not None and lean.kept.pairs.height == lean.stats["kept_pairs"]


def test_kept_pairs_are_sorted_again_only_when_renumbering_broke_their_order() -> None:
    from assets.library.identity import _sorted_pairs

    def pairs(left: list[int], right: list[int]) -> pl.DataFrame:
        return pl.DataFrame(
            {"unique_id_l": left, "unique_id_r": right},
            schema={"unique_id_l": pl.Int64, "unique_id_r": pl.Int64},
        )

    assert (
        _sorted_pairs(pairs([], []))
        and _sorted_pairs(pairs([1], [2]))
        and _sorted_pairs(pairs([1, 1, 2], [2, 3, 0]))
    )
    assert not _sorted_pairs(pairs([1, 1], [3, 2]))  # within a left profile
    assert not _sorted_pairs(pairs([2, 1], [3, 4])) and not _sorted_pairs(pairs([2, 1], [1, 4]))


def test_scoring_in_chunks_of_profiles_gives_the_pairs_and_links_of_one_piece(staged_sample: Lake) -> None:
    """A district year's pairs are scored in chunks of the left side's profiles (splink's
    predict_chunk, each chunk's table dropped before the next): the same pairs, scores, links
    and review queue as scoring them in one table."""
    from dataclasses import replace

    from assets.library.identity import LinkSettings

    records = person_records(staged_sample, REG)
    one = link_records(records, normalised=True)
    profiles = one.stats["profiles"]
    settings = LinkSettings()
    chunked = replace(settings, model=replace(settings.model, predict_chunk_profiles=int(profiles) // 3))
    three = link_records(records, normalised=True, settings=chunked)
    assert one.kept is not None and three.kept is not None
    assert three.stats["pairs_scored"] == one.stats["pairs_scored"] > 0
    assert three.kept.pairs.equals(one.kept.pairs)
    assert three.assignments.equals(one.assignments)
    assert three.review_pairs.equals(one.review_pairs)
    assert three.parameters.equals(one.parameters)


def test_previous_key_of_finds_each_records_key_as_a_left_join_does() -> None:
    """The previous keys found by binary search over the previous links (sorted or not) equal a
    left join's, in the records' order; records the previous run did not key get null."""
    import random

    from assets.library.identity_keys import PREVIOUS_KEY
    from assets.library.mei import previous_key_of

    rng = random.Random(7)
    ids = [f"t{rng.randrange(5)}:f{rng.randrange(40)}.parquet:{n}" for n in range(3_000)]
    previous = pl.DataFrame(
        {
            "record_id": [*ids[:2_000], "zz:gone:1", "a:gone:2"],
            "elder_key": [f"YP{n:07d}" for n in range(2_002)],
        }
    )
    shuffled = previous.sample(fraction=1.0, shuffle=True, seed=3)
    records = pl.Series("record_id", ids).sample(fraction=1.0, shuffle=True, seed=5)
    joined = records.to_frame().join(previous, on="record_id", how="left", maintain_order="left")
    expected = joined["elder_key"]
    assert expected.null_count() == 1_000
    for prev in (previous.sort("record_id"), shuffled, previous.clear()):
        found = previous_key_of(records, prev)
        assert found.name == PREVIOUS_KEY and found.len() == records.len()
        want = expected if prev.height else pl.Series([None] * records.len(), dtype=pl.String)
        assert found.rename("elder_key").equals(want.rename("elder_key"))


def test_link_lineage_reads_table_file_and_row_out_of_record_ids_as_the_format_says() -> None:
    """``elder_links``' source table, file and row equal what RECORD_ID_PARTS' groups read,
    for every shape of id: colons inside the file name, empty parts, a newline, full-width
    colons, negative rows, and ids that do not match (all three null)."""
    import random

    from assets.library.mei import link_lineage
    from assets.library.records import RECORD_ID_PARTS

    rng = random.Random(11)
    ids = [
        f"{rng.choice(['muni_roster', 'meal_transactions'])}:landing/2026-0{rng.randrange(1, 10)}/f.csv:{n}"
        for n in range(500)
    ]
    ids += [
        "t:a:b:c:12", "t::5", "t:f:x", "t:5", "nocolon", "t:f\nx:-3", "t:f:1:", ":f:2", "中文表:文件：名:7",
        "t:f:007", "t:f:", "::", "t:f:1\n", "t:f: 3", "",
    ]  # fmt: skip
    frame = pl.DataFrame({"record_id": ids}).with_columns(
        _delivery_date=pl.lit(date(2026, 11, 5)),
        elder_key=pl.lit("YP0000001"),
        match_probability=pl.lit(1.0),
        link_method=pl.lit("exact_id"),
    )
    parts = pl.col("record_id").str.extract_groups(RECORD_ID_PARTS)
    want = frame.select(
        parts.struct.field("1").alias("source_table"),
        parts.struct.field("2").alias("source_file"),
        parts.struct.field("3").cast(pl.Int64).alias("row_number"),
    )
    got = link_lineage(frame)
    assert got["record_id"].equals(frame["record_id"])
    assert got.select(want.columns).equals(want)
    unmatched = got.filter(pl.col("row_number").is_null())
    assert unmatched["record_id"].to_list() == [
        "t:f:x",
        "t:5",
        "nocolon",
        "t:f:1:",
        "t:f:",
        "::",
        "t:f:1\n",
        "t:f: 3",
        "",
    ]
    assert unmatched["source_table"].null_count() == unmatched["source_file"].null_count() == 9
    assert got.row(500)[:4] == ("t:a:b:c:12", "t", "a:b:c", 12)


def test_the_linkage_fingerprint_follows_the_model_code_not_a_wrapper(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A profiler or a spy wrapping ``score_pairs`` is not other model code (it retrained the
    district's model: a 75 s new day became 139 s); the model module's bytes are."""
    import functools
    import inspect

    import assets.library.identity as identity
    from assets.library import identity_model

    settings = identity.LinkSettings()
    before = identity.kept_fingerprint(settings)
    real = identity.score_pairs

    @functools.wraps(real)
    def spy(*args: object, **kwargs: object) -> object:
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(identity, "score_pairs", spy)
    assert inspect.getfile(identity.score_pairs) != inspect.getfile(identity_model)  # a real wrapper
    assert identity.kept_fingerprint(settings) == before
    edited = tmp_path / "identity_model.py"
    edited.write_bytes(Path(inspect.getfile(identity_model)).read_bytes() + b"\n# edited\n")
    monkeypatch.setattr(identity_model, "__file__", str(edited))
    assert identity.kept_fingerprint(settings) != before

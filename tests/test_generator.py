"""The synthetic generator: realistic, deterministic, and honest about what it garbled."""

from __future__ import annotations

import hashlib
import io
import json
import math
from dataclasses import replace
from datetime import date
from pathlib import Path

import polars as pl
import pytest
from stdnum.cn import ric

from rainbow.settings import Lake
from sample_data.config import GeneratorConfig, load_fault_specs
from sample_data.estimate import estimate
from sample_data.generate import generate
from sample_data.truth import read_truth
from schemas import load_registry
from tests.conftest import SAMPLE

FULLWIDTH_BACK = str.maketrans("０１２３４５６７８９Ｘｘ", "0123456789Xx")


def _tree_digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _read_csv(path: Path) -> pl.DataFrame:
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = raw.decode("gb18030")
    return pl.read_csv(io.StringIO(text), infer_schema=False)


def test_same_seed_gives_byte_identical_output_and_another_seed_does_not(tmp_path: Path) -> None:
    cfg = GeneratorConfig(elders=300, days=4)
    generate(cfg, Lake(tmp_path / "a"))
    generate(cfg, Lake(tmp_path / "b"))
    generate(GeneratorConfig(elders=300, days=4, seed=7), Lake(tmp_path / "c"))
    a, b, c = (_tree_digest(tmp_path / x) for x in "abc")
    assert a == b
    assert len(a) > 60  # every system delivered (xlsx, json, jsonl, csv ...)
    assert a != c


def test_generate_refuses_to_overwrite_without_force(tmp_path: Path) -> None:
    lake = Lake(tmp_path / "lake")
    generate(GeneratorConfig(elders=100, days=1), lake)
    with pytest.raises(FileExistsError):
        generate(GeneratorConfig(elders=100, days=1), lake)


def test_every_system_delivers_in_its_declared_form(sample_lake: Lake) -> None:
    files = read_truth(sample_lake.truth, "files")
    reg = load_registry()
    for _, table in reg.tables():
        delivered = files.filter(pl.col("table") == table.name)
        assert delivered.height > 0, table.name
        assert set(delivered["format"]) == {table.delivery.format}
        for rel in delivered["source_file"]:
            assert (sample_lake.landing / rel).is_file()
    # Daily tables deliver each day, monthly ones on day one and each 1st (35 days from 1 Nov: 2 files).
    meal = files.filter((pl.col("table") == "meal_transactions") & pl.col("duplicate_of").is_null())
    assert meal.height == 35
    milk = files.filter((pl.col("table") == "milk_deliveries") & pl.col("duplicate_of").is_null())
    assert sorted(milk["delivery_date"].to_list()) == [date(2026, 11, 1), date(2026, 12, 1)]
    # The meal-aid vendor switched from GBK to UTF-8 during the period.
    assert set(meal["encoding"]) == {"gbk", "utf-8"}
    # The truth is beside landing, never inside it.
    assert not any("truth" in p.parts for p in sample_lake.landing.rglob("*"))


def test_population_looks_like_yangpu(sample_lake: Lake) -> None:
    p = read_truth(sample_lake.truth, "persons").filter(pl.col("age") >= 60)
    n = p.height
    bands = p.select(
        (pl.col("age") < 65).mean().alias("60-64"),
        pl.col("age").is_between(65, 69).mean().alias("65-69"),
        pl.col("age").is_between(70, 79).mean().alias("70-79"),
        (pl.col("age") >= 80).mean().alias("80+"),
        (pl.col("sex") == "2").mean().alias("women"),
    ).row(0, named=True)
    for key, target in {"60-64": 0.283, "65-69": 0.279, "70-79": 0.283, "80+": 0.155, "women": 0.52}.items():
        assert abs(bands[key] - target) < 0.035, (key, bands[key])
    assert p["street_code"].n_unique() == 12
    by_age = p.group_by(pl.col("age") >= 80).agg(
        (pl.col("living_arrangement") == "ALONE").mean().alias("alone"),
        pl.col("care_level").mean().alias("care"),
    )
    old = by_age.filter(pl.col("age")).row(0, named=True)
    young = by_age.filter(~pl.col("age")).row(0, named=True)
    assert old["alone"] > young["alone"] and old["care"] > 2 * young["care"]
    assert n > 2_900
    # Life events within the period: deaths, moves, people turning 60.
    all_p = read_truth(sample_lake.truth, "persons")
    assert all_p["death_date"].is_not_null().sum() > 0
    assert (all_p["age"] == 59).sum() > 0


def test_every_true_id_is_valid_and_agrees_with_birth_date_and_sex(sample_lake: Lake) -> None:
    p = read_truth(sample_lake.truth, "persons")
    for id_number, birth, sex in p.select("id_number", "birth_date", "sex").iter_rows():
        assert ric.is_valid(id_number), id_number
        assert ric.get_birth_date(id_number) == birth
        assert (int(id_number[16]) % 2 == 1) == (sex == "1")
    areas = p["id_area"].value_counts().sort("count", descending=True)
    assert areas["id_area"][0] == "310110"
    assert {"310103", "310108"} & set(p["id_area"])  # retired Shanghai codes appear
    assert p["id_area"].str.starts_with("31").not_().any()  # other provinces appear


def _delivered_ids(sample_lake: Lake) -> pl.DataFrame:
    """Every ID number delivered in CSV files, with its file and row."""
    reg = load_registry()
    frames = []
    for _, table in reg.tables():
        if table.delivery.format != "csv":
            continue
        id_cols = [c for c in table.columns if c.semantic == "resident_id"]
        for path in sorted((sample_lake.landing).glob(table.delivery.path.split("/")[0] + "/*.csv")):
            if not path.name.startswith(table.delivery.path.split("/")[1].split("{")[0]):
                continue
            df = _read_csv(path)
            for col in id_cols:
                frames.append(
                    df.select(pl.col(col.source).alias("value"))
                    .with_row_index("row_number", offset=1)
                    .with_columns(
                        table=pl.lit(table.name),
                        source_file=pl.lit(str(path.relative_to(sample_lake.landing))),
                        column=pl.lit(col.name),
                    )
                )
    return pl.concat(frames).filter(pl.col("value").is_not_null())


def test_every_delivered_id_validates_unless_a_bad_checksum_was_planted(sample_lake: Lake) -> None:
    ids = _delivered_ids(sample_lake)
    faults = read_truth(sample_lake.truth, "faults").filter(pl.col("kind") == "id_bad_checksum")
    bad = set(faults.select("source_file", "row_number", "column").iter_rows())
    # A re-delivered file repeats its original's faults.
    copies = dict(
        read_truth(sample_lake.truth, "files")
        .filter(pl.col("duplicate_of").is_not_null())
        .select("source_file", "duplicate_of")
        .iter_rows()
    )
    checked = planted = 0
    for value, row, src, col in ids.select("value", "row_number", "source_file", "column").iter_rows():
        src = copies.get(src, src)
        v = value.translate(FULLWIDTH_BACK).upper()
        if len(v) == 15:
            continue  # 15-digit IDs carry no check digit
        valid = ric.is_valid(v)
        if (src, row, col) in bad:
            planted += 1
            assert not valid, value
        else:
            checked += 1
            assert valid, (src, row, value)
    assert checked > 5_000 and planted > 0


def test_each_fault_kind_appears_at_its_configured_rate(sample_lake: Lake) -> None:
    exposure = (
        read_truth(sample_lake.truth, "fault_exposure")
        .with_columns(expected=pl.col("eligible") * pl.col("rate"))
        .group_by("kind")
        .agg(pl.col("expected").sum(), pl.col("eligible").sum())
    )
    observed = read_truth(sample_lake.truth, "faults").group_by("kind").len()
    joined = exposure.join(observed, on="kind", how="left").with_columns(pl.col("len").fill_null(0))
    assert set(joined["kind"]) == set(load_fault_specs())
    for kind, expected, eligible, count in joined.select("kind", "expected", "eligible", "len").iter_rows():
        assert eligible > 0, kind
        # Poisson tolerance: 4 sigma plus 2 for the smallest counts.
        assert abs(count - expected) <= 4 * math.sqrt(expected) + 2, (kind, count, expected)
        if expected >= 10:
            assert count > 0, kind


def test_recorded_faults_are_really_in_the_delivered_files(sample_lake: Lake) -> None:
    reg = load_registry()
    faults = read_truth(sample_lake.truth, "faults").filter(
        pl.col("source_file").str.ends_with(".csv") & pl.col("column").is_not_null()
    )
    cache: dict[str, pl.DataFrame] = {}
    checked = 0
    for table, src, row, column, delivered in faults.select(
        "table", "source_file", "row_number", "column", "delivered"
    ).iter_rows():
        if src not in cache:
            cache[src] = _read_csv(sample_lake.landing / src)
        header = reg.table(table).column(column).source
        assert cache[src][header][row - 1] == delivered, (src, row, column)
        checked += 1
    assert checked > 500


def test_truncated_json_lines_are_the_only_broken_lines(sample_lake: Lake) -> None:
    faults = read_truth(sample_lake.truth, "faults").filter(pl.col("kind") == "truncated_line")
    planted = set(faults.select("source_file", "row_number").iter_rows())
    assert planted
    broken = set()
    for path in sorted(sample_lake.landing.glob("wristband/*.jsonl")):
        for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            try:
                json.loads(line)
            except json.JSONDecodeError:
                broken.add((str(path.relative_to(sample_lake.landing)), i))
    assert broken == planted


def test_duplicate_files_are_byte_identical_to_their_original(sample_lake: Lake) -> None:
    files = read_truth(sample_lake.truth, "files").filter(pl.col("duplicate_of").is_not_null())
    assert files.height > 0
    for copy, original in files.select("source_file", "duplicate_of").iter_rows():
        assert (sample_lake.landing / copy).read_bytes() == (sample_lake.landing / original).read_bytes()


def test_each_system_sees_only_the_elders_it_would(sample_lake: Lake) -> None:
    persons = read_truth(sample_lake.truth, "persons")
    links = read_truth(sample_lake.truth, "links").join(persons, on="person_id")
    wrist = links.filter(pl.col("table") == "wristband_devices")
    assert wrist.height > 0 and wrist["age"].min() >= 80  # type: ignore[operator]
    water = links.filter(pl.col("table") == "water_meters")
    assert water.height > 0 and set(water["living_arrangement"]) == {"ALONE"}
    milk = links.filter(pl.col("table") == "milk_deliveries")
    assert milk.filter((pl.col("age") < 80) & ~pl.col("dibao")).height == 0
    ltci = links.filter(pl.col("table") == "muni_ltci_services")
    assert ltci.height > 0 and ltci["care_level"].min() >= 2  # type: ignore[operator]
    # Most elders appear in several systems (the linkage problem the library solves).
    per_person = links.group_by("person_id").agg(pl.col("table").n_unique().alias("systems"))
    assert per_person["systems"].max() >= 5  # type: ignore[operator]


def test_planted_incidents_cover_every_kind(sample_lake: Lake) -> None:
    kinds = set(read_truth(sample_lake.truth, "incidents")["kind"])
    assert {
        "sos",
        "fall",
        "high_heart_rate",
        "low_spo2",
        "geofence_exit",
        "water_inactivity",
        "positive_not_rescreened",
        "deceased_still_served",
        "ltci_underserved",
        "meal_at_closed_point",
    } <= kinds


def test_water_inactivity_incidents_show_in_the_readings(sample_lake: Lake) -> None:
    inc = read_truth(sample_lake.truth, "incidents").filter(
        (pl.col("kind") == "water_inactivity") & pl.col("detail").str.starts_with("planted")
    )
    readings = pl.concat(
        [
            _read_csv(p).select(
                pl.col("水表编号").alias("meter"),
                pl.col("读数时间").str.to_datetime(strict=False).alias("t"),
                pl.col("累计读数").cast(pl.Float64, strict=False).alias("v"),
            )
            for p in sorted(sample_lake.landing.glob("smart_meter/readings_*.csv"))
        ]
    ).drop_nulls()
    checked = 0
    for meter, start, end in inc.select("device_id", "start", "end").iter_rows():
        window = readings.filter((pl.col("meter") == meter) & pl.col("t").is_between(start, end))
        window = window.filter(pl.col("v") < 10_000)  # ignore planted impossible values
        if window.height >= 2:
            assert window["v"].max() - window["v"].min() < 0.01  # type: ignore[operator]
            checked += 1
    assert checked > 0


def test_pii_planted_in_notes_is_where_the_truth_says(sample_lake: Lake) -> None:
    reg = load_registry()
    spans = read_truth(sample_lake.truth, "pii_in_notes").filter(pl.col("source_file").str.ends_with(".csv"))
    assert set(spans["entity_type"]) >= {"PERSON", "PHONE_NUMBER", "CN_RESIDENT_ID", "CN_ADDRESS"}
    cache: dict[str, pl.DataFrame] = {}
    for table, src, row, column, start, end, value in spans.select(
        "table", "source_file", "row_number", "column", "start", "end", "value"
    ).iter_rows():
        if src not in cache:
            cache[src] = _read_csv(sample_lake.landing / src)
        text = cache[src][reg.table(table).column(column).source][row - 1]
        assert text[start:end] == value


def test_estimate_is_close_to_what_generation_writes(sample_lake: Lake) -> None:
    cfg = replace(SAMPLE, record_exposure=False)  # the config sample_lake was generated with
    est = {e.table: e for e in estimate(cfg, calibration=GeneratorConfig(elders=1_500, days=20))}
    files = read_truth(sample_lake.truth, "files").group_by("table").agg(pl.col("rows").sum())
    checked = 0
    for table, rows in files.iter_rows():
        if rows < 500:
            continue
        assert abs(est[table].rows - rows) / rows < 0.35, (table, est[table].rows, rows)
        checked += 1
    assert checked >= 5

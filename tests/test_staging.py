"""raw -> staged: normalisers one by one, then the whole zone scored against the generator's truth."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from stdnum.cn import ric

from assets.ingest.ledger import read_ledger
from assets.ingest.raw import ingest_table
from assets.staging import normalise as n
from assets.staging.stage import stage_frame, stage_table
from rainbow.ids import check_digit
from rainbow.settings import Lake
from sample_data.config import GeneratorConfig, load_fault_specs
from sample_data.generate import generate
from sample_data.scoring import score_quarantine
from sample_data.truth import read_truth
from schemas import load_registry
from schemas.contract import Table
from tests.lakefiles import content_digest, read_parquet

REG = load_registry()


def _stage(
    table: Table, rows: list[dict[str, str | None]], day: date = date(2026, 11, 5)
) -> tuple[pl.DataFrame, pl.DataFrame]:
    text = {c.name: pl.String for c in table.columns}
    raw = pl.DataFrame(rows, schema=text).with_columns(
        _source_file=pl.lit("f.csv"),
        _row_number=pl.int_range(1, pl.len() + 1, dtype=pl.Int64),
        _file_sha256=pl.lit("x"),
        _ingested_at=pl.lit(datetime(2026, 11, 6, tzinfo=UTC)),
        _delivery_date=pl.lit(day),
    )
    broken = pl.DataFrame(schema={"_raw_text": pl.String})
    return stage_frame(raw, broken, table, REG)


def _screening(**over: str | None) -> dict[str, str | None]:
    row: dict[str, str | None] = {
        "screening_id": "RZ1",
        "name": "王秀英",
        "id_number": VALID_ID,
        "sex": "男",
        "birth_date": "1945-03-12",
        "education": "小学",
        "screening_date": "2026-11-05",
        "instrument": "AD8量表",
        "score": "3",
        "result": "疑似认知障碍",
        "screening_org": "x",
        "screener_name": "李",
        "notes": None,
    }
    row.update(over)
    return row


SCREENINGS = REG.table("screenings")


def _with_check(body17: str) -> str:
    return body17 + check_digit(body17)


VALID_ID = _with_check("31011019450312123")
UNKNOWN_AREA_ID = _with_check("99000019450312123")
BAD_CHECKSUM_ID = VALID_ID[:-1] + ("1" if VALID_ID[-1] != "1" else "2")
assert ric.is_valid(VALID_ID) and not ric.is_valid(BAD_CHECKSUM_ID)


def test_text_is_cleaned_as_nfkc_of_every_value_trimmed_and_empty_as_null() -> None:
    """Only values beyond ASCII go through NFKC (ASCII is NFKC-stable): the result equals NFKC,
    trim and empty -> null applied to every value, in place, without touching the input."""
    values = [
        "SB00000001",
        " SB0000000２ ",
        "ＳＢ０００",
        "",
        "   ",
        None,
        "\u3000",
        "１２.５",
        "12.5",
        "ﾃｽﾄ",
        "①",
        "ﬁ",
        "e\u0301",
        "杨浦区　长白新村",
        "\t x \n",
        "Ａ\u3000",
    ]
    frame = pl.DataFrame({"a": values, "b": list(reversed(values)), "c": ["ascii"] * len(values)})
    before = frame.clone()

    def oracle(col: str) -> pl.Expr:
        t = pl.col(col).str.normalize("NFKC").str.strip_chars()
        return pl.when(t == "").then(None).otherwise(t).alias(f"__clean_{col}")

    got = n.with_clean_texts(frame, ["a", "b", "c"])
    assert got.equals(frame.with_columns(oracle("a"), oracle("b"), oracle("c")))
    assert frame.equals(before)
    # the same values repeated (a month of meal types and payment methods: a few spellings in
    # 600,000 rows) are normalised once per spelling and mapped back: the same result
    many = pl.DataFrame({"a": [values[(i * 5) % len(values)] for i in range(len(values) * 80)]})
    assert n.with_clean_texts(many, ["a"]).equals(many.with_columns(oracle("a")))
    assert got["__clean_a"].to_list()[:9] == [
        "SB00000001",
        "SB00000002",
        "SB000",
        None,
        None,
        None,
        None,
        "12.5",
        "12.5",
    ]


@pytest.mark.parametrize(
    ("delivered", "expected", "flag"),
    [
        (VALID_ID, VALID_ID, None),
        (VALID_ID.translate(str.maketrans("0123456789", "０１２３４５６７８９")), VALID_ID, "ID_REFORMATTED"),
        (f"{VALID_ID[:6]} {VALID_ID[6:14]} {VALID_ID[14:]}", VALID_ID, "ID_REFORMATTED"),
        ("310110450312123", VALID_ID, "ID_UPGRADED_15"),  # 15-digit pre-1999 form
    ],
)
def test_when_an_id_is_garbled_softly_then_it_is_normalised_and_flagged(
    delivered: str, expected: str, flag: str | None
) -> None:
    staged, quarantine = _stage(SCREENINGS, [_screening(id_number=delivered)])
    assert quarantine.height == 0
    assert staged["id_number"][0] == expected
    assert staged["id_birth_date"][0] == date(1945, 3, 12) and staged["id_sex"][0] == "1"
    assert (flag in staged["_flags"][0]) if flag else staged["_flags"][0].to_list() == []


def test_when_a_15_digit_id_is_upgraded_then_stdnum_accepts_it() -> None:
    staged, _ = _stage(
        SCREENINGS, [_screening(id_number="320121480101002", birth_date="1948-01-01", sex="女")]
    )
    assert ric.is_valid(staged["id_number"][0])


def test_when_an_x_check_digit_is_lower_case_then_it_is_upper_cased() -> None:
    good = _with_check("31011019491209559")
    staged, _ = _stage(SCREENINGS, [_screening(id_number=good.lower(), birth_date="1949-12-09")])
    assert staged["id_number"][0] == good.upper()


@pytest.mark.parametrize(
    ("delivered", "reason"),
    [(BAD_CHECKSUM_ID, "ID_CHECKSUM"), (VALID_ID[:17], "ID_INVALID"), (UNKNOWN_AREA_ID, "ID_INVALID")],
)
def test_when_an_id_is_invalid_then_the_row_is_quarantined_with_the_reason(
    delivered: str, reason: str
) -> None:
    staged, quarantine = _stage(SCREENINGS, [_screening(id_number=delivered)])
    assert staged.height == 0
    assert reason in quarantine["_reasons"][0]
    assert quarantine["id_number"][0] == delivered  # the original text is kept


def test_when_the_declared_birth_date_or_sex_disagree_with_the_id_then_they_are_flagged() -> None:
    staged, _ = _stage(SCREENINGS, [_screening(birth_date="1946-03-12", sex="女")])
    assert {"ID_BIRTH_MISMATCH", "ID_SEX_MISMATCH"} <= set(staged["_flags"][0])


def test_repeated_ids_are_checked_once_per_value_with_the_same_outcome_per_row(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Resident-ID stages run on the distinct IDs when they repeat (a month of meals: 600,000 rows,
    49,000 distinct IDs) and are joined back: every row's value, reasons, flags and derived birth
    date and sex are those of checking it row by row, in the rows' order; nulls included."""
    from dataclasses import replace

    forms = [
        VALID_ID,
        f"{VALID_ID[:6]}-{VALID_ID[6:]}",
        f"{VALID_ID[:6]} {VALID_ID[6:]}",
        "310110450312123",
        BAD_CHECKSUM_ID,
        UNKNOWN_AREA_ID,
        VALID_ID[:17],
        "not an id",
        None,
        _with_check("31011019491209559"),
    ]
    ids = [forms[(i * 7) % len(forms)] for i in range(60)]  # every form six times, interleaved
    sexes = ["男" if i % 3 else "女" for i in range(60)]
    frame = n.with_clean_texts(
        pl.DataFrame({"id_number": ids, "sex": sexes}, schema={"id_number": pl.String, "sex": pl.String}),
        ["id_number", "sex"],
    )
    seen: list[int] = []
    area_batch = n._area_batch

    def counted(s: pl.Series) -> pl.Series:
        seen.append(s.len())
        return area_batch(s)

    monkeypatch.setattr(n, "_area_batch", counted)
    rule = n.resident_id("id_number", None, None)
    assert rule.per_value == "__clean_id_number"

    def outcome(r: n.Rule) -> pl.DataFrame:
        staged = n.with_stages(frame, [r])
        return staged.select(
            pl.col("id_number"),
            r.value.alias("value"),
            *[e.alias(f"reason_{i}") for i, e in enumerate(r.reasons)],
            *[e.alias(f"flag_{i}") for i, e in enumerate(r.flags)],
            *[e.alias(k) for k, e in r.extra.items()],
        )

    per_value = outcome(rule)
    assert seen == [len(forms)]  # the area codes looked up for the 10 distinct IDs, not 60 rows
    by_row = outcome(replace(rule, per_value=None))
    assert seen == [len(forms), 60]
    assert per_value.equals(by_row)
    assert per_value["id_number"].to_list() == ids
    assert per_value.filter(pl.col("value").is_not_null()).height == 6 * 5  # valid, spaced, dashed, 15, 1949
    assert set(per_value["reason_0"].drop_nulls()) == {"ID_CHECKSUM"}
    # values that barely repeat stay on the rows (a registry snapshot: one row per elder)
    distinct = frame.head(len(forms))
    assert distinct["id_number"].n_unique() == len(forms)
    seen.clear()
    n.with_stages(distinct, [rule])
    assert seen == [len(forms)]


@pytest.mark.parametrize(
    ("delivered", "expected"),
    [
        ("2026-11-05", date(2026, 11, 5)),
        ("2026/11/5", date(2026, 11, 5)),
        ("2026年11月5日", date(2026, 11, 5)),
        ("20261105", date(2026, 11, 5)),
        ("46331", date(2026, 11, 5)),  # Excel serial
        ("8116", date(1922, 3, 21)),  # a 4-digit Excel serial (before 1927-05-18): old birth dates
    ],
)
def test_when_a_date_comes_in_any_known_form_then_it_is_parsed(delivered: str, expected: date) -> None:
    staged, quarantine = _stage(SCREENINGS, [_screening(screening_date=delivered)])
    assert quarantine.height == 0
    assert staged["screening_date"][0] == expected


@pytest.mark.parametrize(
    ("over", "reason"),
    [
        ({"screening_date": "2026-02-30"}, "BAD_DATE"),
        ({"screening_date": "待补"}, "BAD_DATE"),
        ({"screening_date": "2027-03-01"}, "FUTURE_DATE"),
        ({"screening_date": None}, "MISSING_REQUIRED"),
        ({"score": "45"}, "OUT_OF_RANGE"),
        ({"score": "约5"}, "BAD_NUMBER"),
        ({"instrument": "未知量表"}, "UNKNOWN_CODE"),
    ],
)
def test_when_a_hard_rule_breaks_then_the_row_goes_to_quarantine(
    over: dict[str, str | None], reason: str
) -> None:
    staged, quarantine = _stage(SCREENINGS, [_screening(), _screening(screening_id="RZ2", **over)])
    assert staged["screening_id"].to_list() == ["RZ1"]
    assert quarantine["_reasons"][0].to_list() == [reason]


def test_when_the_same_key_arrives_twice_then_the_later_copy_is_quarantined() -> None:
    staged, quarantine = _stage(SCREENINGS, [_screening(), _screening()])
    assert staged["_row_number"].to_list() == [1]
    assert quarantine["_row_number"].to_list() == [2]
    assert quarantine["_reasons"][0].to_list() == ["DUPLICATE_KEY"]


def test_rows_read_out_of_file_order_stage_as_in_file_order() -> None:
    """The first copy of a key (by file and row) is kept whatever order the raw rows come in, and
    staged/quarantined rows come out by file and row."""
    rows = [
        _screening(),
        _screening(screening_id="RZ2", score="x"),  # a bad number: quarantined
        _screening(),  # the same key again
        _screening(screening_id="RZ3"),
        _screening(screening_id="RZ4", sex="女"),  # flagged: the ID says male
    ]
    text = {c.name: pl.String for c in SCREENINGS.columns}
    raw = pl.DataFrame(rows * 2, schema=text).with_columns(
        _source_file=pl.Series(["b.csv"] * 5 + ["a.csv"] * 5),
        _row_number=pl.Series([1, 2, 3, 4, 5] * 2, dtype=pl.Int64),
        _file_sha256=pl.lit("x"),
        _ingested_at=pl.lit(datetime(2026, 11, 6, tzinfo=UTC)),
        _delivery_date=pl.lit(date(2026, 11, 5)),
    )
    broken = pl.DataFrame({"_raw_text": ["garbled"], "_source_file": ["a.csv"], "_row_number": [6]})
    ordered = stage_frame(raw.sort("_source_file", "_row_number"), broken, SCREENINGS, REG)
    staged, quarantine = stage_frame(raw, broken, SCREENINGS, REG)  # b.csv first
    assert staged.equals(ordered[0]) and quarantine.equals(ordered[1])
    assert staged.select("_source_file", "_row_number").rows() == [("a.csv", 1), ("a.csv", 4), ("a.csv", 5)]
    assert quarantine.select("_source_file", "_row_number", "_reasons").rows() == [
        ("a.csv", 2, ["BAD_NUMBER"]),
        ("a.csv", 3, ["DUPLICATE_KEY"]),
        ("a.csv", 6, ["BROKEN_LINE"]),
        ("b.csv", 1, ["DUPLICATE_KEY"]),
        ("b.csv", 2, ["BAD_NUMBER", "DUPLICATE_KEY"]),
        ("b.csv", 3, ["DUPLICATE_KEY"]),
        ("b.csv", 4, ["DUPLICATE_KEY"]),
        ("b.csv", 5, ["DUPLICATE_KEY"]),
    ]
    assert staged.filter(pl.col("_row_number") == 5)["_flags"][0].len() > 0


@pytest.mark.parametrize(
    ("delivered", "expected"),
    [
        ("13812345678", "13812345678"),
        ("+86 13812345678", "13812345678"),
        ("138-1234-5678", "13812345678"),
        ("１３８１２３４５６７８", "13812345678"),
        ("021-65431234", "021-65431234"),
        ("65431234", "021-65431234"),
        ("12345", None),
    ],
)
def test_when_a_phone_is_written_any_way_then_it_is_canonical(delivered: str, expected: str | None) -> None:
    table = REG.table("device_rentals")
    row = {c.name: None for c in table.columns} | {
        "contract_id": "FJ1",
        "name": "张三",
        "device_type": "轮椅",
        "start_date": "2026-11-05",
        "phone": delivered,
    }
    staged, quarantine = _stage(table, [row])
    assert quarantine.height == 0
    assert staged["phone"][0] == expected
    if expected is None:
        assert "PHONE_INVALID" in staged["_flags"][0]


@pytest.mark.parametrize(
    ("street", "addr", "code", "flag"),
    [
        ("殷行街道", None, "310110016000", None),
        ("殷行", None, "310110016000", None),
        ("五角场镇", "上海市杨浦区国权路100弄2号301室", "310110019000", "STREET_LEGACY_RESOLVED"),
        ("五角场镇", "民星路8弄1号101室", "310110021000", "STREET_LEGACY_RESOLVED"),
        ("五角场镇", None, "310110103000", "STREET_LEGACY_UNRESOLVED"),
    ],
)
def test_when_a_street_is_named_any_way_then_it_is_conformed_to_its_code(
    street: str, addr: str | None, code: str, flag: str | None
) -> None:
    table = REG.table("water_meters")
    row = {c.name: None for c in table.columns} | {
        "meter_id": "SB1",
        "name": "张三",
        "street": street,
        "install_address": addr,
    }
    staged, _ = _stage(table, [row])
    assert staged["street"][0] == code
    if flag:
        assert flag in staged["_flags"][0]
    if addr and not addr.startswith("上海"):
        assert staged["install_address"][0] == "上海市杨浦区" + addr


def test_when_an_iso_timestamp_carries_an_offset_then_it_is_shanghai_wall_time() -> None:
    table = REG.table("wristband_events")
    row: dict[str, str | None] = {
        "event_id": "E1",
        "device_id": "86",
        "occurred_at": "2026-11-05T08:30:00+08:00",
        "event_type": "SOS",
        "lat": "31.3",
        "lon": "121.5",
    }
    staged, _ = _stage(table, [row])
    assert staged["occurred_at"][0] == datetime(2026, 11, 5, 8, 30)


# ------------------------------------------------------------------ the whole zone against the truth


@pytest.fixture(scope="module")
def staged_lake(tmp_path_factory: pytest.TempPathFactory) -> Lake:
    lake = Lake(tmp_path_factory.mktemp("staged") / "lake")
    # 35 days from 1 November: the monthly full lists are delivered twice (1 Nov and 1 Dec).
    generate(GeneratorConfig(elders=2_000, days=35), lake)
    now = datetime(2026, 12, 1, 2, 0, tzinfo=UTC)
    for _, table in REG.tables():
        ingest_table(lake, table, now)
        stage_table(lake, table, REG)
    return lake


def test_every_hard_reason_the_generator_plants_is_a_code_staging_emits() -> None:
    planted = {s.reason for s in load_fault_specs().values() if s.severity == "hard"}
    assert planted <= set(n.HARD_REASONS)


def test_hard_faults_are_quarantined_with_their_reason_and_no_clean_row_is(staged_lake: Lake) -> None:
    score = score_quarantine(staged_lake)
    assert score.hard_faults > 300
    assert score.recall >= 0.99, score.by_kind
    assert score.clean_rows_quarantined == 0
    # Every planted kind is represented and caught.
    assert set(score.by_kind["reason"]) >= {
        "ID_CHECKSUM",
        "FUTURE_DATE",
        "BAD_DATE",
        "OUT_OF_RANGE",
        "UNKNOWN_CODE",
        "MISSING_REQUIRED",
        "DUPLICATE_KEY",
        "BROKEN_LINE",
    }


def test_monthly_full_lists_keep_every_snapshot(staged_lake: Lake) -> None:
    facilities = read_parquet(staged_lake.staged / "facilities" / "**" / "*.parquet")
    snapshots = facilities.group_by("_delivery_date").len().sort("_delivery_date")
    assert snapshots["_delivery_date"].to_list() == [date(2026, 11, 1), date(2026, 12, 1)]
    assert snapshots["len"][0] > 0 and abs(snapshots["len"][0] - snapshots["len"][1]) <= 2
    # the meal point that closed mid-period shows as closed in the December list
    closed = facilities.filter(pl.col("closed_on").is_not_null())
    assert closed.height >= 1 and set(closed["_delivery_date"]) == {date(2026, 12, 1)}


def test_every_file_reconciles_raw_equals_staged_plus_quarantined(staged_lake: Lake) -> None:
    from assets.staging.stage import reconcile_staged

    for _, table in REG.tables():
        rec = reconcile_staged(staged_lake, table)  # counted from the parts on disk
        assert rec.files_checked > 0, table.name
        assert rec.passed, rec.mismatches


def _digest(root: Path) -> dict[str, str]:
    return {f"{root.name}/{k}": v for k, v in content_digest(root).items() if k.endswith(".parquet")}


def test_a_second_run_over_the_same_deliveries_changes_nothing(staged_lake: Lake) -> None:
    before = _digest(staged_lake.staged) | _digest(staged_lake.raw)
    now = datetime(2026, 12, 2, 2, 0, tzinfo=UTC)
    for _, table in REG.tables():
        ingest_table(staged_lake, table, now)
        stage_table(staged_lake, table, REG)
    assert (_digest(staged_lake.staged) | _digest(staged_lake.raw)) == before


def test_a_truncated_json_line_loses_nothing_else_of_its_file(staged_lake: Lake) -> None:
    cut = read_truth(staged_lake.truth, "faults").filter(pl.col("kind") == "truncated_line")
    files = read_truth(staged_lake.truth, "files")
    assert cut.height > 0
    staged = read_parquet(staged_lake.staged / "wristband_vitals" / "**" / "*.parquet")
    quarantine = read_parquet(staged_lake.staged / "_quarantine" / "wristband_vitals" / "**" / "*.parquet")
    for src in cut["source_file"].unique().to_list():
        lines = files.filter(pl.col("source_file") == src)["rows"][0]
        s = staged.filter(pl.col("_source_file") == src).height
        q = quarantine.filter(pl.col("_source_file") == src)
        assert s + q.height == lines
        broken = set(q.filter(pl.col("_reasons").list.contains("BROKEN_LINE"))["_row_number"])
        assert broken == set(cut.filter(pl.col("source_file") == src)["row_number"])


def test_staged_ids_are_the_true_ids_of_the_people_behind_the_rows(staged_lake: Lake) -> None:
    links = read_truth(staged_lake.truth, "links")
    persons = read_truth(staged_lake.truth, "persons").select(
        "person_id", pl.col("id_number").alias("true_id")
    )
    checked = 0
    for table in ("meal_transactions", "muni_elders", "district_registry", "screenings"):
        staged = read_parquet(staged_lake.staged / table / "**" / "*.parquet").filter(
            pl.col("id_number").is_not_null()
        )
        joined = staged.join(
            links, left_on=["_source_file", "_row_number"], right_on=["source_file", "row_number"]
        ).join(persons, on="person_id")
        assert joined.height == staged.height
        assert (joined["id_number"] == joined["true_id"]).all(), table
        checked += joined.height
    assert checked > 3_000


def test_a_run_killed_mid_write_leaves_the_previous_version_readable(
    staged_lake: Lake, monkeypatch: pytest.MonkeyPatch
) -> None:
    from assets.staging.stage import stage_partitions

    table = REG.table("water_meters")
    target = sorted((staged_lake.staged / "water_meters").glob("date=*/data.parquet"))[-1]
    day = date.fromisoformat(target.parent.name.removeprefix("date="))
    before = target.read_bytes()

    def crash(frame: pl.DataFrame, file: Path, *args: object, **kwargs: object) -> None:
        Path(file).write_bytes(b"PAR1 half a file")  # the writer dies halfway
        raise KeyboardInterrupt("killed")

    monkeypatch.setattr("assets.staging.stage.write_frame", crash)
    with pytest.raises(KeyboardInterrupt):
        stage_partitions(staged_lake, table, REG, [day])
    monkeypatch.undo()
    assert target.read_bytes() == before
    assert read_parquet(target).height > 0
    assert not [p for p in target.parent.iterdir() if p.name != "data.parquet"]  # no temp file left


def test_staging_days_in_passes_under_a_row_budget_writes_what_one_pass_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading

    from assets.staging import stage
    from assets.staging.stage import day_chunks, stage_partitions
    from rainbow.workers import WORKERS_ENV

    lake = Lake(tmp_path / "lake")
    generate(GeneratorConfig(elders=300, days=4), lake)
    table = REG.table("water_readings")
    ingest_table(lake, table, datetime(2026, 12, 1, 2, 0, tzinfo=UTC))
    days = sorted(read_ledger(lake, table.name)["delivered_date"].drop_nulls().unique().to_list())
    assert len(days) == 4
    assert day_chunks(lake, table, days, 1) == [[d] for d in days]  # one day per pass
    assert day_chunks(lake, table, days, 10**9) == [days]
    one_pass = stage_partitions(lake, table, REG, days, row_budget=10**9)
    first = content_digest(lake.staged)
    threads: set[str] = set()
    one_by_one = stage._stage

    def noting_thread(*args: Any) -> list[stage.StageReport]:
        threads.add(threading.current_thread().name)
        return one_by_one(*args)

    monkeypatch.setattr(stage, "_stage", noting_thread)
    for width in (1, 2):  # passes one after another, then two at once: the same parts and reports
        monkeypatch.setenv(WORKERS_ENV, str(width))
        threads.clear()
        by_day = stage_partitions(lake, table, REG, days, row_budget=1)
        assert content_digest(lake.staged) == first
        assert [(r.partition, r.staged_rows, r.quarantined_rows) for r in by_day] == [
            (r.partition, r.staged_rows, r.quarantined_rows) for r in one_pass
        ]
        assert sum(r.staged_rows for r in by_day) > 0
        if width == 1:
            assert threads == {threading.current_thread().name}
            reports = by_day
        else:
            assert len(threads) == 2 and threading.current_thread().name not in threads
            assert by_day == reports  # every file's counts, reasons and flags, in date order


def _staged_parts(lake: Lake, table: str) -> dict[str, tuple[int, int]]:
    """(inode, mtime_ns) of every staged and quarantine part of ``table``."""
    out = {}
    for folder in (lake.staged / table, lake.staged / "_quarantine" / table):
        for p in sorted(folder.rglob("*.parquet")):
            st = p.stat()
            out[p.relative_to(lake.staged).as_posix()] = (st.st_ino, st.st_mtime_ns)
    return out


def test_a_new_delivery_of_a_dated_list_stages_only_its_date_and_equals_a_full_restage(
    tmp_path: Path,
) -> None:
    """muni_elders (daily roster changes) and district_registry (monthly full lists) are not
    partitioned in Dagster, yet a new day's file must not restage their whole history."""
    from assets.staging.stage import STAGED_FROM, stale_days
    from rainbow.parquet import file_metadata

    source = Lake(tmp_path / "source")
    generate(GeneratorConfig(elders=300, days=4), source)
    lake = Lake(tmp_path / "lake")
    files = read_truth(source.truth, "files")
    tables = ("muni_elders", "district_registry")
    mine = files.filter(pl.col("table").is_in(tables))
    last = mine.filter(pl.col("table") == "muni_elders")["delivery_date"].max()
    assert isinstance(last, date)
    held = set(mine.filter(pl.col("delivery_date") == last)["source_file"].to_list())
    assert held
    for src in mine["source_file"].to_list():
        if src not in held:
            (lake.landing / src).parent.mkdir(parents=True, exist_ok=True)
            (lake.landing / src).write_bytes((source.landing / src).read_bytes())
    now = datetime(2026, 12, 1, 2, 0, tzinfo=UTC)
    for name in tables:
        ingest_table(lake, REG.table(name), now)
        stage_table(lake, REG.table(name), REG)
        assert stale_days(lake, REG.table(name)) == []
    before = {t: _staged_parts(lake, t) for t in tables}
    assert all(not k.endswith("/data.parquet") or "date=" in k for t in tables for k in before[t])

    for src in held:  # the last day's files land
        (lake.landing / src).parent.mkdir(parents=True, exist_ok=True)
        (lake.landing / src).write_bytes((source.landing / src).read_bytes())
    report = {}
    for name in tables:
        ingest_table(lake, REG.table(name), now)
        report[name] = stage_table(lake, REG.table(name), REG)
    after = {t: _staged_parts(lake, t) for t in tables}
    new_day = f"date={last.isoformat()}/"
    # muni_elders: only the new day's parts were written; every older part is the same file
    changed = {k for k, v in after["muni_elders"].items() if before["muni_elders"].get(k) != v}
    assert changed and all(new_day in k for k in changed)
    assert report["muni_elders"].files and {f.source_file for f in report["muni_elders"].files} <= held
    assert report["muni_elders"].reconciles
    # its footer names the ledger files it was staged from
    part = lake.staged / "muni_elders" / new_day / "data.parquet"
    assert {src for src, _ in json.loads(file_metadata(part, lake)[STAGED_FROM])} <= held

    # the result equals staging the same deliveries from scratch in one pass
    fresh = Lake(tmp_path / "fresh")
    shutil.copytree(lake.landing, fresh.landing)
    for name in tables:
        ingest_table(fresh, REG.table(name), now)
        stage_table(fresh, REG.table(name), REG)
    assert content_digest(fresh.staged) == content_digest(lake.staged)


def test_a_lake_staged_as_one_file_per_table_is_restaged_per_date(tmp_path: Path) -> None:
    from assets.staging.stage import stale_days

    lake = Lake(tmp_path / "lake")
    generate(GeneratorConfig(elders=200, days=3), lake)
    table = REG.table("muni_elders")
    ingest_table(lake, table, datetime(2026, 12, 1, 2, 0, tzinfo=UTC))
    stage_table(lake, table, REG)
    expected = content_digest(lake.staged)
    parts = sorted((lake.staged / "muni_elders").rglob("*.parquet"))
    # the layout before per-date parts: one data.parquet holding every date
    legacy = lake.staged / "muni_elders" / "data.parquet"
    legacy.write_bytes(parts[0].read_bytes())
    for p in parts:
        shutil.rmtree(p.parent)
    assert stale_days(lake, table) == sorted(
        date.fromisoformat(p.parent.name.removeprefix("date=")) for p in parts
    )
    stage_table(lake, table, REG)
    assert not legacy.exists()
    assert content_digest(lake.staged) == expected
    assert stale_days(lake, table) == []
    # a corrected re-delivery of the first day's file (same name, other bytes) restages that day
    first = min(read_ledger(lake, table.name)["delivered_date"].drop_nulls())
    src = read_ledger(lake, table.name).filter(pl.col("delivered_date") == first)["source_file"][0]
    (lake.landing / src).write_bytes((lake.landing / src).read_bytes() + b"\n")
    ingest_table(lake, table, datetime(2026, 12, 2, 2, 0, tzinfo=UTC))
    assert stale_days(lake, table) == [first]
    stage_table(lake, table, REG)
    assert stale_days(lake, table) == []

"""GX validating a big frame in slices (:func:`quality.runner.row_slices`,
:func:`quality.runner.merge_results`) reports what validating it in one piece reports: every
rule's success, counts, percentage, examples (the frame's first unexpected rows, in its order)
and the positions of the unexpected rows, for staged and library tables with failures planted in
several slices and keys repeated across them."""

from __future__ import annotations

from dataclasses import replace
from datetime import date
from typing import Any

import numpy as np
import polars as pl
import pytest

from assets.staging.stage import staged_dir
from quality._gx import E
from quality.changed_rows import validate_changed
from quality.checks import load_related
from quality.rules import AS_OF
from quality.runner import QualityResult, row_slices, validate
from quality.suites import rules_for
from rainbow.settings import Lake
from schemas import load_registry
from schemas.contract import DerivedTable
from tests.lakefiles import read_parquet
from tests.outcomes import outcome_key

REG = load_registry()


def assert_same(whole: QualityResult, sliced: QualityResult) -> None:
    assert sliced.slices > 1, whole.table
    assert [outcome_key(o) for o in sliced.outcomes] == [outcome_key(o) for o in whole.outcomes], whole.table
    assert sliced.unexpected_rows == whole.unexpected_rows, whole.table
    assert sliced.rows == whole.rows


def _spoiled(frame: pl.DataFrame, required: str) -> pl.DataFrame:
    """``frame`` with ``required`` blanked in eight rows spread over it (more than the five
    examples, so the examples come from several slices) and two rows repeated: one at the end,
    one in the middle (their keys then occur in two ranges of the frame)."""
    h = frame.height
    # h - 5 is also repeated: a late failure in the first slice (the repeated keys' slice)
    blank = sorted({1, 2, h // 3, h // 2, h // 2 + 1, 2 * h // 3, h - 5, h - 2})
    i = pl.int_range(pl.len())
    out = frame.with_columns(pl.when(i.is_in(blank)).then(None).otherwise(pl.col(required)).alias(required))
    return pl.concat([out.slice(0, h // 2), out.slice(10, 1), out.slice(h // 2), out.slice(h - 5, 1)])


def _required(columns: list[Any], key: tuple[str, ...]) -> str | None:
    return next((c.name for c in columns if not c.nullable and c.name not in key), None)


def _slice_rows(frame: pl.DataFrame) -> int:
    return max(5, frame.height // 4)


def test_slices_keep_each_key_s_copies_together_and_list_every_row_once() -> None:
    table = REG.table("screenings")
    rules = rules_for(table, REG)
    # the key is (screening_id, _delivery_date): "a" on one day twice, "c" on two days (unique)
    frame = pl.DataFrame(
        {
            "screening_id": ["a", "b", "c", "a", "d", "e", "c", "f", "g"],
            "_delivery_date": [date(2026, 11, 1)] * 6 + [date(2026, 11, 2)] * 3,
        }
    )
    slices = row_slices(frame, rules, 3)
    assert slices is not None
    assert [s.tolist() for s in slices] == [[0, 3], [1, 2, 4], [5, 6, 7], [8]]
    assert np.array_equal(np.sort(np.concatenate(slices)), np.arange(frame.height))
    assert row_slices(frame, rules, 9) is None  # small enough for one piece
    assert row_slices(frame, rules, 0) is None


def test_a_rule_judged_on_the_whole_batch_keeps_the_frame_in_one_piece() -> None:
    table = REG.table("screenings")
    rules = rules_for(table, REG)
    rule = next(r for r in rules if r.id == "completeness.not_null.name")
    lenient = replace(rule, expectation=E.ExpectColumnValuesToNotBeNull(column="name", mostly=0.9))
    frame = pl.DataFrame(
        {"screening_id": [str(i) for i in range(20)], "_delivery_date": [date(2026, 11, 1)] * 20}
    )
    assert row_slices(frame, [lenient, *rules[1:]], 5) is None
    assert row_slices(frame, rules, 5) is not None


@pytest.mark.parametrize("zone", ["staged", "library"])
def test_a_frame_validated_in_slices_reports_what_one_piece_reports(library_lake: Lake, zone: str) -> None:
    checked = 0
    if zone == "staged":
        tables: list[Any] = [t for _, t in REG.tables()]
    else:
        tables = [t for _, t in REG.derived_tables("library")]
    for table in tables:
        if zone == "staged":
            if not any(staged_dir(library_lake, table).rglob("*.parquet")):
                continue
            frame = read_parquet(staged_dir(library_lake, table) / "**" / "*.parquet")
            frame = frame.sort("_delivery_date", "_row_number")
            related = load_related(library_lake, table, REG)
        else:
            path = library_lake.library / table.name / "data.parquet"
            if not path.exists():
                continue
            frame = read_parquet(path).with_columns(pl.lit(date(2026, 11, 30)).alias(AS_OF))
            related = None
        if frame.height < 40:
            continue
        required = _required(list(table.columns), tuple(table.primary_key))
        if required is None:
            continue
        checked += 1
        spoiled = _spoiled(frame, required)
        whole = validate(spoiled, table, REG, related=related, unexpected_rows=True)
        assert whole.failed(), table.name  # the blanked values and the repeated keys fail
        sliced = validate(
            spoiled, table, REG, related=related, unexpected_rows=True, slice_rows=_slice_rows(spoiled)
        )
        assert_same(whole, sliced)
        if isinstance(table, DerivedTable):  # the first validation of a check (no ledger yet)
            first = validate_changed(
                spoiled, table, REG, as_of=date(2026, 11, 30), ledger=None, slice_rows=_slice_rows(spoiled)
            )
            assert first.result.slices > 1
            # the changed-rows path computes percentages its own way (100 * u / n): to 9 digits
            assert [outcome_key(o, 9) for o in first.result.outcomes] == [
                outcome_key(o, 9) for o in whole.outcomes
            ]
            assert first.passed.height == spoiled.height - len(whole.unexpected_rows or ())
    assert checked >= (10 if zone == "staged" else 5)

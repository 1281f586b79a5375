"""Library and mart checks that give GX only the rows not already known to pass
(:mod:`quality.changed_rows`) report what validating the whole table reports, rule for rule."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, timedelta
from typing import Any

import polars as pl
import pytest

from quality.changed_rows import Ledger, read_ledger, validate_changed
from quality.library_checks import DerivedBatch, validate_batches
from quality.rules import AS_OF
from quality.runner import QualityResult, validate
from quality.scorecard import load_thresholds
from rainbow.settings import Lake
from schemas import load_registry
from schemas.contract import DerivedTable
from tests.lakefiles import read_parquet
from tests.outcomes import outcome_key

REG = load_registry()


def assert_same(whole: QualityResult, changed: QualityResult) -> None:
    assert [outcome_key(o, 9) for o in changed.outcomes] == [outcome_key(o, 9) for o in whole.outcomes], (
        whole.table
    )
    assert changed.rows == whole.rows


def _frame(lake: Lake, table: str, as_of: date) -> pl.DataFrame:
    return read_parquet(lake.library / table / "data.parquet").with_columns(pl.lit(as_of).alias(AS_OF))


def _tables() -> list[DerivedTable]:
    return [t for _, t in REG.derived_tables("library")]  # a big fact's month batch: the same path


def _required(table: DerivedTable) -> str:
    return next(
        (c.name for c in table.columns if not c.nullable and c.name not in table.primary_key),
        table.primary_key[0],
    )


@pytest.fixture(scope="module")
def as_of(library_lake: Lake) -> date:
    from assets.library.build import as_of_date

    value = as_of_date(library_lake, REG)
    assert value is not None
    return date.fromisoformat(value)


def test_changed_rows_validation_equals_validating_the_whole_table_night_after_night(
    library_lake: Lake, as_of: date
) -> None:
    checked = 0
    for table in _tables():
        if not (library_lake.library / table.name / "data.parquet").exists():
            continue  # elder_key_changes: no key changed in a first build
        frame = _frame(library_lake, table.name, as_of)
        if frame.height < 50:
            continue
        checked += 1
        # 1. no ledger: every row goes to GX, the ledger is every row that passed
        first = validate_changed(frame, table, REG, as_of=as_of, ledger=None)
        assert first.mode == "whole" and first.result.validated_rows == frame.height
        assert_same(validate(frame, table, REG), first.result)
        ledger = Ledger(first.passed, as_of, first.fingerprint)
        # 2. the next night, nothing changed: GX sees no row, the outcome is the same
        later = as_of + timedelta(days=1)
        same = validate_changed(
            frame.with_columns(pl.lit(later).alias(AS_OF)), table, REG, as_of=later, ledger=ledger
        )
        assert same.mode == "changed" and same.result.validated_rows == 0, table.name
        assert_same(validate(frame.with_columns(pl.lit(later).alias(AS_OF)), table, REG), same.result)
        # 3. a required value blanked in two rows, one row edited (still valid) and an old row
        #    repeated: GX sees those rows and the old row now duplicated, the outcome is the table's
        required = _required(table)
        i = pl.int_range(pl.len())
        edited = frame.with_columns(
            pl.when(i.is_in([1, 2])).then(None).otherwise(pl.col(required)).alias(required)
        )
        free = [c.name for c in table.columns if c.type == "string" and c.nullable and c.codelist is None]
        if free:
            edited = edited.with_columns(
                pl.when(i == 4).then(pl.lit(None, dtype=pl.String)).otherwise(pl.col(free[0])).alias(free[0])
            )
        edited = pl.concat([edited, edited.slice(10, 1)])
        whole = validate(edited, table, REG)
        assert whole.failed(), table.name  # the blanked values and the repeated key fail
        changed = validate_changed(edited, table, REG, as_of=as_of, ledger=ledger)
        assert_same(whole, changed.result)
        edited_rows = 2 + (bool(free) and frame[free[0]][4] is not None)
        assert changed.result.validated_rows == edited_rows + 2, table.name  # + the repeated row, twice
        # 4. failing rows are not known to pass: they reach GX again the next night
        again = validate_changed(
            edited, table, REG, as_of=as_of, ledger=Ledger(changed.passed, as_of, changed.fingerprint)
        )
        assert again.result.validated_rows == 4 and again.passed.height == edited.height - 4, table.name
        assert_same(whole, again.result)
    assert checked >= 5


def test_a_ledger_of_other_rules_or_a_later_as_of_date_is_not_used(library_lake: Lake, as_of: date) -> None:
    table = REG.derived("dim_elder")
    frame = _frame(library_lake, table.name, as_of)
    first = validate_changed(frame, table, REG, as_of=as_of, ledger=None)
    other = validate_changed(
        frame, table, REG, as_of=as_of, ledger=Ledger(first.passed, as_of, "another suite")
    )
    assert other.mode == "whole" and other.result.validated_rows == frame.height
    earlier = as_of - timedelta(days=1)
    back = validate_changed(
        frame.with_columns(pl.lit(earlier).alias(AS_OF)),
        table,
        REG,
        as_of=earlier,
        ledger=Ledger(first.passed, as_of, first.fingerprint),
    )
    assert back.mode == "whole" and "later as-of" in back.reason


def test_the_check_keeps_its_ledger_in_the_lake_and_validates_whole_when_it_cannot_stand_for_the_table(
    library_lake: Lake, as_of: date, tmp_path: Any
) -> None:
    lake = Lake(tmp_path / "lake")
    table = REG.derived("elder_links")
    frame = _frame(library_lake, table.name, as_of)
    limits = load_thresholds()
    limits = limits.model_copy(update={"checks": limits.checks.model_copy(update={"changed_rows_above": 0})})
    logged: list[str] = []

    def run(f: pl.DataFrame) -> QualityResult:
        (res,) = validate_batches(
            [DerivedBatch("all", f)],
            [],
            table,
            REG,
            lake=lake,
            as_of=as_of,
            thresholds=limits,
            log=logged.append,
        )
        return res

    assert run(frame).validated_rows == frame.height and read_ledger(lake, REG, table.name) is not None
    assert run(frame).validated_rows == 0  # the ledger was read back from the lake (encrypted like the table)
    assert "GX validated 0 of" in logged[-1]
    # a column of another type fails a table-level rule: the table is validated whole, the ledger dropped
    broken = frame.with_columns(pl.col("match_probability").cast(pl.String))
    res = run(broken)
    assert res.validated_rows is None and "conformance.type.match_probability" in {
        o.rule_id for o in res.failed()
    }
    assert read_ledger(lake, REG, table.name) is None and "validated whole" in logged[-1]
    # below the threshold a table is validated whole, as before
    (small,) = validate_batches([DerivedBatch("all", frame)], [], table, REG, lake=lake, as_of=as_of)
    assert small.validated_rows is None and read_ledger(lake, REG, table.name) is None
    assert_same(validate(frame, table, REG), replace(small))


def test_rules_a_passed_row_could_fail_later_or_judged_on_the_whole_batch_are_validated_whole() -> None:
    from quality._gx import E
    from quality.changed_rows import Unsupported, _counted
    from quality.rules import QualityRule, as_of_end

    def rule(expectation: Any, **derived: pl.Expr) -> QualityRule:
        return QualityRule(id="r", family="timeliness", expectation=expectation, zh="r", derived=derived)

    # "the as-of's end is after this date" keeps passing as the as-of date moves on: counted
    ends = rule(
        E.ExpectColumnPairValuesAToBeGreaterThanB(column_A="_dq_end", column_B="d"), _dq_end=as_of_end()
    )
    assert _counted(ends) is not None
    # an age at the as-of date can pass today and fail later: not by changed rows
    age = (pl.col(AS_OF) - pl.col("d")).dt.total_days()
    with pytest.raises(Unsupported, match="as-of"):
        _counted(
            rule(E.ExpectColumnValuesToBeBetween(column="_dq_age", min_value=0, max_value=30), _dq_age=age)
        )
    with pytest.raises(Unsupported, match="as-of"):
        _counted(rule(E.ExpectColumnPairValuesAToBeGreaterThanB(column_A=AS_OF, column_B="d")))
    # "mostly": success depends on the share over the whole batch
    with pytest.raises(Unsupported, match="mostly"):
        _counted(rule(E.ExpectColumnValuesToNotBeNull(column="d", mostly=0.9)))


def test_without_a_ledger_a_failing_table_level_rule_keeps_gx_s_whole_result_and_no_ledger(
    library_lake: Lake, as_of: date
) -> None:
    table = REG.derived("elder_links")
    frame = _frame(library_lake, table.name, as_of).with_columns(pl.col("match_probability").cast(pl.String))
    checked = validate_changed(frame, table, REG, as_of=as_of, ledger=None)
    assert not checked.keep_ledger and checked.passed.height == 0 and checked.result.validated_rows is None
    assert_same(validate(frame, table, REG), checked.result)  # GX ran once, on every row

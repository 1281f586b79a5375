"""rainbow.frames.best_per_group: the packed-key path gives what a sort and group_by give."""

from __future__ import annotations

import random

import polars as pl
import pytest

from rainbow.frames import best_per_group, rank_packing


def _by_sort(frame: pl.DataFrame, groups: list[str], weight: str, tie: str) -> pl.DataFrame:
    """The reference: every row sorted, each group's first row (output order = sorted order)."""
    return (
        frame.select(*groups, tie, weight)
        .sort([weight, tie, *groups], descending=[True, False, *[False] * len(groups)], nulls_last=True)
        .group_by(groups, maintain_order=True)
        .first()
    )


def _frame(seed: int, rows: int, levels: int, tie_max: int) -> pl.DataFrame:
    rng = random.Random(seed)
    weights = [rng.uniform(-20, 20) for _ in range(levels)]
    return pl.DataFrame(
        {
            "l": [rng.randrange(40) for _ in range(rows)],
            "c": [rng.randrange(6) for _ in range(rows)],
            "r": [rng.randrange(tie_max) for _ in range(rows)],
            "w": [rng.choice(weights) for _ in range(rows)],
        }
    )


@pytest.mark.parametrize("seed", range(6))
def test_packed_keys_choose_and_order_like_the_sort(seed: int) -> None:
    frame = _frame(seed, rows=3000, levels=25, tie_max=500)  # many ties of weight and of r
    assert rank_packing(frame, "w", "r") is not None
    got = best_per_group(frame, ["l", "c"], "w", "r")
    assert got.equals(_by_sort(frame, ["l", "c"], "w", "r"))
    assert got.height == frame.select("l", "c").n_unique()


def test_one_group_column_and_distinct_weights() -> None:
    frame = _frame(7, rows=2000, levels=2000, tie_max=10**6)
    assert rank_packing(frame, "w", "r") is not None
    assert best_per_group(frame, ["l"], "w", "r").equals(_by_sort(frame, ["l"], "w", "r"))


@pytest.mark.parametrize(
    "case",
    ["huge tie", "negative tie", "null weight", "nan weight", "null tie"],
)
def test_frames_that_cannot_be_packed_take_the_sort(case: str) -> None:
    frame = _frame(3, rows=500, levels=10, tie_max=100)
    if case == "huge tie":  # 62 bits of tie leave none for the weight's rank
        frame = frame.with_columns(pl.col("r") + (1 << 61))
    elif case == "negative tie":
        frame = frame.with_columns(pl.col("r") - 50)
    elif case == "null weight":
        frame = frame.with_columns(pl.when(pl.col("r") % 7 == 0).then(None).otherwise(pl.col("w")).alias("w"))
    elif case == "nan weight":
        frame = frame.with_columns(
            pl.when(pl.col("r") % 7 == 0).then(float("nan")).otherwise(pl.col("w")).alias("w")
        )
    else:
        frame = frame.with_columns(pl.when(pl.col("r") % 7 == 0).then(None).otherwise(pl.col("r")).alias("r"))
    assert rank_packing(frame, "w", "r") is None
    got = best_per_group(frame, ["l", "c"], "w", "r")
    # by hand: a number beats a missing weight (null, NaN), a higher one a lower; then the smaller
    # tie (a null tie last); the groups' best rows in the same order, then by group
    rows = frame.rows(named=True)

    def rank(row: dict[str, object]) -> tuple[object, ...]:
        w, r = row["w"], row["r"]
        missing_w = w is None or w != w
        return (missing_w, 0.0 if missing_w else -w, r is None, r or 0, row["l"], row["c"])  # type: ignore[operator]

    best: dict[tuple[object, object], dict[str, object]] = {}
    for row in sorted(rows, key=rank):
        best.setdefault((row["l"], row["c"]), row)
    want = [best[k] for k in sorted(best, key=lambda k: rank(best[k]))]
    assert [(r["l"], r["c"], r["r"]) for r in got.rows(named=True)] == [
        (r["l"], r["c"], r["r"]) for r in want
    ]
    assert got.equals(_by_sort(frame, ["l", "c"], "w", "r")) == (case not in ("nan weight",))


def test_the_packed_path_keeps_the_tie_type_and_an_empty_frame_its_columns() -> None:
    frame = _frame(1, rows=100, levels=5, tie_max=50).with_columns(pl.col("r").cast(pl.UInt32))
    assert rank_packing(frame, "w", "r") is not None
    got = best_per_group(frame, ["l"], "w", "r")
    assert got.schema == pl.Schema({"l": pl.Int64(), "r": pl.UInt32(), "w": pl.Float64()})
    empty = best_per_group(frame.clear(), ["l", "c"], "w", "r")
    assert empty.height == 0 and empty.columns == ["l", "c", "r", "w"]

"""Small Polars helpers shared by the library and the marts."""

from __future__ import annotations

import polars as pl


def keys_repeat(frame: pl.DataFrame, keys: list[str]) -> bool:
    """Whether some value of ``keys`` occurs in two rows. A 64-bit hash of each row's keys first:
    no hash twice means no value twice (the usual case, a third of the exact check: a district
    day's water block 34 vs 82 ms); only when a hash repeats are the values compared."""
    if frame.height < 2:
        return False
    if frame.select(pl.struct(keys).hash().n_unique()).item() == frame.height:
        return False
    return bool(frame.select(keys).is_duplicated().any())


def rank_packing(frame: pl.DataFrame, weight: str, tie: str) -> tuple[pl.Series, int] | None:
    """For :func:`best_per_group`: the distinct weights ascending and the bits of ``tie``, when
    a weight's rank and a tie fit one int64 (no null or NaN weight, ties non-negative integers,
    62 bits for both); else None."""
    w, t = frame[weight], frame[tie]
    if (
        frame.height == 0
        or not t.dtype.is_integer()
        or not w.dtype.is_numeric()
        or w.null_count()
        or t.null_count()
        or (w.dtype.is_float() and bool(w.is_nan().any()))
        or int(t.min()) < 0  # type: ignore[arg-type]
    ):
        return None
    levels = w.unique().sort()
    tie_bits = int(t.max()).bit_length()  # type: ignore[arg-type]
    return (levels, tie_bits) if tie_bits + levels.len().bit_length() <= 62 else None


def best_per_group(frame: pl.DataFrame, groups: list[str], weight: str, tie: str) -> pl.DataFrame:
    """Per value of ``groups``, the row of the highest ``weight``, a tie to the smallest ``tie``:
    columns ``groups``, ``tie``, ``weight``; rows by ``weight`` descending, then ``tie``, then
    ``groups`` ascending (a null or NaN weight, or a null tie, last).

    What ``sort(weight desc, tie) .group_by(groups, maintain_order=True).first()`` gives, without
    sorting every row: when a row's rank among the distinct weights and its ``tie`` (a
    non-negative integer) fit one int64 together (:func:`rank_packing`), they are packed so that
    the minimum per group is the best row, and only the groups' best rows are sorted (the year's
    MEI: 14.8 M candidate pairs of weak profiles, whose match weights, sums of per-comparison
    levels, take 1,922 values: 4.0 -> 2.2 s, ``/work/benchlogs/spp_alt.py``). Otherwise, the sort."""
    packing = rank_packing(frame, weight, tie)
    if packing is None:
        by_weight = pl.col(weight).fill_nan(None) if frame[weight].dtype.is_float() else pl.col(weight)
        return (
            frame.select(*groups, tie, weight)
            .sort(
                [by_weight, tie, *groups], descending=[True, False, *[False] * len(groups)], nulls_last=True
            )
            .group_by(groups, maintain_order=True)
            .first()
        )
    levels, tie_bits = packing  # levels ascending: a weight's rank counts from the highest
    shift = 1 << tie_bits
    rank = (levels.len() - 1 - levels.search_sorted(frame[weight], side="left")).cast(pl.Int64)
    best = (
        frame.select(*groups, _key=pl.lit(rank) * shift + pl.col(tie).cast(pl.Int64))
        .group_by(groups)
        .agg(pl.col("_key").min())
        .sort(["_key", *groups])
    )
    top = (levels.len() - 1 - best["_key"] // shift).cast(pl.UInt32)
    return best.select(
        *groups,
        (pl.col("_key") % shift).cast(frame[tie].dtype).alias(tie),
        levels.gather(top).alias(weight),
    )

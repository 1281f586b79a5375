"""Release de-identification: generalisation hierarchies, k-anonymity, risk metrics, cell suppression.

Pure functions on Polars frames, used by :mod:`masking.export` (and testable alone).

**Hierarchies** (:func:`hierarchy_for`, chosen from a column's contract): each quasi-identifier
has a ladder of levels from the value itself to ``*`` (suppressed):

=============  ==============================================================
age            age -> 5-year band -> 10-year band -> 60-79 / 80+ -> *
age_band       5-year band (the code) -> 10-year band -> 60-79 / 80+ -> *
birth_date     date -> year -> 5 years -> 10 years -> *
date           date -> month -> quarter -> year -> *
timestamp      timestamp -> date -> month -> quarter -> *
street         street code -> district code (first six digits + 000000) -> *
numeric        value -> range (width w) -> wide range (width 5w) -> *  (w: a 1/2/5 x 10^n
               step of at least a tenth of the contract's plausible range, else of the data's)
anything else  value -> *  (sex, code lists, booleans, committees, other identifiers)
=============  ==============================================================

**k-anonymity** (:func:`anonymise`), after ARX / Samarati: the generalisation lattice (one level
per quasi-identifier, at least each column's minimum level) is searched from the bottom up,
height by height (height = sum of levels); the first height with a node whose equivalence
classes of fewer than k leave at most ``max_suppression`` of the records wins (fewest suppressed
records, then the least normalised generalisation, then the node's order), and the records of
its classes under k are suppressed (removed). Classes are counted in *persons* when the data
carries a person key (an elder's many service events are one person, not many records), else
in records; rows without a person key (records not linked to an elder) count together as one
person, which can only make classes look smaller (the safe side).

**Risk** (:func:`risk_metrics`), in ARX's three attacker models over the released records:
prosecutor (the attacker knows the target is in the release: risk 1/f of the target's class,
f its size in the release), journalist (the attacker knows the target is in a population: risk
1/F, F the size of the class in the population; the population table of library data is the
master elder index ``dim_elder``, see :mod:`masking.export`), marketer (expected share of
records re-identified when everybody is attacked: mean over records of 1/F).

**Aggregates** (:func:`aggregate_cells`): a cell with fewer than k persons (records when there
is no person key) is suppressed (measures NULL, ``suppressed`` true, ``suppression`` =
``primary``); then, so that a suppressed cell cannot be recovered as a line total minus the
published cells, every line of the table (the cells sharing all group-by values but one; the
whole table for one group-by column) holding exactly one suppressed cell gets a second one
(the published cell with the fewest persons: ``complementary``), until no line has a lone one.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import polars as pl

from schemas.contract import Column

STAR = "*"
PERSON = "__person"  # internal column: the person behind a row (never exported)
_NULL = "\x00"
# The lattice search gives up beyond this many nodes (a release with too many quasi-identifiers).
MAX_NODES = 50_000

HierarchyKind = Literal[
    "age", "age_band", "birth_date", "date", "timestamp", "street", "numeric", "categorical"
]


class ReleaseError(ValueError):
    """The release cannot reach k (e.g. fewer than k persons in the data)."""


@dataclass(frozen=True)
class Hierarchy:
    """A generalisation ladder: ``levels[0]`` is the value itself, ``levels[-1]`` is ``*``."""

    kind: HierarchyKind
    levels: tuple[str, ...]
    width: float | None = None  # numeric: the first level's range width

    @property
    def top(self) -> int:
        return len(self.levels) - 1

    def level(self, name: str) -> int:
        """The index of a level by name (``month``, ``5y``, ``*``...); ValueError if unknown."""
        try:
            return self.levels.index(name)
        except ValueError:
            raise ValueError(f"no level {name!r} in {self.kind} ({' -> '.join(self.levels)})") from None

    def describe(self) -> str:
        if self.kind == "numeric" and self.width is not None:
            w = self.width
            return f"value -> range (width {w:g}) -> wide range (width {w * 5:g}) -> {STAR}"
        return " -> ".join(self.levels)

    def generalise(self, series: pl.Series, level: int) -> pl.Series:
        """``series`` at ``level`` (level 0: unchanged; above: text; nulls stay null below ``*``)."""
        if level <= 0:
            return series
        name = series.name
        if level >= self.top:
            return pl.Series(name, [STAR] * series.len(), dtype=pl.String)
        v = pl.col("v")
        expr = _LEVEL_EXPRS[self.kind](v, self.levels[level], self.width)
        return pl.DataFrame({"v": series}).select(expr.cast(pl.String).alias(name)).to_series()


def _age_expr(v: pl.Expr, level: str, _w: float | None) -> pl.Expr:
    if level == "5y":
        lo = (v // 5) * 5
        band = lo.cast(pl.String) + "-" + (lo + 4).cast(pl.String)
        return pl.when(v < 60).then(pl.lit("<60")).when(v >= 100).then(pl.lit("100+")).otherwise(band)
    if level == "10y":
        lo = (v // 10) * 10
        band = lo.cast(pl.String) + "-" + (lo + 9).cast(pl.String)
        return pl.when(v < 60).then(pl.lit("<60")).when(v >= 90).then(pl.lit("90+")).otherwise(band)
    return pl.when(v < 60).then(pl.lit("<60")).when(v < 80).then(pl.lit("60-79")).otherwise(pl.lit("80+"))


_BAND_10Y = {
    "60-64": "60-69",
    "65-69": "60-69",
    "70-74": "70-79",
    "75-79": "70-79",
    "80-84": "80-89",
    "85-89": "80-89",
    "90-94": "90+",
    "95-99": "90+",
    "100+": "90+",
    "<60": "<60",
}
_BAND_COARSE = {
    "60-64": "60-79",
    "65-69": "60-79",
    "70-74": "60-79",
    "75-79": "60-79",
    "<60": "<60",
}


def _age_band_expr(v: pl.Expr, level: str, _w: float | None) -> pl.Expr:
    if level == "10y":
        return v.replace_strict(_BAND_10Y, default=v, return_dtype=pl.String)
    return pl.when(v.is_null()).then(None).otherwise(v.replace_strict(_BAND_COARSE, default=pl.lit("80+")))


def _birth_date_expr(v: pl.Expr, level: str, _w: float | None) -> pl.Expr:
    year = v.dt.year()
    if level == "year":
        return year.cast(pl.String)
    step = 5 if level == "5y" else 10
    lo = (year // step) * step
    return lo.cast(pl.String) + "-" + (lo + step - 1).cast(pl.String)


def _date_expr(v: pl.Expr, level: str, _w: float | None) -> pl.Expr:
    if level == "date":
        return v.dt.strftime("%Y-%m-%d")
    if level == "month":
        return v.dt.strftime("%Y-%m")
    if level == "quarter":
        return v.dt.year().cast(pl.String) + "-Q" + v.dt.quarter().cast(pl.String)
    return v.dt.year().cast(pl.String)


def _street_expr(v: pl.Expr, _level: str, _w: float | None) -> pl.Expr:
    return v.cast(pl.String).str.slice(0, 6) + "000000"


def _numeric_expr(v: pl.Expr, level: str, w: float | None) -> pl.Expr:
    width = (w or 1.0) * (5 if level == "wide range" else 1)
    lo = (v.cast(pl.Float64) / width).floor() * width
    hi = lo + width
    return pl.format("[{}, {})", _num_text(lo), _num_text(hi))


def _num_text(e: pl.Expr) -> pl.Expr:
    """A float without a trailing .0 when it is whole."""
    whole = e.cast(pl.Int64).cast(pl.String)
    return pl.when(e == e.round(0)).then(whole).otherwise(e.round(6).cast(pl.String))


def _categorical_expr(v: pl.Expr, _level: str, _w: float | None) -> pl.Expr:
    return v


_LEVEL_EXPRS: dict[str, Any] = {
    "age": _age_expr,
    "age_band": _age_band_expr,
    "birth_date": _birth_date_expr,
    "date": _date_expr,
    "timestamp": _date_expr,
    "street": _street_expr,
    "numeric": _numeric_expr,
    "categorical": _categorical_expr,
}


def nice_width(span: float) -> float:
    """The smallest 1, 2 or 5 x 10^n of at least ``span / 10`` (1 for an empty span)."""
    target = span / 10
    if not math.isfinite(target) or target <= 0:
        return 1.0
    exp = math.floor(math.log10(target))
    for step in (1, 2, 5, 10):
        w = step * 10.0**exp
        if w >= target * (1 - 1e-12):
            return w
    return 10.0 ** (exp + 1)


def hierarchy_for(column: Column, data: pl.Series | None = None) -> Hierarchy:
    """The generalisation ladder of a contract column (``data`` sizes a numeric column's ranges)."""
    if column.codelist == "age_band":
        return Hierarchy("age_band", ("5y", "10y", "60-79/80+", STAR))
    if column.type == "integer" and (column.name == "age" or column.name.endswith("_age")):
        return Hierarchy("age", ("age", "5y", "10y", "60-79/80+", STAR))
    if column.type == "date" and column.name.endswith("birth_date"):
        return Hierarchy("birth_date", ("date", "year", "5y", "10y", STAR))
    if column.type == "date":
        return Hierarchy("date", ("date", "month", "quarter", "year", STAR))
    if column.type == "timestamp":
        return Hierarchy("timestamp", ("timestamp", "date", "month", "quarter", STAR))
    if column.semantic == "street":
        return Hierarchy("street", ("street", "district", STAR))
    if column.type in ("integer", "decimal") and column.semantic not in ("identifier", "code"):
        if column.range is not None:
            span = column.range[1] - column.range[0]
        elif data is not None and data.drop_nulls().len():
            span = float(data.max()) - float(data.min())  # type: ignore[arg-type]
        else:
            span = 10.0
        w = nice_width(span)
        return Hierarchy("numeric", ("value", "range", "wide range", STAR), width=w)
    return Hierarchy("categorical", ("value", STAR))


@dataclass(frozen=True)
class QuasiIdentifier:
    column: str
    hierarchy: Hierarchy
    min_level: int = 0


@dataclass
class Anonymised:
    frame: pl.DataFrame  # released rows, quasi-identifiers generalised
    levels: dict[str, int]  # chosen level per quasi-identifier
    suppressed: int  # records removed
    nodes_evaluated: int
    unit: str  # "persons" or "records"
    hierarchies: dict[str, Hierarchy] = field(default_factory=dict)

    def level_names(self) -> dict[str, str]:
        return {c: self.hierarchies[c].levels[lvl] for c, lvl in self.levels.items()}


def _codes(series: pl.Series) -> pl.Series:
    """Dense integer codes of a series' values (null is a value of its own)."""
    return series.cast(pl.String).fill_null(_NULL).rank("dense").cast(pl.UInt32)


def _units_expr(person: str | None) -> pl.Expr:
    return pl.col(person).n_unique() if person else pl.len()


def _nodes_at_height(mins: Sequence[int], maxs: Sequence[int], height: int) -> Iterator[tuple[int, ...]]:
    if not mins:
        if height == 0:
            yield ()
        return
    rest_min, rest_max = sum(mins[1:]), sum(maxs[1:])
    for lvl in range(mins[0], maxs[0] + 1):
        remaining = height - lvl
        if rest_min <= remaining <= rest_max:
            for tail in _nodes_at_height(mins[1:], maxs[1:], remaining):
                yield (lvl, *tail)


def anonymise(
    frame: pl.DataFrame,
    qis: Sequence[QuasiIdentifier],
    k: int,
    max_suppression: float = 0.05,
    person: str | None = None,
) -> Anonymised:
    """``frame`` made k-anonymous on ``qis``: lowest generalisation, then suppression (see module doc).

    ``person`` names a column identifying the person behind each row: classes are then counted in
    distinct persons. Raises :class:`ReleaseError` when no node of the lattice reaches k within
    the suppression limit.
    """
    unit = "persons" if person else "records"
    hierarchies = {q.column: q.hierarchy for q in qis}
    n = frame.height
    if not qis or n == 0:  # nothing to search: the minimum levels
        levels = {q.column: q.min_level for q in qis}
        out = frame.with_columns(
            [q.hierarchy.generalise(frame.get_column(q.column), q.min_level) for q in qis]
        )
        return Anonymised(out, levels, 0, 0, unit, hierarchies)
    codes: dict[str, pl.Series] = {}
    for i, q in enumerate(qis):
        src = frame.get_column(q.column)
        for lvl in range(q.min_level, q.hierarchy.top + 1):
            codes[f"q{i}_{lvl}"] = _codes(q.hierarchy.generalise(src, lvl)).alias(f"q{i}_{lvl}")
    table = pl.DataFrame(list(codes.values()))
    if person:
        table = table.with_columns(_codes(frame.get_column(person)).alias(PERSON))
    units = _units_expr(PERSON if person else None)
    allowed = math.floor(max_suppression * n + 1e-9)

    def evaluate(node: tuple[int, ...]) -> int:
        cols = [f"q{i}_{lvl}" for i, lvl in enumerate(node)]
        classes = table.group_by(cols).agg(units.alias("f"), pl.len().alias("n"))
        return int(classes.filter(pl.col("f") < k).get_column("n").sum())

    mins = [q.min_level for q in qis]
    maxs = [q.hierarchy.top for q in qis]
    evaluated = 0
    chosen: tuple[int, ...] | None = None
    chosen_suppressed = 0
    for height in range(sum(mins), sum(maxs) + 1):
        feasible: list[tuple[int, float, tuple[int, ...]]] = []
        for node in _nodes_at_height(mins, maxs, height):
            evaluated += 1
            if evaluated > MAX_NODES:
                raise ReleaseError(
                    f"k-anonymity search gave up after {MAX_NODES} lattice nodes: too many quasi-identifiers"
                )
            suppressed = evaluate(node)
            if suppressed <= allowed:
                loss = sum(lvl / top for lvl, top in zip(node, maxs, strict=True))
                feasible.append((suppressed, loss, node))
        if feasible:
            chosen_suppressed, _, chosen = min(feasible)
            break
    if chosen is None:
        total_units = table.select(units).item()
        raise ReleaseError(
            f"no generalisation reaches k={k} with at most {max_suppression:.0%} of records suppressed "
            f"(the data hold {total_units} {unit})"
        )
    cols = [f"q{i}_{lvl}" for i, lvl in enumerate(chosen)]
    keep = (
        table.with_columns(units.over(cols).alias("f")).select(pl.col("f") >= k).to_series()
        if person
        else table.with_columns(pl.len().over(cols).alias("f")).select(pl.col("f") >= k).to_series()
    )
    out = frame.with_columns(
        [q.hierarchy.generalise(frame.get_column(q.column), lvl) for q, lvl in zip(qis, chosen, strict=True)]
    ).filter(keep)
    levels = {q.column: lvl for q, lvl in zip(qis, chosen, strict=True)}
    return Anonymised(out, levels, chosen_suppressed, evaluated, unit, hierarchies)


def _ratio(x: float) -> float:
    return round(float(x), 6)


def risk_metrics(
    frame: pl.DataFrame,
    qi_columns: Sequence[str],
    k: int,
    person: str | None = None,
    population: pl.DataFrame | None = None,
) -> dict[str, Any]:
    """Re-identification risk of released rows, ARX style (see module doc).

    ``population``: one row per person of the population, with the same (generalised)
    quasi-identifier columns; without it the release is taken as the whole population
    (journalist risk = prosecutor risk).
    """
    cols = list(qi_columns)
    unit = "persons" if person else "records"
    n = frame.height
    if n == 0:
        return {"records": 0, "unit": unit, "equivalence_classes": 0, "k_required": k, "k_achieved": None}
    keyed = frame.with_columns(pl.lit(0).alias("__all")) if not cols else frame
    group = cols or ["__all"]
    classes = keyed.group_by(group).agg(_units_expr(person).alias("f"), pl.len().alias("n"))
    if population is not None and cols:
        pop = population.group_by(cols).agg(pl.len().alias("F"))
        classes = classes.join(pop, on=cols, how="left", nulls_equal=True).with_columns(
            pl.max_horizontal(pl.col("F").fill_null(0), pl.col("f")).alias("F")
        )
    else:
        classes = classes.with_columns(pl.col("f").alias("F"))
    f_min = int(classes.get_column("f").min())  # type: ignore[arg-type]
    f_max = int(classes.get_column("f").max())  # type: ignore[arg-type]
    big_f_min = int(classes.get_column("F").min())  # type: ignore[arg-type]
    total_units = int(classes.get_column("f").sum())
    threshold = 1 / k
    at_risk = int(classes.filter(1 / pl.col("f") > threshold + 1e-12).get_column("n").sum())
    at_highest = int(classes.filter(pl.col("f") == f_min).get_column("n").sum())
    marketer = float(classes.select((pl.col("f") / pl.col("F")).sum()).item()) / total_units
    out: dict[str, Any] = {
        "records": n,
        "unit": unit,
        "equivalence_classes": classes.height,
        "k_required": k,
        "k_achieved": f_min,
        "smallest_class": f_min,
        "largest_class": f_max,
        "average_class_size": _ratio(total_units / classes.height),
        "prosecutor_risk": {
            "highest": _ratio(1 / f_min),
            "average": _ratio(classes.height / total_units),
            "records_at_highest_risk": _ratio(at_highest / n),
            "records_above_1_over_k": _ratio(at_risk / n),
        },
        "journalist_risk": {
            "highest": _ratio(1 / big_f_min),
            "smallest_population_class": big_f_min,
        },
        "marketer_risk": _ratio(marketer),
    }
    if person:
        out["persons"] = int(frame.get_column(person).n_unique())
    return out


@dataclass(frozen=True)
class Measure:
    name: str
    op: Literal["count", "persons", "sum", "mean", "min", "max"]
    column: str | None = None


def _measure_expr(m: Measure, person: str | None) -> pl.Expr:
    if m.op == "count":
        return pl.len().cast(pl.Int64).alias(m.name)
    if m.op == "persons":
        if not person:
            raise ValueError(f"measure {m.name}: counting persons needs a person key")
        return pl.col(person).drop_nulls().n_unique().cast(pl.Int64).alias(m.name)
    col = pl.col(m.column or m.name)
    expr: pl.Expr = getattr(col, m.op)()
    return expr.alias(m.name)


def aggregate_cells(
    frame: pl.DataFrame,
    group_by: Sequence[str],
    measures: Sequence[Measure],
    k: int,
    person: str | None = None,
) -> tuple[pl.DataFrame, dict[str, Any]]:
    """Cells of ``frame`` grouped by ``group_by`` with primary and complementary suppression.

    Returns the cells (group-by columns, measures, ``suppressed``, ``suppression``), sorted by the
    group-by columns, and a report (cells, primary and complementary suppressions, the smallest
    published cell).
    """
    keys = list(group_by)
    units = _units_expr(person).alias("__units")
    cells = (
        frame.group_by(keys)
        .agg([units, *[_measure_expr(m, person) for m in measures]])
        .sort(keys, nulls_last=True)
        .with_row_index("__cell")
    )
    status = pl.when(pl.col("__units") < k).then(pl.lit("primary")).otherwise(pl.lit(None, dtype=pl.String))
    cells = cells.with_columns(status.alias("suppression"))
    primary = int(cells.get_column("suppression").is_not_null().sum())
    complementary = 0
    changed = primary > 0
    rounds = 0
    while changed and rounds < 1000:
        rounds += 1
        changed = False
        for d in keys:
            others = [c for c in keys if c != d]
            supp = pl.col("suppression").is_not_null()
            if others:
                n_cells, n_supp = pl.len().over(others), supp.sum().over(others)
            else:
                n_cells, n_supp = pl.len(), supp.sum()
            lines = cells.with_columns(n_cells.alias("__n"), n_supp.alias("__s"))
            candidates = lines.filter((pl.col("__n") >= 2) & (pl.col("__s") == 1) & ~supp)
            if candidates.height == 0:
                continue
            candidates = candidates.sort(["__units", "__cell"])
            picked = (
                candidates.group_by(others, maintain_order=True).first() if others else candidates.head(1)
            ).get_column("__cell")
            cells = cells.with_columns(
                pl.when(pl.col("__cell").is_in(picked.implode()))
                .then(pl.lit("complementary"))
                .otherwise(pl.col("suppression"))
                .alias("suppression")
            )
            complementary += picked.len()
            changed = True
    suppressed = pl.col("suppression").is_not_null()
    published = cells.filter(~suppressed).get_column("__units")
    out = cells.with_columns(
        [pl.when(suppressed).then(None).otherwise(pl.col(m.name)).alias(m.name) for m in measures]
    ).with_columns(suppressed.alias("suppressed"))
    out = out.select([*keys, *[m.name for m in measures], "suppressed", "suppression"])
    report = {
        "cells": cells.height,
        "unit": "persons" if person else "records",
        "k_required": k,
        "primary_suppressed": primary,
        "complementary_suppressed": complementary,
        "smallest_published_cell": int(published.min()) if published.len() else None,  # type: ignore[arg-type]
    }
    return out, report


def classes_in(frame: pl.DataFrame, qi_columns: Sequence[str], person: str | None = None) -> pl.DataFrame:
    """Equivalence classes of ``frame`` with their size ``f`` (persons or records): for checks."""
    return frame.group_by(list(qi_columns)).agg(_units_expr(person).alias("f"))


__all__ = [
    "STAR",
    "Anonymised",
    "Hierarchy",
    "Measure",
    "QuasiIdentifier",
    "ReleaseError",
    "aggregate_cells",
    "anonymise",
    "classes_in",
    "hierarchy_for",
    "nice_width",
    "risk_metrics",
]

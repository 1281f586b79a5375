"""Validate the rows of a library or mart table that have not already passed (已通过行不重复校验).

A big library or mart table is rebuilt every night (the golden record, the links, the attribute
provenance, the portraits), yet most of its rows come out as they were. Validating all of them
with GX again each night made the checks grow with the district and its history (400,000
elders: ``dim_elder`` 7 s, the provenance's 4.4 M rows 5 s, the links 4 s). Here the check of a
batch - the whole table, or a big fact's newest month (``checks.derived_batches``) - gives GX only

* rows whose content no earlier validation saw pass: every column but ``_as_of`` hashed
  (Polars ``hash_rows``), looked up in the table's *passed-rows ledger*;
* every row whose values in a uniqueness rule's columns occur more than once in the table (a
  new row can make an old one a duplicate);

and reports outcomes equal to validating the whole batch, rule for rule: GX's unexpected rows,
since every row that can fail is in the batch (a ledger row passed every rule, its content is
unchanged, the rules read one row at a time - their derived ``_dq_*`` columns are row-wise - and
the only input besides the row, the as-of date, enters rules of the form "date before the
as-of's end", which a later as-of keeps passing); the element and missing counts of each map
rule counted over the whole table in Polars (:func:`rule_counts`), so percentages and scores are
the whole table's; examples the same rows, since the batch keeps the table's order.

Safety nets, each falling back to validating the whole table: no ledger, or one written for
other rules, code, columns or Polars (:func:`fingerprint`), or at a later as-of date; a rule of a
kind not counted here, or one reading other tables; the counts of :func:`rule_counts` disagreeing
with GX's on the batch itself; a rule not evaluated or a table-level rule failing on the batch.

The ledger (``<zone>/_cache/validated/<table>.parquet``, encrypted like the table) holds the
hashes of the table's rows that passed every rule, rewritten after each validation: rows that
failed are validated again every night until they are mended.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, replace
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa

from quality.rules import AS_OF, QualityRule, as_of_end
from quality.runner import Outcome, QualityResult, prepare, repeated_keys, rule_columns, validate
from quality.suites import rules_for
from rainbow.io import atomic_path
from rainbow.parquet import file_metadata, read_frame, write_frame
from rainbow.settings import Lake
from schemas.contract import DerivedTable
from schemas.registry import Registry

HASH = "row_hash"
HASH2 = "row_hash_2"
LEDGER_STATE = "rainbow.validated"
HASH_SEED = 20261205
HASH_SEED_2 = 5021621

# GX map expectations whose element and missing counts :func:`rule_counts` reproduces
SINGLE_COLUMN = frozenset(
    {
        "expect_column_values_to_not_be_null",
        "expect_column_values_to_be_null",
        "expect_column_values_to_be_in_set",
        "expect_column_values_to_be_between",
        "expect_column_values_to_match_regex",
        "expect_column_values_to_be_unique",
    }
)
SKIP_MISSING = frozenset({"expect_column_values_to_not_be_null", "expect_column_values_to_be_null"})
COLUMN_PAIR = frozenset({"expect_column_pair_values_a_to_be_greater_than_b"})
MULTI_COLUMN = frozenset({"expect_compound_columns_to_be_unique"})
# whole-batch rules: the batch has the table's columns and types, so their outcome is the table's
TYPE_RULE = "expect_column_values_to_be_of_type"
TABLE_LEVEL = frozenset({TYPE_RULE, "expect_table_columns_to_match_set"})
_CODE = (
    Path(__file__),
    Path(__file__).with_name("rules.py"),
    Path(__file__).with_name("suites.py"),
    Path(__file__).with_name("runner.py"),
    Path(__file__).with_name("_gx.py"),
)


class Unsupported(Exception):
    """The table's rules cannot be validated by changed rows: validate it whole."""


@dataclass(frozen=True)
class Ledger:
    hashes: pl.DataFrame  # HASH, HASH2 (UInt64, two seeds) of the rows that passed every rule
    as_of: date
    fingerprint: str


@dataclass(frozen=True)
class ChangedRows:
    """One validation by changed rows: the whole-table result, and what the ledger becomes."""

    result: QualityResult
    passed: pl.DataFrame  # hashes of the table's rows known to pass, for the ledger
    mode: str  # "changed" (ledger used) or "whole" (no usable ledger: every row validated)
    reason: str
    fingerprint: str
    keep_ledger: bool = True  # False: GX saw every row, but this path could not stand for it


def ledger_path(lake: Lake, registry: Registry, table: str) -> Path:
    zone = registry.zone_of(table)
    root = lake.library if zone == "library" else lake.marts
    return root / "_cache" / "validated" / f"{table}.parquet"


def fingerprint(table: DerivedTable, registry: Registry, frame: pl.DataFrame) -> str:
    """What a ledger's rows passed: the rules (expectations, derived columns), the code that runs
    them, the frame's columns and types, and Polars (whose row hash is stable only within a
    version)."""
    import great_expectations
    import pandas

    h = hashlib.md5()
    for path in _CODE:
        h.update(path.read_bytes())
    # how GX evaluates a row in pandas, and how the frame reaches pandas
    for version in (great_expectations.__version__, pandas.__version__, pa.__version__, np.__version__):
        h.update(str(version).encode())
    for rule in rules_for(table, registry):
        h.update(json.dumps(rule.expectation.dict(), sort_keys=True, default=str).encode())
        h.update(repr(sorted((k, str(e)) for k, e in rule.derived.items())).encode())
    h.update(repr([(n, str(d)) for n, d in frame.schema.items()]).encode())
    h.update(pl.__version__.encode())
    return h.hexdigest()


def read_ledger(lake: Lake, registry: Registry, table: str) -> Ledger | None:
    path = ledger_path(lake, registry, table)
    if not path.exists():
        return None
    try:
        state = json.loads(file_metadata(path, lake)[LEDGER_STATE])
        hashes = read_frame(path, lake).select(HASH, HASH2)
        return Ledger(hashes, date.fromisoformat(state["as_of"]), str(state["fingerprint"]))
    except Exception:  # unreadable, half written, another layout: no ledger, validate whole
        return None


def write_ledger(lake: Lake, registry: Registry, table: str, ledger: Ledger) -> None:
    path = ledger_path(lake, registry, table)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = json.dumps({"as_of": ledger.as_of.isoformat(), "fingerprint": ledger.fingerprint})
    with atomic_path(path) as tmp:
        write_frame(ledger.hashes, tmp, lake, metadata={LEDGER_STATE: state})


def drop_ledger(lake: Lake, registry: Registry, table: str) -> None:
    ledger_path(lake, registry, table).unlink(missing_ok=True)


# ------------------------------------------------------------------ counting as GX does


def _condition(spec: Any) -> pl.Expr | None:
    """A GX row condition (the structured comparisons our rules use) as a Polars filter, with
    pandas' comparison semantics for missing values (``NaN == x`` false, ``NaN != x`` true)."""
    if not spec:
        return None
    if not isinstance(spec, dict) or spec.get("type") != "comparison":
        raise Unsupported(f"row condition {spec!r}")
    column = pl.col(spec["column"]["name"])
    value = spec["parameter"]
    if spec["operator"] == "==":
        return column.eq_missing(value)
    if spec["operator"] == "!=":
        return column.ne_missing(value)
    raise Unsupported(f"row condition operator {spec['operator']!r}")


def _counted(
    rule: QualityRule, object_columns: frozenset[str] = frozenset()
) -> tuple[pl.Expr, pl.Expr] | None:
    """(rows in the rule's domain, rows GX leaves out as missing) as Polars sums; None for a
    table-level rule. A type rule is checked value by value when the column reaches pandas as
    ``object`` (booleans holding nulls: ``object_columns``)."""
    kind = rule.expectation.expectation_type
    if kind in TABLE_LEVEL:
        spec = rule.expectation.dict()
        if kind != TYPE_RULE or spec.get("column") not in object_columns:
            return None
        return pl.len(), pl.col(spec["column"]).is_null().sum()
    if rule.needs or rule.derive_related is not None:
        raise Unsupported(f"{rule.id} reads other tables")
    spec = rule.expectation.dict()
    if spec.get("mostly") not in (None, 1, 1.0):
        raise Unsupported(f"{rule.id}: mostly={spec.get('mostly')} (success depends on the whole batch)")
    _as_of_only_ends(rule, spec)
    domain = _condition(spec.get("row_condition"))
    if kind in SINGLE_COLUMN:
        missing = pl.col(spec["column"]).is_null()
    elif kind in COLUMN_PAIR:
        a, b = pl.col(spec["column_A"]).is_null(), pl.col(spec["column_B"]).is_null()
        ignore = spec.get("ignore_row_if") or "both_values_are_missing"
        if ignore == "either_value_is_missing":
            missing = a | b
        elif ignore == "both_values_are_missing":
            missing = a & b
        elif ignore == "neither":
            missing = a & a.not_()
        else:
            raise Unsupported(f"{rule.id}: ignore_row_if {ignore!r}")
    elif kind in MULTI_COLUMN:
        nulls = [pl.col(c).is_null() for c in spec["column_list"]]
        ignore = spec.get("ignore_row_if") or "all_values_are_missing"
        if ignore == "all_values_are_missing":
            missing = pl.all_horizontal(nulls)
        elif ignore == "any_value_is_missing":
            missing = pl.any_horizontal(nulls)
        elif ignore == "never":
            missing = nulls[0] & nulls[0].not_()
        else:
            raise Unsupported(f"{rule.id}: ignore_row_if {ignore!r}")
    else:
        raise Unsupported(f"{rule.id}: {kind} is not counted here")
    if domain is None:
        return pl.len(), missing.sum()
    return domain.sum(), (domain & missing).sum()


def _as_of_only_ends(rule: QualityRule, spec: dict[str, Any]) -> None:
    """A passed row keeps passing at a later as-of date only for rules of the form "the as-of's
    end is after this date" (``_dq_as_of_end`` as ``column_A``): any other use of the as-of date
    could fail an unchanged row later, so it is not validated by changed rows."""
    reads = {name for name, expr in rule.derived.items() if AS_OF in expr.meta.root_names()}
    if AS_OF in rule_columns(rule, condition=True):
        raise Unsupported(f"{rule.id} reads the as-of date directly")
    if not reads:
        return
    ends = all(str(rule.derived[n]) == str(as_of_end()) for n in reads)
    if not (ends and rule.expectation.expectation_type in COLUMN_PAIR and reads == {spec.get("column_A")}):
        raise Unsupported(f"{rule.id} uses the as-of date otherwise than as the end dates stay before")


def rule_counts(
    frame: pl.DataFrame, rules: list[QualityRule], object_columns: frozenset[str] = frozenset()
) -> dict[str, tuple[int, int]]:
    """Per map rule: (element count, missing count) as GX counts them on ``frame`` (prepared:
    ``_dq_*`` columns present). One pass over the frame."""
    exprs: list[pl.Expr] = []
    ids: list[str] = []
    for rule in rules:
        counted = _counted(rule, object_columns)
        if counted is None:
            continue
        n = len(ids)
        exprs += [counted[0].alias(f"e{n}"), counted[1].alias(f"m{n}")]
        ids.append(rule.id)
    if not exprs:
        return {}
    row = frame.select(exprs).row(0)
    return {rid: (int(row[2 * i] or 0), int(row[2 * i + 1] or 0)) for i, rid in enumerate(ids)}


def _whole_outcome(rule: QualityRule, o: Outcome, whole: tuple[int, int]) -> Outcome:
    """The batch's outcome of a map rule as the whole table's: same unexpected rows, the
    table's element and missing counts."""
    element, missing = whole
    kind = rule.expectation.expectation_type
    denominator = element if kind in SKIP_MISSING else element - missing
    percent = None if denominator <= 0 else 100.0 * o.unexpected_count / denominator
    return replace(
        o,
        element_count=element,
        missing_count=None if kind in SKIP_MISSING else missing,
        unexpected_percent=percent,
    )


def _check_counts(rule: QualityRule, o: Outcome, counted: tuple[int, int]) -> None:
    if not o.evaluated:
        raise Unsupported(f"{rule.id} not evaluated on the batch ({o.note})")
    if o.observed is not None:  # GX checked it on the batch as a whole, not value by value
        raise Unsupported(f"{rule.id} was not checked value by value on the batch")
    element, missing = counted
    if o.element_count != element or (o.missing_count is not None and o.missing_count != missing):
        raise Unsupported(
            f"{rule.id}: counted {element} rows / {missing} missing, GX {o.element_count} / {o.missing_count}"
        )


# ------------------------------------------------------------------ the validation


def row_hashes(frame: pl.DataFrame) -> pl.DataFrame:
    """Every column but the as-of date, hashed per row with two seeds: a changed row is taken for
    a passed one only if both its hashes are among the ledger's (odds ~(changed x ledger / 2^64)^2)."""
    content = frame.drop(AS_OF, strict=False)
    return pl.DataFrame({HASH: content.hash_rows(seed=HASH_SEED), HASH2: content.hash_rows(seed=HASH_SEED_2)})


def must_validate(
    frame: pl.DataFrame, hashes: pl.DataFrame, rules: list[QualityRule], known: pl.DataFrame | None
) -> pl.Series:
    """Rows GX must see: not known to pass, or duplicated in a uniqueness rule's columns."""
    if known is None:
        mask = pl.repeat(True, frame.height, eager=True)
    else:
        # each hash looked up on its own: a semi join on the pair took 4.0 -> 2.9 s for the year's
        # 16.8 M links but held 2.3 GB more (the new day's peak 6.6 -> 8.9 GB)
        mask = ~(hashes[HASH].is_in(known[HASH].implode()) & hashes[HASH2].is_in(known[HASH2].implode()))
    mask = mask | repeated_keys(frame, rules)
    return mask


def validate_changed(
    frame: pl.DataFrame,
    table: DerivedTable,
    registry: Registry,
    *,
    as_of: date,
    ledger: Ledger | None,
    partition: str = "all",
    slice_rows: int | None = None,
) -> ChangedRows:
    """Validate ``frame`` (the whole table, ``_as_of`` added) giving GX only the rows it must see;
    raises :class:`Unsupported` when the outcome could differ from validating it whole.
    ``slice_rows``: see :func:`quality.runner.validate`."""
    t0 = time.perf_counter()
    rules = rules_for(table, registry)
    for rule in rules:
        _counted(rule)  # raises for a rule this path cannot count
    fp = fingerprint(table, registry, frame)
    known: pl.DataFrame | None = None
    reason = "no ledger"
    if ledger is not None:
        if ledger.fingerprint != fp:
            reason = "rules, code or columns changed since the ledger"
        elif ledger.as_of > as_of:
            reason = f"ledger written at a later as-of date ({ledger.as_of})"
        else:
            known, reason = ledger.hashes, f"ledger of {ledger.hashes.height:,} passed rows"
    prepared, _ = prepare(frame, rules)
    absent = sorted({c for r in rules for c in rule_columns(r, condition=True)} - set(prepared.columns))
    if absent:  # the whole-table validation reports it (conformance.columns)
        raise Unsupported(f"columns the rules name are missing: {', '.join(absent)}")
    hashes = row_hashes(frame)
    mask = must_validate(frame, hashes, rules, known)
    batch = frame.filter(mask)
    t1 = time.perf_counter()
    # the batch reaches GX with the whole table's dtypes (nulls elsewhere in a column)
    nullable = frozenset(c for c, n in zip(frame.columns, frame.null_count().row(0), strict=True) if n)
    objects = frozenset(c for c in nullable if frame.schema[c] == pl.Boolean)
    res = validate(
        batch,
        table,
        registry,
        partition=partition,
        unexpected_rows=True,
        nullable=nullable,
        slice_rows=slice_rows,
    )
    t2 = time.perf_counter()
    try:
        outcomes, passed = _as_whole(res, rules, prepared, mask, hashes, objects)
    except Unsupported as why:
        if known is not None:
            raise
        # GX saw every row: its result is the batch's own, only no row can go to the ledger
        whole_res = replace(res, unexpected_rows=None, timings={**res.timings, "select_rows": t1 - t0})
        return ChangedRows(whole_res, hashes.head(0), "whole", str(why), fp, keep_ledger=False)
    t3 = time.perf_counter()
    result = replace(
        res,
        rows=frame.height,
        outcomes=tuple(outcomes),
        seconds=res.seconds + (t1 - t0) + (t3 - t2),
        timings={**res.timings, "select_rows": t1 - t0, "count_rows": t3 - t2},
        validated_rows=batch.height,
        unexpected_rows=None,
    )
    return ChangedRows(result, passed, "changed" if known is not None else "whole", reason, fp)


def _as_whole(
    res: QualityResult,
    rules: list[QualityRule],
    prepared: pl.DataFrame,
    mask: pl.Series,
    hashes: pl.DataFrame,
    objects: frozenset[str],
) -> tuple[list[Outcome], pl.DataFrame]:
    """The batch's outcomes as the whole batch's, and the hashes of the rows known to pass."""
    whole = rule_counts(prepared, rules, objects)
    in_batch = rule_counts(prepared.filter(mask), rules, objects)
    by_rule = {r.id: r for r in rules}
    outcomes = []
    for o in res.outcomes:
        rule = by_rule[o.rule_id]
        if o.rule_id not in whole:  # a table-level rule
            if not o.evaluated or o.failed or o.element_count:
                raise Unsupported(f"{o.rule_id} failed, was not evaluated or counted rows on the batch")
            outcomes.append(o)
            continue
        _check_counts(rule, o, in_batch[o.rule_id])
        outcomes.append(_whole_outcome(rule, o, whole[o.rule_id]))
    if res.unexpected_rows is None:
        raise Unsupported("GX did not list every unexpected row of the batch")
    failed = res.unexpected_rows
    in_batch_hashes = hashes.filter(mask)
    ok = np.ones(in_batch_hashes.height, dtype=bool)
    ok[np.fromiter(failed, dtype=np.int64, count=len(failed))] = False
    passed = pl.concat([hashes.filter(~mask), in_batch_hashes.filter(pl.Series(values=ok))])
    return outcomes, passed

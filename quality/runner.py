"""Run a table's expectation suite over a Polars frame: :func:`validate` (staged, library, marts).

Great Expectations is the engine of record: every success, unexpected count
and example index comes from a GX validation run (ephemeral context, pandas
datasource, ``batch_parameters={"dataframe": df}``). Around it:

* derived ``_dq_*`` columns (ages, gaps, the delivery end, facts joined from
  other staged tables) are computed once in Polars before GX sees the frame;
* GX gets only the columns its rules read, with ``_flags`` left out: GX
  fingerprints every batch by hashing the whole DataFrame and falls back to
  pickling it when a column holds lists, which cost 3x the validation itself;
* one GX context, datasource and validation definition per (table, registry)
  is kept for the process instead of being rebuilt per call;
* example rows (up to five per failed rule) are taken from the Polars frame by
  the row positions GX reports, and masked (:mod:`quality.redact`).

:func:`validate_plain` is GX's plain pandas path (fresh context, the whole
frame converted), kept for the benchmark's comparison.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import pandas as pd
import polars as pl

from quality._gx import ProgressBarsConfig, gx
from quality.redact import mask_row, scrub
from quality.rules import AnyTable, Family, QualityRule, Related
from quality.suites import LINEAGE, derived_identity, resolve_table, rules_for, suite_for, zone_of
from schemas.registry import Registry

EXAMPLES = 5
WALL_TIME_ZONE = "Asia/Shanghai"
RESULT_FORMAT = {"result_format": "SUMMARY", "partial_unexpected_count": EXAMPLES}
# every unexpected row's position (the changed-rows path needs the rows that passed every rule)
COMPLETE_FORMAT = {"result_format": "COMPLETE", "partial_unexpected_count": EXAMPLES}
Severity = Literal["ERROR", "WARN"]


@dataclass(frozen=True)
class Outcome:
    """The result of one rule on one batch."""

    rule_id: str
    family: Family
    severity: Severity
    zh: str
    expectation_type: str
    columns: tuple[str, ...]
    evaluated: bool
    success: bool
    element_count: int = 0
    unexpected_count: int = 0
    unexpected_percent: float | None = None  # 0-100, map expectations only
    missing_count: int | None = None  # map expectations that skip missing values
    observed: str | None = None  # aggregate expectations (types, keys)
    examples: tuple[dict[str, str | None], ...] = ()  # masked example rows
    note: str | None = None  # why a rule was not evaluated

    @property
    def score(self) -> float | None:
        """Share of rows passing (map expectations), else 1/0; ``None`` when not evaluated."""
        if not self.evaluated:
            return None
        if self.unexpected_percent is not None:
            return 1.0 - self.unexpected_percent / 100.0
        return 1.0 if self.success else 0.0

    @property
    def failed(self) -> bool:
        return self.evaluated and not self.success


@dataclass(frozen=True)
class QualityResult:
    table: str
    partition: str | None
    rows: int
    outcomes: tuple[Outcome, ...]
    seconds: float
    timings: dict[str, float] = field(default_factory=dict)
    # rows GX was given when fewer than ``rows`` (:mod:`quality.changed_rows`); None: all of them
    validated_rows: int | None = None
    # positions (in the validated frame) of rows some map rule found unexpected; only when asked
    unexpected_rows: frozenset[int] | None = None

    @property
    def success(self) -> bool:
        return not any(o.failed for o in self.outcomes)

    def failed(self, severity: Severity | None = None) -> list[Outcome]:
        return [o for o in self.outcomes if o.failed and (severity is None or o.severity == severity)]

    def outcome(self, rule_id: str) -> Outcome:
        for o in self.outcomes:
            if o.rule_id == rule_id:
                return o
        raise KeyError(f"{self.table}: no rule {rule_id!r}")


# ------------------------------------------------------------------ frame preparation


def _expr_inputs(expr: pl.Expr) -> set[str]:
    return set(expr.meta.root_names())


def prepare(
    df: pl.DataFrame, rules: Iterable[QualityRule], related: Related | None = None
) -> tuple[pl.DataFrame, dict[str, str]]:
    """Add every derived ``_dq_*`` column the rules read; return notes on rules that cannot run."""
    related = related or {}
    present = set(df.columns)
    notes: dict[str, str] = {}
    exprs: dict[str, pl.Expr] = {}
    derivers: list[Callable[[pl.DataFrame, Related], pl.DataFrame]] = []
    for rule in rules:
        missing_tables = [t for t in rule.needs if t not in related]
        if missing_tables:
            notes[rule.id] = f"未评估：缺少关联表 {', '.join(missing_tables)}"
        if rule.derive_related is not None and rule.derive_related not in derivers:
            derivers.append(rule.derive_related)
        for name, expr in rule.derived.items():
            missing = sorted(_expr_inputs(expr) - present)
            if missing:
                notes[rule.id] = f"未评估：缺少字段 {', '.join(missing)}"
                exprs.setdefault(name, pl.lit(None))
            else:
                exprs[name] = expr
    out = df.with_columns(**exprs) if exprs else df
    for derive in derivers:
        out = derive(out, related)
    return out, notes


def ge_columns(table: AnyTable, frame: pl.DataFrame) -> list[str]:
    """The columns GX needs: contract, derived identity, lineage and ``_dq_*`` (no ``_flags``)."""
    wanted = [*table.column_names, *derived_identity(table), *LINEAGE]
    wanted += [c for c in frame.columns if c.startswith("_dq_")]
    return [c for c in dict.fromkeys(wanted) if c in frame.columns]


def ge_frame(table: AnyTable, frame: pl.DataFrame, nullable: frozenset[str] = frozenset()) -> pd.DataFrame:
    """The pandas frame GX validates (positional index = Polars row number).

    Integer columns holding nulls become pandas' nullable ``Int64`` (plain
    conversion makes them float64, which would pass for a decimal column);
    without nulls they stay numpy ``int64``, on which GX's range checks run
    ~10x faster. Narrower integers and floats (DuckDB writes INTEGER columns of
    library tables as Int32) are widened first: the contract says ``integer`` /
    ``decimal``, not a width. A time-zone-aware timestamp becomes Shanghai wall
    time, the form every contract ``timestamp`` takes. ``nullable``: columns to convert as if
    they held nulls (a part of a table whose other rows do), so integers become ``Int64`` and
    booleans ``object`` - the dtypes, and so the type rules' form, of the whole table.
    """
    selected = frame.select(ge_columns(table, frame))
    widen = {
        name: pl.Int64 if dtype.is_integer() else pl.Float64
        for name, dtype in selected.schema.items()
        if (dtype.is_integer() and dtype != pl.Int64) or (dtype.is_float() and dtype != pl.Float64)
    }
    if widen:
        selected = selected.cast(widen)  # type: ignore[arg-type]
    aware = [n for n, d in selected.schema.items() if isinstance(d, pl.Datetime) and d.time_zone]
    if aware:
        selected = selected.with_columns(
            pl.col(n).dt.convert_time_zone(WALL_TIME_ZONE).dt.replace_time_zone(None) for n in aware
        )
    pdf = selected.to_pandas()
    for name, dtype in selected.schema.items():
        nulls = selected[name].null_count() > 0 or name in nullable
        if dtype.is_integer() and nulls:
            pdf[name] = pdf[name].astype("Int64")
        elif dtype == pl.Boolean and nulls:
            pdf[name] = pdf[name].astype(object)
    return pdf


# ------------------------------------------------------------------ the GX engine


def _new_context() -> Any:
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    return context


class GxEngine:
    """One ephemeral GX context for the process, with a validation definition per suite."""

    def __init__(self) -> None:
        self.context = _new_context()
        asset = self.context.data_sources.add_pandas("staged").add_dataframe_asset("frame")
        self.batch = asset.add_batch_definition_whole_dataframe("whole")
        self._definitions: dict[tuple[str, int], tuple[Registry, Any]] = {}
        self._lock = threading.Lock()

    def definition(self, table: AnyTable, registry: Registry) -> Any:
        key = (table.name, id(registry))
        with self._lock:
            if key not in self._definitions:
                name = f"{zone_of(table)}.{table.name}.{len(self._definitions)}"
                suite = suite_for(table, registry)
                suite.name = name
                suite = self.context.suites.add(suite)
                vd = self.context.validation_definitions.add(
                    gx.ValidationDefinition(name=name, data=self.batch, suite=suite)
                )
                # The registry is kept so its id() is not reused while the entry lives.
                self._definitions[key] = (registry, vd)
            return self._definitions[key][1]

    def run(
        self, table: AnyTable, registry: Registry, frame: pd.DataFrame, *, complete: bool = False
    ) -> list[Any]:
        vd = self.definition(table, registry)
        fmt = COMPLETE_FORMAT if complete else RESULT_FORMAT
        with self._lock:
            return list(vd.run(batch_parameters={"dataframe": frame}, result_format=fmt).results)


_ENGINE: GxEngine | None = None
_ENGINE_LOCK = threading.Lock()


def engine() -> GxEngine:
    """The process's GX engine, created on first use."""
    global _ENGINE
    with _ENGINE_LOCK:
        if _ENGINE is None:
            _ENGINE = GxEngine()
        return _ENGINE


# ------------------------------------------------------------------ results


def _exception(result: Any) -> str | None:
    info = result.exception_info or {}
    if info.get("raised_exception"):
        return str(info.get("exception_message") or "exception")
    for value in info.values():  # GX nests exception info by metric id
        if isinstance(value, Mapping) and value.get("raised_exception"):
            return str(value.get("exception_message") or "exception")
    return None


def _examples(
    frame: pl.DataFrame, table: AnyTable, rule: QualityRule, positions: list[Any]
) -> tuple[dict[str, str | None], ...]:
    rows = [int(p) for p in positions[:EXAMPLES]]
    if not rows:
        return ()
    show = [*table.primary_key, *rule.columns, "_source_file", "_row_number"]
    show += [c for c in frame.columns if c.startswith("_dq_") and c in rule_columns(rule)]
    cols = [c for c in dict.fromkeys(show) if c in frame.columns]
    picked = frame.select(cols)[rows]
    return tuple(mask_row(table, r) for r in picked.iter_rows(named=True))


def rule_columns(rule: QualityRule, *, condition: bool = False) -> set[str]:
    """The columns a rule's expectation names; with ``condition``, its row condition's too."""
    kwargs = rule.expectation.dict()
    names = {kwargs.get("column"), kwargs.get("column_A"), kwargs.get("column_B")}
    names |= set(kwargs.get("column_list") or [])
    spec = kwargs.get("row_condition")
    if condition and isinstance(spec, dict) and isinstance(spec.get("column"), dict):
        names.add(spec["column"].get("name"))
    return {n for n in names if isinstance(n, str) and n}


def _outcome(
    rule: QualityRule, result: Any, frame: pl.DataFrame, table: AnyTable, note: str | None
) -> Outcome:
    common = {
        "rule_id": rule.id,
        "family": rule.family,
        "severity": rule.severity,
        "zh": rule.zh,
        "expectation_type": rule.expectation.expectation_type,
        "columns": rule.columns,
    }
    if note is not None:
        return Outcome(**common, evaluated=False, success=True, note=note)
    if result is None:
        return Outcome(**common, evaluated=False, success=True, note="未评估：GX 未返回结果")
    error = _exception(result)
    res = result.result or {}
    if error is not None:
        if rule.id == "conformance.columns":
            return Outcome(**common, evaluated=True, success=False, note=scrub(error[:200]))
        return Outcome(**common, evaluated=False, success=True, note=f"未评估：{scrub(error[:200])}")
    observed = res.get("observed_value")
    percent = res.get("unexpected_percent")
    missing = res.get("missing_count")
    success = bool(result.success)
    return Outcome(
        **common,
        evaluated=True,
        success=success,
        element_count=int(res.get("element_count") or 0),
        unexpected_count=int(res.get("unexpected_count") or 0),
        unexpected_percent=float(percent) if percent is not None else None,
        missing_count=int(missing) if missing is not None else None,
        observed=None if observed is None else scrub(str(observed)),
        examples=()
        if success
        else _examples(frame, table, rule, res.get("partial_unexpected_index_list") or []),
    )


def validate(
    df: pl.DataFrame,
    table: AnyTable | str,
    registry: Registry,
    *,
    related: Related | None = None,
    partition: str | None = None,
    gx_engine: GxEngine | None = None,
    unexpected_rows: bool = False,
    nullable: frozenset[str] = frozenset(),
) -> QualityResult:
    """Validate a staged, library or mart frame against its table's suite; per-rule outcomes with
    masked examples.

    ``related``: other staged tables for cross-table rules (``{"facilities": ...}``);
    rules whose tables are missing are reported as not evaluated. Library and
    mart frames carry the build's as-of date in ``_as_of`` (see
    :func:`quality.library_checks.load_batches`). ``unexpected_rows``: GX reports every
    unexpected row (``COMPLETE``) and the result carries their positions; ``nullable``: see
    :func:`ge_frame`.
    """
    t0 = time.perf_counter()
    tbl = resolve_table(registry, table)
    rules = rules_for(tbl, registry)
    frame, notes = prepare(df, rules, related)
    t1 = time.perf_counter()
    pdf = ge_frame(tbl, frame, nullable)
    t2 = time.perf_counter()
    results = (gx_engine or engine()).run(tbl, registry, pdf, complete=unexpected_rows)
    t3 = time.perf_counter()
    by_id = {r.expectation_config.meta["rule_id"]: r for r in results}
    failed_at: frozenset[int] | None = None
    if unexpected_rows:
        listed = [((r.result or {}).get("unexpected_index_list") or [], r.result or {}) for r in results]
        # every unexpected row listed, or None: the caller cannot tell the rows that passed
        if all(len(rows) >= int(res.get("unexpected_count") or 0) for rows, res in listed):
            failed_at = frozenset(int(i) for rows, _ in listed for i in rows)
    outcomes = tuple(_outcome(rule, by_id.get(rule.id), frame, tbl, notes.get(rule.id)) for rule in rules)
    t4 = time.perf_counter()
    return QualityResult(
        table=tbl.name,
        partition=partition,
        rows=df.height,
        outcomes=outcomes,
        seconds=t4 - t0,
        timings={"derive": t1 - t0, "to_pandas": t2 - t1, "gx": t3 - t2, "results": t4 - t3},
        unexpected_rows=failed_at,
    )


def validate_plain(
    df: pl.DataFrame, table: AnyTable | str, registry: Registry, *, related: Related | None = None
) -> dict[str, tuple[bool, int]]:
    """GX's plain pandas path, for comparison: a fresh context and the whole frame, per call.

    Returns ``rule_id -> (success, unexpected_count)`` so callers can check both paths agree.
    """
    tbl = resolve_table(registry, table)
    frame, _ = prepare(df, rules_for(tbl, registry), related)
    context = _new_context()
    batch = (
        context.data_sources.add_pandas("p")
        .add_dataframe_asset("a")
        .add_batch_definition_whole_dataframe("b")
    )
    suite = context.suites.add(suite_for(tbl, registry))
    vd = context.validation_definitions.add(gx.ValidationDefinition(name="plain", data=batch, suite=suite))
    results = vd.run(batch_parameters={"dataframe": frame.to_pandas()}).results
    return {
        r.expectation_config.meta["rule_id"]: (
            bool(r.success),
            int((r.result or {}).get("unexpected_count") or 0),
        )
        for r in results
    }

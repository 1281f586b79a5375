"""Quality of the library and mart tables: GX suites from their contracts, plus cross-table SQL.

Two engines, no rule evaluated twice:

* **Great Expectations** (:func:`quality.runner.validate`, the pandas path the
  staged checks use) runs each table's suite generated from its contract
  (:func:`quality.suites.derived_contract_rules`: columns, types, required and
  key columns, code lists, normalised IDs and phones, ranges, key uniqueness,
  fact dates not after the as-of date - all ERROR) and the single-table domain
  rules (:func:`quality.rules.library_domain_rules`: ID-derived birth date,
  living elders 60+, screening scores per instrument, vital-sign summaries,
  date order, death dates - WARN unless they guard downstream).
* **DuckDB SQL** (:func:`cross_table_rules`) runs what needs other tables, over
  the whole table: service events only for elders alive on the service date
  (joins ``library.dim_elder``, WARN), meals only at meal points open that day
  (joins ``library.dim_facility``, WARN: a closure reaches us with the next
  monthly facility list, after the staged check of that meal day has run),
  every ``elder_key`` known to the golden record (ERROR; tables built from
  ``dim_elder`` or beside it), and row counts that reconcile with staged
  (``elder_links`` and ``fact_service_event``, ERROR). A check reading a table
  outside its own upstream depends on it (:func:`rule_reads`), so it never
  reads a table the same run has yet to build.
  Their outcomes are recorded with the table's (last) batch, so scorecards,
  history and the report show them too.

Batches (:func:`load_batches`): a table is validated whole, except the big facts
named in ``checks.derived_batches`` (``quality/thresholds.yaml``:
``fact_service_event`` by ``service_date``, ``fact_vitals_daily`` by
``measure_date``), which are validated by their newest month - the rows dated
from the first day of the as-of date's month on, plus any row with no date or a
date after the as-of (so completeness and timeliness still see them); the batch
is labelled ``YYYY-MM``. Older months were validated on the nights they were
newest; the cross-table SQL rules still read the whole table every night.

Every example is masked (:mod:`quality.redact`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import date
from typing import Literal

import duckdb
import polars as pl

from assets.library.records import elder_tables
from quality.changed_rows import Ledger, Unsupported, drop_ledger, read_ledger, validate_changed, write_ledger
from quality.redact import mask_row
from quality.rules import AS_OF, Family
from quality.runner import EXAMPLES, Outcome, QualityResult, validate
from quality.scorecard import Thresholds, load_thresholds
from rainbow.settings import Lake
from schemas.contract import DerivedTable
from schemas.registry import Registry

SERVICE_SOURCES = {
    "meal_transactions": "MEAL_AID",
    "milk_deliveries": "LOVE_MILK",
    "device_rentals": "DEVICE_RENTAL",
    "care_bed_visits": "FAMILY_CARE_BED",
    "muni_ltci_services": "LTCI_HOME_CARE",
    "timebank_transactions": "TIME_BANK",
}
SQL_RULE = "duckdb_sql"
MEAL_AID = SERVICE_SOURCES["meal_transactions"]


@dataclass(frozen=True)
class LibraryRule:
    """A rule that reads more than its own table, as DuckDB SQL over the ``staged.*`` /
    ``library.*`` / ``marts.*`` views."""

    id: str
    family: Family
    severity: Literal["ERROR", "WARN"]  # ERROR blocks downstream, WARN does not
    zh: str
    # SELECT of the offending rows (or groups): their key columns, named as the table's columns
    offending_sql: str
    # SELECT count(*) of what the rule looks at (the score's denominator)
    population_sql: str
    columns: tuple[str, ...] = ()
    # other tables it reads (the check must run after them: Dagster ``additional_deps``)
    reads: tuple[str, ...] = ()


@dataclass(frozen=True)
class LibraryOutcome:
    rule: LibraryRule
    unexpected: int
    population: int
    examples: tuple[dict[str, str | None], ...]  # masked key values

    @property
    def passed(self) -> bool:
        return self.unexpected == 0


def _view(registry: Registry, table: DerivedTable) -> str:
    return f"{registry.zone_of(table.name)}.{table.name}"


def upstream_closure(registry: Registry, name: str) -> set[str]:
    """Every table ``name`` is built from, directly or not (its contracts' ``upstream``)."""
    seen: set[str] = set()
    todo = [name]
    while todo:
        current = todo.pop()
        try:
            ups = registry.derived(current).upstream
        except KeyError:  # a staged table
            continue
        for up in ups:
            if up not in seen:
                seen.add(up)
                todo.append(up)
    return seen


def _reconciles(target: str, tables: list[str], zh: str) -> LibraryRule:
    counts = " UNION ALL ".join(
        f"SELECT '{t}' AS source_table, count(*) AS n FROM staged.{t}" for t in tables
    )
    return LibraryRule(
        id="consistency.reconciles_with_staged",
        family="consistency",
        severity="ERROR",
        zh=zh,
        offending_sql=f"SELECT s.source_table FROM ({counts}) AS s LEFT JOIN "
        f"(SELECT source_table, count(*) AS n FROM {target} GROUP BY 1) AS l USING (source_table) "
        "WHERE s.n <> coalesce(l.n, 0)",
        population_sql=f"SELECT {len(tables)}",
        columns=("source_table",),
    )


def cross_table_rules(table: DerivedTable, registry: Registry) -> list[LibraryRule]:
    """The rules of a library or mart table that GX's pandas path cannot express (they join)."""
    view = _view(registry, table)
    key = ", ".join(f"t.{k}" for k in table.primary_key)
    rules: list[LibraryRule] = []
    if table.name == "fact_service_event":
        rules.append(
            LibraryRule(
                id="consistency.served_while_alive",
                family="consistency",
                severity="WARN",
                zh="服务日期老人在世（服务日期不晚于黄金记录的死亡日期；全表）",
                offending_sql="SELECT t.service_event_id, t.elder_key, t.service_date FROM "
                "library.fact_service_event AS t JOIN library.dim_elder AS e ON e.elder_key = t.elder_key "
                "WHERE e.death_date IS NOT NULL AND t.service_date > e.death_date",
                population_sql="SELECT count(*) FROM library.fact_service_event",
                columns=("service_event_id", "elder_key", "service_date"),
                reads=("dim_elder",),
            )
        )
        rules.append(
            LibraryRule(
                id="consistency.meal_point_open",
                family="consistency",
                severity="WARN",
                zh="助餐服务日期早于助餐点停业日期（关联 dim_facility；全表：停业信息随月度名单才到）",
                offending_sql="SELECT t.service_event_id, t.provider_id, t.service_date "
                "FROM library.fact_service_event AS t "
                "JOIN library.dim_facility AS f ON f.facility_id = t.provider_id "
                f"WHERE t.programme = '{MEAL_AID}' AND f.closed_on IS NOT NULL "
                "AND t.service_date >= f.closed_on",
                population_sql="SELECT count(*) FROM library.fact_service_event "
                f"WHERE programme = '{MEAL_AID}'",
                columns=("service_event_id", "provider_id", "service_date"),
                reads=("dim_facility",),
            )
        )
        rules.append(
            _reconciles(
                "library.fact_service_event",
                list(SERVICE_SOURCES),
                "每个服务项目：标准化层行数 = 服务事件数（全表）",
            )
        )
    if table.name == "elder_links":
        rules.append(
            _reconciles(
                "library.elder_links",
                [t.name for t in elder_tables(registry)],
                "每张含老人记录的标准化表：行数 = 关联记录数（全表）",
            )
        )
    # Keys known to the golden record: for tables built after it or beside it (not for those it is
    # built from - elder_links, the provenance - whose check would then wait for dim_elder, a cycle).
    zone = registry.zone_of(table.name)
    if (
        zone == "library"
        and "elder_key" in table.column_names
        and table.name != "dim_elder"
        and table.name not in upstream_closure(registry, "dim_elder")
    ):
        rules.append(
            LibraryRule(
                id="conformance.elder_key_known",
                family="conformance",
                severity="ERROR",
                zh="老人主键均见于黄金记录（dim_elder；全表）",
                # an anti join as written: DuckDB planned NOT EXISTS with its hash table on the
                # table checked (an Arrow source, estimated at one row): 3.85 vs 0.54 s over the
                # year's 11 M service events
                offending_sql=f"SELECT {key}, t.elder_key FROM {view} AS t "
                "ANTI JOIN library.dim_elder AS e ON e.elder_key = t.elder_key WHERE t.elder_key IS NOT NULL",
                population_sql=f"SELECT count(*) FROM {view} WHERE elder_key IS NOT NULL",
                columns=(*table.primary_key, "elder_key"),
                reads=("dim_elder",),
            )
        )
    return rules


def rule_reads(table: DerivedTable, registry: Registry) -> list[str]:
    """The tables a table's cross-table rules read beyond its own upstream (check dependencies)."""
    rules = cross_table_rules(table, registry)
    return sorted({t for r in rules for t in r.reads} - set(table.upstream) - {table.name})


def fetch(con: duckdb.DuckDBPyConnection, query: str) -> pl.DataFrame:
    """A query's result as a Polars frame. DuckDB 2's ``con.sql(...)`` refuses to run while an
    earlier ``execute`` result on the connection is unfinished (a caller's ``fetchone()``, e.g.
    :func:`assets.library.build.as_of_date`): that leftover is aborted first."""
    con.abort()
    return con.sql(query).pl()


def evaluate(
    con: duckdb.DuckDBPyConnection, table: DerivedTable, rules: list[LibraryRule]
) -> list[LibraryOutcome]:
    """Count each rule's offending rows and keep a few, masked by the table's contract."""
    out = []
    for rule in rules:
        n = int(con.execute(f"SELECT count(*) FROM ({rule.offending_sql})").fetchall()[0][0])
        population = int(con.execute(rule.population_sql).fetchall()[0][0])
        examples: tuple[dict[str, str | None], ...] = ()
        if n:
            sample = fetch(con, f"SELECT * FROM ({rule.offending_sql}) ORDER BY ALL LIMIT {EXAMPLES}")
            examples = tuple(mask_row(table, r) for r in sample.iter_rows(named=True))
        out.append(LibraryOutcome(rule, n, population, examples))
    return out


def as_outcome(o: LibraryOutcome) -> Outcome:
    """A SQL rule's result in the form GX results take (history, scorecards, report, metadata)."""
    return Outcome(
        rule_id=o.rule.id,
        family=o.rule.family,
        severity=o.rule.severity,
        zh=o.rule.zh,
        expectation_type=SQL_RULE,
        columns=o.rule.columns,
        evaluated=True,
        success=o.passed,
        element_count=o.population,
        unexpected_count=o.unexpected,
        unexpected_percent=100.0 * min(o.unexpected, o.population) / o.population if o.population else 0.0,
        examples=o.examples,
    )


# ------------------------------------------------------------------ batches


@dataclass(frozen=True)
class DerivedBatch:
    label: str  # "all", or the month "YYYY-MM" of a big fact
    frame: pl.DataFrame


def batch_filter(column: str, as_of: date) -> str:
    """SQL condition of the newest-month batch: from the as-of month's first day on, or undated."""
    start = as_of.replace(day=1).isoformat()
    return f"({column} >= DATE '{start}' OR {column} IS NULL)"


def load_batches(
    con: duckdb.DuckDBPyConnection,
    table: DerivedTable,
    registry: Registry,
    as_of: date,
    thresholds: Thresholds | None = None,
) -> list[DerivedBatch]:
    """What a check of ``table`` validates with GX (see the module doc), with ``_as_of`` added."""
    settings = (thresholds or load_thresholds()).checks
    column = settings.derived_batches.get(table.name)
    where = f" WHERE {batch_filter(column, as_of)}" if column else ""
    frame = fetch(con, f"SELECT * FROM {_view(registry, table)}{where}")
    frame = frame.with_columns(pl.lit(as_of, dtype=pl.Date).alias(AS_OF))
    return [DerivedBatch(as_of.strftime("%Y-%m") if column else "all", frame)]


def validate_by_changed_rows(
    batch: DerivedBatch,
    table: DerivedTable,
    registry: Registry,
    lake: Lake,
    as_of: date,
    log: Callable[[str], None] | None = None,
    slice_rows: int | None = None,
) -> QualityResult:
    """A batch validated by its changed rows (:mod:`quality.changed_rows`), its ledger rewritten;
    validated whole, the ledger dropped, when that path cannot stand for it. ``slice_rows``: see
    :func:`quality.runner.validate`."""
    ledger = read_ledger(lake, registry, table.name)
    try:
        checked = validate_changed(
            batch.frame,
            table,
            registry,
            as_of=as_of,
            ledger=ledger,
            partition=batch.label,
            slice_rows=slice_rows,
        )
        if checked.keep_ledger:
            write_ledger(lake, registry, table.name, Ledger(checked.passed, as_of, checked.fingerprint))
    except (Unsupported, pl.exceptions.PolarsError, OSError) as why:
        drop_ledger(lake, registry, table.name)
        if log:
            log(f"{table.name}: validated whole ({type(why).__name__}: {why})")
        return validate(batch.frame, table, registry, partition=batch.label, slice_rows=slice_rows)
    if not checked.keep_ledger:
        drop_ledger(lake, registry, table.name)
        if log:
            log(f"{table.name}: validated whole, no ledger kept ({checked.reason})")
        return checked.result
    if log:
        log(
            f"{table.name}: GX validated {checked.result.validated_rows:,} of {batch.frame.height:,} rows "
            f"in {checked.result.slices} slice(s) ({checked.mode}: {checked.reason}); "
            f"{checked.passed.height:,} rows now known to pass"
        )
    return checked.result


def validate_batches(
    batches: list[DerivedBatch],
    sql_outcomes: list[LibraryOutcome],
    table: DerivedTable,
    registry: Registry,
    *,
    lake: Lake | None = None,
    as_of: date | None = None,
    thresholds: Thresholds | None = None,
    log: Callable[[str], None] | None = None,
) -> list[QualityResult]:
    """GX on every batch; the cross-table SQL outcomes recorded with the last batch.

    With ``lake`` and ``as_of``, a batch of at least ``checks.changed_rows_above`` rows (the whole
    table, or a big fact's newest month) is validated by its changed rows
    (:func:`validate_by_changed_rows`)."""
    settings = (thresholds or load_thresholds()).checks
    above, slice_rows = settings.changed_rows_above, settings.gx_slice_rows
    results = [
        validate_by_changed_rows(b, table, registry, lake, as_of, log, slice_rows)
        if lake is not None and as_of is not None and b.frame.height >= above
        else validate(b.frame, table, registry, partition=b.label, slice_rows=slice_rows)
        for b in batches
    ]
    if results and sql_outcomes:
        last = results[-1]
        results[-1] = replace(last, outcomes=last.outcomes + tuple(as_outcome(o) for o in sql_outcomes))
    return results


def validate_derived(
    con: duckdb.DuckDBPyConnection,
    table: DerivedTable,
    registry: Registry,
    as_of: date,
    thresholds: Thresholds | None = None,
) -> list[QualityResult]:
    """Everything a ``library_contract`` / ``mart_contract`` check validates (no Dagster needed).

    ``con`` has the ``staged.*`` / ``library.*`` (/ ``marts.*``) views.
    """
    batches = load_batches(con, table, registry, as_of, thresholds)
    t0 = time.perf_counter()
    sql = evaluate(con, table, cross_table_rules(table, registry))
    sql_seconds = time.perf_counter() - t0
    results = validate_batches(batches, sql, table, registry)
    if results and sql:  # the SQL rules' time counts in the table's validation time
        last = results[-1]
        results[-1] = replace(
            last, seconds=last.seconds + sql_seconds, timings={**last.timings, "sql": sql_seconds}
        )
    return results

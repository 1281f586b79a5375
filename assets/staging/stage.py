"""Stage one table (or one day of an event table): type, normalise, conform; quarantine hard breaches.

Per delivered file: raw rows + broken rows = staged rows + quarantined rows.
Outputs (written atomically; re-running rewrites identical bytes):
- ``staged/<table>/data.parquet`` or ``staged/<table>/date=YYYY-MM-DD/data.parquet``
- ``staged/_quarantine/<table>/...`` the same layout: the original raw text of
  every rejected row, its lineage, ``_reasons`` (all hard reasons) and ``_flags``.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path

import duckdb
import polars as pl

from assets.ingest.ledger import read_ledger
from assets.ingest.raw import BROKEN_RAW_SCHEMA, LINEAGE_SCHEMA, raw_schema
from assets.ingest.readers import RAW_TEXT
from assets.ingest.views import empty_select, ensure_views, parquet_select
from assets.staging.normalise import (
    BROKEN_LINE,
    DUPLICATE_KEY,
    RAW_TYPES,
    Rule,
    rule_for,
    with_clean_texts,
    with_stages,
)
from rainbow.filefacts import cached_facts
from rainbow.io import atomic_path
from rainbow.parquet import file_metadata, glob_files, read_frame, write_frame
from rainbow.settings import Lake
from rainbow.workers import ordered_map
from schemas.contract import Table
from schemas.registry import Registry

STAGED_SCHEMA_NAME = "staged"


@dataclass(frozen=True)
class FileCount:
    source_file: str
    raw_rows: int
    broken_rows: int
    staged_rows: int
    quarantined_rows: int

    @property
    def reconciles(self) -> bool:
        return self.raw_rows + self.broken_rows == self.staged_rows + self.quarantined_rows


@dataclass(frozen=True)
class StageReport:
    table: str
    partition: str | None
    files: list[FileCount]
    staged_rows: int
    quarantined_rows: int
    reasons: dict[str, int] = field(default_factory=dict)
    flags: dict[str, int] = field(default_factory=dict)

    @property
    def reconciles(self) -> bool:
        return all(f.reconciles for f in self.files)

    @classmethod
    def merge(cls, table: str, reports: list[StageReport]) -> StageReport:
        """One report over several partitions (a ranged run)."""
        reasons: Counter[str] = Counter()
        flags: Counter[str] = Counter()
        for r in reports:
            reasons.update(r.reasons)
            flags.update(r.flags)
        return cls(
            table=table,
            partition=None,
            files=[f for r in reports for f in r.files],
            staged_rows=sum(r.staged_rows for r in reports),
            quarantined_rows=sum(r.quarantined_rows for r in reports),
            reasons=dict(sorted(reasons.items())),
            flags=dict(sorted(flags.items())),
        )


def derived_identity(table: Table) -> bool:
    """Does the staged table carry ``id_birth_date`` / ``id_sex`` derived from its resident ID?"""
    names = set(table.column_names)
    return "id_number" in names and table.column("id_number").semantic == "resident_id"


def staged_schema(table: Table) -> dict[str, pl.DataType]:
    """Columns of a staged table: typed contract columns, derived identity, lineage, flags."""
    schema: dict[str, pl.DataType] = {c.name: RAW_TYPES[c.type] for c in table.columns}
    if derived_identity(table):
        schema["id_birth_date"] = pl.Date()
        schema["id_sex"] = pl.String()
    return {**schema, **LINEAGE_SCHEMA, "_delivery_date": pl.Date(), "_flags": pl.List(pl.String())}


def quarantine_schema(table: Table) -> dict[str, pl.DataType]:
    """Quarantined rows: the original text of every column, lineage, reasons and flags."""
    schema: dict[str, pl.DataType] = {c.name: pl.String() for c in table.columns}
    return {
        **schema,
        RAW_TEXT: pl.String(),
        **LINEAGE_SCHEMA,
        "_delivery_date": pl.Date(),
        "_reasons": pl.List(pl.String()),
        "_flags": pl.List(pl.String()),
    }


def stage_frame(
    raw: pl.DataFrame, broken: pl.DataFrame, table: Table, registry: Registry
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Pure transformation: raw text rows (+ lineage and ``_delivery_date``) -> (staged, quarantine).

    Primary keys are de-duplicated within each delivery date only: event
    partitions stage the same whether run alone or in a range, and tables
    delivered as full lists (monthly facilities, caregivers, meters, ...) keep
    every snapshot, one per delivery date.
    """
    delivery_end = (pl.col("_delivery_date") + pl.duration(days=1)).cast(pl.Datetime("us"))
    rules: dict[str, Rule] = {c.name: rule_for(c, table, registry, delivery_end) for c in table.columns}
    staged_input = with_stages(
        with_clean_texts(_in_file_order(raw), [c.name for c in table.columns]), list(rules.values())
    )
    typed = staged_input.with_columns(
        [r.value.alias(f"__typed_{name}") for name, r in rules.items()]
        + [e.alias(k) for r in rules.values() for k, e in r.extra.items()]
    )
    typed = _with_codes(
        typed,
        [e for r in rules.values() for e in r.reasons],
        [e for r in rules.values() for e in r.flags],
    )
    # The same key delivered twice: the first (by file, row) is kept, later copies quarantined.
    if table.primary_key:
        keys = [pl.col(f"__typed_{k}") for k in table.primary_key]
        window = [*keys, pl.col("_delivery_date")]
        typed = typed.with_columns(
            __dup=pl.when(pl.all_horizontal([k.is_not_null() for k in keys]))
            .then(~pl.struct(window).is_first_distinct())
            .otherwise(False)
        )
        typed = typed.with_columns(
            _reasons=pl.when(pl.col("__dup"))
            .then(pl.col("_reasons").list.concat(pl.lit([DUPLICATE_KEY])))
            .otherwise(pl.col("_reasons"))
        )
    bad = pl.col("_reasons").list.len() > 0
    schema = staged_schema(table)
    staged = (
        typed.filter(~bad)
        .select(
            [pl.col(f"__typed_{c.name}").alias(c.name) for c in table.columns]
            + [pl.col(c) for c in schema if c not in rules]
        )
        .cast(pl.Schema(schema))
    )
    qschema = quarantine_schema(table)
    quarantined = typed.filter(bad).with_columns(_raw_text=pl.lit(None, dtype=pl.String))
    broken_q = broken.with_columns(
        _reasons=pl.lit([BROKEN_LINE], dtype=pl.List(pl.String)), _flags=pl.lit([], dtype=pl.List(pl.String))
    )
    quarantine = pl.concat(
        [
            quarantined.select(
                [pl.col(c) if c in quarantined.columns else pl.lit(None).alias(c) for c in qschema]
            ),
            broken_q.select([pl.col(c) if c in broken_q.columns else pl.lit(None).alias(c) for c in qschema]),
        ],
        how="vertical_relaxed",
    ).cast(pl.Schema(qschema))
    return staged, quarantine.sort("_source_file", "_row_number")  # broken lines among the rest


def _in_file_order(raw: pl.DataFrame) -> pl.DataFrame:
    """``raw`` by file and row (as read from the raw parts it is already: checked, not sorted)."""
    f, r = pl.col("_source_file"), pl.col("_row_number")
    if raw.select(((f < f.shift()) | ((f == f.shift()) & (r <= r.shift()))).any()).item():
        return raw.sort("_source_file", "_row_number")
    return raw


def _with_codes(typed: pl.DataFrame, reasons: list[pl.Expr], flags: list[pl.Expr]) -> pl.DataFrame:
    """``_reasons`` and ``_flags``: the non-null codes of each row, as lists. The lists are
    built only for the rows with a code (1,501 of a day's 630,481 water readings) and joined
    back by row position; the others get empty lists (building a list per row was half of
    staging a day). Rows keep their order."""
    empty = pl.lit([], dtype=pl.List(pl.String))
    codes = [*reasons, *flags]
    if not codes:
        return typed.with_columns(_reasons=empty, _flags=empty)
    at = "__row"
    typed = typed.with_row_index(at)
    listed = typed.filter(pl.any_horizontal([e.is_not_null() for e in codes])).select(
        at,
        _reasons=pl.concat_list(reasons).list.drop_nulls() if reasons else empty,
        _flags=pl.concat_list(flags).list.drop_nulls() if flags else empty,
    )
    return (
        typed.join(listed, on=at, how="left", maintain_order="left")
        .with_columns(pl.col("_reasons").fill_null(empty), pl.col("_flags").fill_null(empty))
        .drop(at)
    )


def staged_dir(lake: Lake, table: Table | str) -> Path:
    return lake.staged / (table if isinstance(table, str) else table.name)


def quarantine_dir(lake: Lake, table: Table | str) -> Path:
    return lake.staged / "_quarantine" / (table if isinstance(table, str) else table.name)


def _partition_leaf(partition: date) -> str:
    return f"date={partition.isoformat()}/data.parquet"


def _read_parts(lake: Lake, parts: list[str], schema: dict[str, pl.DataType]) -> pl.DataFrame:
    if not parts:
        return pl.DataFrame(schema=schema)
    return read_frame([lake.root / p for p in parts], lake)


def stage_table(lake: Lake, table: Table, registry: Registry, partition: date | None = None) -> StageReport:
    """Stage ``table``: the delivery dates whose staged part is missing or was staged from other
    ledger files than the ledger now holds for that date (see :func:`stale_days`), each into its
    own ``date=YYYY-MM-DD`` folder; one delivery date when ``partition`` is given.

    A table delivered as dated full lists or changes (the monthly registry, the daily municipal
    roster) thus stages the new day's files, not its whole history, each night. The report covers
    what this call staged.
    """
    if partition is not None:
        return _stage(lake, table, registry, [partition])[0]
    return StageReport.merge(table.name, stage_new_dates(lake, table, registry))


def stage_new_dates(lake: Lake, table: Table, registry: Registry) -> list[StageReport]:
    """Stage the :func:`stale_days` of ``table``; one report per date staged (``partition``)."""
    reports = stage_partitions(lake, table, registry, stale_days(lake, table))
    _drop_single_file_layout(lake, table)
    return reports


# the footer key of a staged part naming the ledger files it was staged from
STAGED_FROM = "rainbow.staged_from"


def _ingested(lake: Lake, table: Table | str) -> pl.DataFrame:
    """The table's ingested ledger rows with ``_delivery_date`` (files without a date in their
    name are dated by their ingest day)."""
    ledger = read_ledger(lake, table if isinstance(table, str) else table.name)
    return ledger.filter(pl.col("status") == "ingested").with_columns(
        _delivery_date=pl.coalesce("delivered_date", pl.col("ingested_at").dt.date())
    )


def _staged_from(ledger_day: pl.DataFrame) -> str:
    pairs = sorted(ledger_day.select("source_file", "file_sha256").iter_rows())
    return json.dumps(pairs, ensure_ascii=False)


def _partition_path(folder: Path, day: date) -> Path:
    return folder / _partition_leaf(day)


def stale_days(lake: Lake, table: Table) -> list[date]:
    """Delivery dates to (re)stage: the staged or quarantine part is missing, or the staged part
    was staged from other ledger files (name + SHA-256, kept in its footer under
    :data:`STAGED_FROM`) than the ledger holds for the date now. Footers are read through
    :func:`rainbow.filefacts.cached_facts`, so only parts written since the last run are opened.
    A lake staged as one ``data.parquet`` per table (before per-date parts) restages every date."""
    ledger = _ingested(lake, table)
    want = {
        day: _staged_from(group)
        for (day,), group in ledger.group_by("_delivery_date")
        if isinstance(day, date)
    }
    if (staged_dir(lake, table) / "data.parquet").exists():
        return sorted(want)
    parts = {
        day: p
        for day in want
        if (p := _partition_path(staged_dir(lake, table), day)).exists()
        and _partition_path(quarantine_dir(lake, table), day).exists()
    }
    files = list(parts.values())
    have = dict(
        zip(
            files,
            cached_facts(lake, "staged_from", files, lambda f: file_metadata(f, lake).get(STAGED_FROM)),
            strict=True,
        )
    )
    return sorted(day for day, inputs in want.items() if day not in parts or have[parts[day]] != inputs)


def _drop_single_file_layout(lake: Lake, table: Table) -> None:
    """Remove ``data.parquet`` at the root of the table's staged and quarantine folders (the layout
    before per-date parts), once every date has its own part."""
    for folder in (staged_dir(lake, table), quarantine_dir(lake, table)):
        (folder / "data.parquet").unlink(missing_ok=True)


STAGE_ROW_BUDGET_ENV = "RAINBOW_STAGE_ROW_BUDGET"
STAGE_ROW_BUDGET = 1_000_000  # delivered rows held in memory by one staging pass


def stage_row_budget() -> int:
    return int(os.environ.get(STAGE_ROW_BUDGET_ENV, STAGE_ROW_BUDGET))


def day_chunks(
    lake: Lake, table: Table, days: list[date], budget: int, ingested: pl.DataFrame | None = None
) -> list[list[date]]:
    """``days`` in order, cut into runs whose delivered rows (from the ledger, or ``ingested``:
    its :func:`_ingested` rows) stay within ``budget`` (a day over the budget alone is its own run)."""
    per_day = dict(
        (_ingested(lake, table) if ingested is None else ingested)
        .group_by("_delivery_date")
        .agg(pl.col("delivered_rows").fill_null(0).sum())
        .iter_rows()
    )
    chunks: list[list[date]] = []
    current: list[date] = []
    rows = 0
    for day in sorted(set(days)):
        n = int(per_day.get(day) or 0)
        if current and rows + n > budget:
            chunks.append(current)
            current, rows = [], 0
        current.append(day)
        rows += n
    return [*chunks, current] if current else chunks


def stage_partitions(
    lake: Lake, table: Table, registry: Registry, days: list[date], *, row_budget: int | None = None
) -> list[StageReport]:
    """Stage several delivery dates of an event table (one report per date).

    Days are staged in passes of at most ``row_budget`` delivered rows (default
    ``$RAINBOW_STAGE_ROW_BUDGET`` or 1,000,000), so a first build over a year of
    telemetry holds a few days at a time, not the year; passes run :func:`rainbow.workers.workers`
    at a time (their dates' files are disjoint). The ledger is read once per call (a year of
    water readings: 364 passes of a day each, 0.05-0.19 s a read), each pass reads its days' raw parts once;
    each date's output is written to its own partition and equals what staging that date alone
    writes (keys are de-duplicated within a date, never across dates).
    """
    budget = row_budget if row_budget is not None else stage_row_budget()
    ingested = _ingested(lake, table)
    reports: list[StageReport] = []
    for chunk_reports in ordered_map(
        lambda chunk: _stage(lake, table, registry, chunk, ingested),
        day_chunks(lake, table, days, budget, ingested),
    ):
        reports += chunk_reports
    return reports


def _stage(
    lake: Lake, table: Table, registry: Registry, days: list[date], ingested: pl.DataFrame | None = None
) -> list[StageReport]:
    ledger = _ingested(lake, table) if ingested is None else ingested
    ledger = ledger.filter(pl.col("_delivery_date").is_in(days)).sort("source_file")
    dates = ledger.select(pl.col("source_file").alias("_source_file"), "_delivery_date")
    raw = _read_parts(lake, ledger["raw_part"].drop_nulls().to_list(), raw_schema(table))
    broken = _read_parts(lake, ledger["broken_part"].drop_nulls().to_list(), BROKEN_RAW_SCHEMA)
    for col in table.column_names:  # parts written before a column was added to the contract
        if col not in raw.columns:
            raw = raw.with_columns(pl.lit(None, dtype=pl.String).alias(col))
    raw = raw.join(dates, on="_source_file", how="left")
    broken = broken.join(dates, on="_source_file", how="left")
    staged, quarantine = stage_frame(raw, broken, table, registry)
    reports = []
    for day in days:
        s_part = staged.filter(pl.col("_delivery_date") == day)
        q_part = quarantine.filter(pl.col("_delivery_date") == day)
        l_part = ledger.filter(pl.col("_delivery_date") == day)
        footer = {STAGED_FROM: _staged_from(l_part)}
        for frame, folder in ((s_part, staged_dir(lake, table)), (q_part, quarantine_dir(lake, table))):
            with atomic_path(_partition_path(folder, day)) as tmp:
                write_frame(frame, tmp, lake, metadata=footer)
        reports.append(_report(table, day, l_part, s_part, q_part))
    return reports


def _file_counts(
    ledger: pl.DataFrame, staged: dict[str, int], quarantined: dict[str, int]
) -> list[FileCount]:
    """raw + broken (from the ledger) against staged + quarantined, per ingested file."""
    return [
        FileCount(src, int(rows or 0), int(broken or 0), staged.get(src, 0), quarantined.get(src, 0))
        for src, rows, broken in ledger.select("source_file", "rows", "broken_rows").iter_rows()
    ]


def _report(
    table: Table, partition: date | None, ledger: pl.DataFrame, staged: pl.DataFrame, quarantine: pl.DataFrame
) -> StageReport:
    files = _file_counts(
        ledger,
        {str(k): int(v) for k, v in staged.group_by("_source_file").len().iter_rows()},
        {str(k): int(v) for k, v in quarantine.group_by("_source_file").len().iter_rows()},
    )
    return StageReport(
        table=table.name,
        partition=partition.isoformat() if partition else None,
        files=files,
        staged_rows=staged.height,
        quarantined_rows=quarantine.height,
        reasons=_tally(quarantine["_reasons"]),
        flags=_tally(staged["_flags"]),
    )


def _tally(codes: pl.Series) -> dict[str, int]:
    """How often each code appears in a list column (vectorised: big tables have millions of rows)."""
    counts = codes.explode().drop_nulls().value_counts()
    return dict(sorted((str(k), int(v)) for k, v in counts.iter_rows()))


@dataclass(frozen=True)
class StagedReconciliation:
    files_checked: int
    mismatches: list[FileCount]

    @property
    def passed(self) -> bool:
        return not self.mismatches


def _part_counts(lake: Lake) -> Callable[[Path], dict[str, int]]:
    def count(part: Path) -> dict[str, int]:
        counts = read_frame(part, lake, columns=["_source_file"]).group_by("_source_file").len()
        return {str(k): int(v) for k, v in counts.iter_rows()}

    return count


def _count_by_file(folder: Path, lake: Lake) -> dict[str, int]:
    """Rows per delivered source file over the folder's parts (each part read only when it
    changed since the last count: :func:`rainbow.filefacts.cached_facts`)."""
    parts = glob_files(folder / "**" / "*.parquet")
    total: Counter[str] = Counter()
    for counts in cached_facts(lake, "rows_by_source_file", parts, _part_counts(lake)):
        total.update(counts)
    return dict(total)


def reconcile_staged(lake: Lake, table: Table) -> StagedReconciliation:
    """For every ingested file: raw rows + broken rows = staged rows + quarantined rows (from disk)."""
    ledger = read_ledger(lake, table.name).filter(pl.col("status") == "ingested")
    files = _file_counts(
        ledger,
        _count_by_file(staged_dir(lake, table), lake),
        _count_by_file(quarantine_dir(lake, table), lake),
    )
    return StagedReconciliation(files_checked=len(files), mismatches=[f for f in files if not f.reconciles])


def staged_view_statements(lake: Lake, table: Table) -> list[str]:
    """``staged.<table>`` and ``staged.<table>__quarantine`` over every partition's Parquet."""
    out = [f"CREATE SCHEMA IF NOT EXISTS {STAGED_SCHEMA_NAME}"]
    for name, folder, schema in (
        (table.name, staged_dir(lake, table), staged_schema(table)),
        (f"{table.name}__quarantine", quarantine_dir(lake, table), quarantine_schema(table)),
    ):
        glob = folder / "**" / "*.parquet" if any(folder.rglob("*.parquet")) else None
        select = parquet_select(glob, schema) if glob else empty_select(schema)
        out.append(f'CREATE OR REPLACE VIEW {STAGED_SCHEMA_NAME}."{name}" AS {select}')
    return out


def create_staged_views(con: duckdb.DuckDBPyConnection, lake: Lake, table: Table) -> list[str]:
    """(Re)create ``staged.<table>`` and ``staged.<table>__quarantine`` where changed."""
    [schema_stmt, *views] = staged_view_statements(lake, table)
    return ensure_views(con, lake, STAGED_SCHEMA_NAME, schema_stmt, views)


def ingest_and_stage(
    lake: Lake, registry: Registry, now: datetime, tables: Iterable[Table] | None = None
) -> None:
    """landing -> raw -> staged without Dagster, in the layout the assets write (event tables per day).

    For tests, benchmarks and one-off rebuilds; the nightly build runs the same functions
    through the Dagster assets.
    """
    from assets.ingest.raw import ingest_table
    from assets.partitions import is_partitioned

    for table in tables if tables is not None else [t for _, t in registry.tables()]:
        ingest_table(lake, table, now)
        if is_partitioned(table):
            days = read_ledger(lake, table.name)["delivered_date"].drop_nulls().unique().to_list()
            stage_partitions(lake, table, registry, days)
        else:
            stage_table(lake, table, registry)

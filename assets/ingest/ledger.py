"""Ingest ledger: which landing file (by SHA-256) became which raw part, when.

Stored as Parquet under ``<lake>/raw/_ledger/``, every file rewritten atomically:

* an unpartitioned table: one file, ``_ledger/<table>.parquet``;
* a table partitioned by delivery date: one file per day,
  ``_ledger/<table>/<YYYY-MM-DD>.parquet``, holding the entries of the files
  delivered that day. A run writes only the days it ingested, so runs of
  different days of one table never write the same file.

The table's ledger is the union of all its files (:func:`read_ledger`), and an
entry goes to exactly one file (:func:`save_entries`), so the union never
doubles an entry - also when a table's partitioning changed and both layouts
exist. A file whose checksum is already in the ledger (any day) is never
ingested again: under the same path it is simply known; under another path (a
resend, a copy) it is recorded once as ``duplicate`` with ``duplicate_of``
naming the file that was ingested. (One exception: a header-only file under
another delivery date is that day's empty delivery, not a duplicate; see
``assets.ingest.raw``.)
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Literal

import polars as pl

from rainbow.io import atomic_path
from rainbow.settings import Lake

LedgerStatus = Literal["ingested", "duplicate"]

LEDGER_SCHEMA: dict[str, pl.DataType] = {
    "file_sha256": pl.String(),
    "source_file": pl.String(),  # relative to landing/, POSIX separators
    "delivered_date": pl.Date(),  # parsed from the file name, when the template has {date}
    "status": pl.String(),  # 'ingested' | 'duplicate'
    "duplicate_of": pl.String(),  # source_file of the ingested copy, for duplicates
    "delivered_rows": pl.Int64(),  # data rows the reader found (= rows + broken_rows)
    "declared_total": pl.Int64(),  # JSON dumps: the dump's own 'total'
    "rows": pl.Int64(),  # rows written to the raw part
    "broken_rows": pl.Int64(),  # rows written to the _broken part
    "raw_part": pl.String(),  # relative to the lake root
    "broken_part": pl.String(),  # relative to the lake root, null when nothing was broken
    "encoding": pl.String(),
    "header_row": pl.Int64(),
    "extra_columns": pl.List(pl.String()),
    "missing_columns": pl.List(pl.String()),
    "file_size": pl.Int64(),
    "file_mtime_ns": pl.Int64(),
    "ingested_at": pl.Datetime("us", "UTC"),
}


@dataclass(frozen=True)
class LedgerEntry:
    file_sha256: str
    source_file: str
    delivered_date: date | None
    status: LedgerStatus
    ingested_at: datetime
    file_size: int
    file_mtime_ns: int
    duplicate_of: str | None = None
    delivered_rows: int | None = None
    declared_total: int | None = None
    rows: int | None = None
    broken_rows: int | None = None
    raw_part: str | None = None
    broken_part: str | None = None
    encoding: str | None = None
    header_row: int | None = None
    extra_columns: tuple[str, ...] = ()
    missing_columns: tuple[str, ...] = ()


LEDGER_DIR = "_ledger"


def ledger_dir(lake: Lake) -> Path:
    return lake.raw / LEDGER_DIR


def ledger_path(lake: Lake, table: str, day: date | None = None) -> Path:
    """The table's single ledger file, or (with ``day``) the ledger file of that delivery date."""
    if day is None:
        return ledger_dir(lake) / f"{table}.parquet"
    return ledger_dir(lake) / table / f"{day.isoformat()}.parquet"


def ledger_files(lake: Lake, table: str) -> list[Path]:
    """Every ledger file of the table: the single file (if any), then the per-day files by date."""
    single = ledger_path(lake, table)
    days = sorted((ledger_dir(lake) / table).glob("*.parquet"))
    return [single, *days] if single.exists() else days


def empty_ledger() -> pl.DataFrame:
    return pl.DataFrame(schema=LEDGER_SCHEMA)


def _conform(found: pl.DataFrame) -> pl.DataFrame:
    return found.select(
        [
            pl.col(c).cast(t) if c in found.columns else pl.lit(None, t).alias(c)  # older ledgers
            for c, t in LEDGER_SCHEMA.items()
        ]
    )


def read_ledger_file(path: Path) -> pl.DataFrame:
    """One ledger file, or an empty ledger when it does not exist."""
    return _conform(pl.read_parquet(path)) if path.exists() else empty_ledger()


def read_ledger(lake: Lake, table: str) -> pl.DataFrame:
    """The table's whole ledger (all its files), or an empty one with the ledger schema."""
    paths = ledger_files(lake, table)
    if not paths:
        return empty_ledger()
    try:
        return _conform(pl.read_parquet(paths, missing_columns="insert"))
    except pl.exceptions.PolarsError:  # files written with other column types: conform each one
        return pl.concat([read_ledger_file(p) for p in paths], how="vertical")


def entries_frame(entries: Iterable[LedgerEntry]) -> pl.DataFrame:
    records = []
    for e in entries:
        rec = asdict(e)
        rec["extra_columns"] = list(e.extra_columns)
        rec["missing_columns"] = list(e.missing_columns)
        records.append(rec)
    return pl.DataFrame(records, schema=LEDGER_SCHEMA)


def append_entries(ledger: pl.DataFrame, entries: Iterable[LedgerEntry]) -> pl.DataFrame:
    new = entries_frame(entries)
    return pl.concat([ledger, new], how="vertical") if new.height else ledger


def write_ledger(lake: Lake, table: str, ledger: pl.DataFrame, day: date | None = None) -> Path:
    """Write one ledger file atomically (sorted by ingestion, then source file)."""
    path = ledger_path(lake, table, day)
    out = ledger.select(list(LEDGER_SCHEMA)).sort(["ingested_at", "source_file"], maintain_order=True)
    with atomic_path(path) as tmp:
        out.write_parquet(tmp)
    return path


def save_entries(lake: Lake, table: str, entries: Sequence[LedgerEntry], by_day: bool) -> list[Path]:
    """Append ``entries`` to the ledger file each belongs to; return the files written.

    ``by_day``: the table is partitioned, every entry goes to the file of its
    ``delivered_date`` (which must be set). Otherwise all go to the single file.
    Only files receiving an entry are rewritten.
    """
    groups: dict[date | None, list[LedgerEntry]] = {}
    for e in entries:
        if by_day and e.delivered_date is None:
            raise ValueError(f"{table}: {e.source_file} has no delivery date for the per-day ledger")
        groups.setdefault(e.delivered_date if by_day else None, []).append(e)
    written = []
    for day, group in sorted(groups.items(), key=lambda kv: kv[0] or date.min):
        current = read_ledger_file(ledger_path(lake, table, day))
        written.append(write_ledger(lake, table, append_entries(current, group), day))
    return written

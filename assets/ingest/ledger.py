"""Ingest ledger: which landing file (by SHA-256) became which raw part, when.

One Parquet file per table at ``<lake>/raw/_ledger/<table>.parquet``, rewritten
atomically. A file whose checksum is already in the ledger is never ingested
again: under the same path it is simply known; under another path (a resend,
a copy) it is recorded once as ``duplicate`` with ``duplicate_of`` naming the
file that was ingested. (One exception: a header-only file under another
delivery date is that day's empty delivery, not a duplicate; see
``assets.ingest.raw``.)
"""

from __future__ import annotations

from collections.abc import Iterable
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


def ledger_path(lake: Lake, table: str) -> Path:
    return lake.raw / "_ledger" / f"{table}.parquet"


def empty_ledger() -> pl.DataFrame:
    return pl.DataFrame(schema=LEDGER_SCHEMA)


def read_ledger(lake: Lake, table: str) -> pl.DataFrame:
    """The table's ledger, or an empty one with the ledger schema."""
    path = ledger_path(lake, table)
    if not path.exists():
        return empty_ledger()
    found = pl.read_parquet(path)
    return found.select(
        [
            pl.col(c).cast(t) if c in found.columns else pl.lit(None, t).alias(c)  # older ledgers
            for c, t in LEDGER_SCHEMA.items()
        ]
    )


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


def write_ledger(lake: Lake, table: str, ledger: pl.DataFrame) -> Path:
    """Write the whole ledger atomically (sorted by ingestion, then source file)."""
    path = ledger_path(lake, table)
    out = ledger.select(list(LEDGER_SCHEMA)).sort(["ingested_at", "source_file"], maintain_order=True)
    with atomic_path(path) as tmp:
        out.write_parquet(tmp)
    return path

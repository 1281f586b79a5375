"""The operational store: what people write while the platform runs.

Steward match decisions, alert acknowledgements and the audit log are written
by dashboards and the CLI at any time, also while a nightly build runs, so they
do not go to the DuckDB warehouse (one writer at a time). They go to SQLite in
WAL mode under ``<lake>/ops/ops.sqlite``: many readers, one short writer
transaction at a time, and a busy timeout instead of lock errors. The pipeline
reads it on its next run.

Each feature declares its own tables with :meth:`OpsStore.ensure` (idempotent
``CREATE TABLE IF NOT EXISTS``), so this module knows nothing about them.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import polars as pl

from rainbow.settings import Lake

BUSY_TIMEOUT_S = 30.0


def ops_path(lake: Lake) -> Path:
    return lake.root / "ops" / "ops.sqlite"


class OpsStore:
    """A thin handle on ``<lake>/ops/ops.sqlite`` (created on first use, WAL mode)."""

    def __init__(self, lake: Lake) -> None:
        self.path = ops_path(lake)

    @contextlib.contextmanager
    def connect(self) -> Iterator[sqlite3.Connection]:
        """A connection for one unit of work: committed when the block ends, rolled back on error."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        con = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
        try:
            con.execute("PRAGMA journal_mode=WAL")
            con.execute("PRAGMA synchronous=NORMAL")
            con.execute("BEGIN IMMEDIATE")
            try:
                yield con
            except BaseException:
                con.execute("ROLLBACK")
                raise
            con.execute("COMMIT")
        finally:
            con.close()

    def ensure(self, *ddl: str) -> None:
        """Run ``CREATE TABLE/INDEX IF NOT EXISTS`` statements."""
        with self.connect() as con:
            for stmt in ddl:
                con.execute(stmt)

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """One statement; returns the number of rows changed."""
        with self.connect() as con:
            return con.execute(sql, params).rowcount

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> int:
        with self.connect() as con:
            return con.executemany(sql, rows).rowcount

    def query(
        self, sql: str, params: Sequence[Any] = (), schema: dict[str, Any] | None = None
    ) -> pl.DataFrame:
        """A SELECT as a Polars frame (``schema`` fixes the types, also of an empty result)."""
        if not self.path.exists():
            return pl.DataFrame(schema=schema)
        with self.connect() as con:
            cur = con.execute(sql, params)
            names = [d[0] for d in cur.description]
            rows = cur.fetchall()
        return pl.DataFrame(rows, schema=schema or names, orient="row")

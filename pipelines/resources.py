"""Dagster resources: the lake root, and short-lived DuckDB connections to its warehouse."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import duckdb
from pydantic import Field

from rainbow.parquet import listing_scope, register_view_sources
from rainbow.settings import Lake, lake_root
from rainbow.warehouse import limit_memory, publish_views


def _default_root() -> str:
    # Evaluated when a LakeResource is constructed (in pipelines.definitions), never at import.
    return str(lake_root())


class LakeResource(dg.ConfigurableResource):
    """The lake (all zones under one root) and its DuckDB warehouse.

    DuckDB admits one writing process at a time, so :meth:`warehouse` opens a
    connection only for the duration of a ``with`` block, and retries while
    another process holds the lock (a parallel step, or a reader).
    """

    root: str = Field(
        default_factory=_default_root,
        description="Lake root directory; defaults to $RAINBOW_LAKE_ROOT or ./data.",
    )
    lock_timeout_seconds: float = Field(
        default=120.0, description="How long to wait for the DuckDB file lock before failing."
    )

    @property
    def lake(self) -> Lake:
        return Lake(Path(self.root).expanduser().resolve())

    @contextlib.contextmanager
    def warehouse(self, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
        """A connection to ``<lake>/warehouse.duckdb``, closed when the block ends."""
        path = self.lake.warehouse
        path.parent.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + self.lock_timeout_seconds
        delay = 0.05
        while True:
            try:
                con = duckdb.connect(str(path), read_only=read_only)
                break
            except duckdb.IOException as exc:
                if "lock" not in str(exc).lower() or time.monotonic() >= deadline:
                    raise
                time.sleep(delay)
                delay = min(delay * 2, 2.0)
        try:
            limit_memory(con)
            with listing_scope():  # the step's files are listed once until it writes one
                register_view_sources(con, self.lake)  # encrypted restricted zones: rainbow.parquet
                yield con
            if not read_only:
                publish_views(con, self.lake)  # readers (dashboards) open these, not the locked file
        finally:
            con.close()

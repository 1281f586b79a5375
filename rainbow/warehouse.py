"""Reading the warehouse while a build writes it.

DuckDB takes a file lock per process: while the pipeline holds
``warehouse.duckdb`` open for writing, no other process can open it, not even
read-only. The warehouse holds only *views* over Parquet files that are written
atomically (temp name, then rename), so readers do not need the file itself:

- after every writing connection, :func:`publish_views` writes the DDL of every
  view (``CREATE SCHEMA`` + ``CREATE VIEW`` statements) to
  ``<lake>/warehouse_views.sql`` (atomically);
- :func:`open_reader` opens an in-memory DuckDB and runs that DDL: the same
  ``staged.*``, ``library.*``, ``marts.*`` views, over the same Parquet files,
  with no lock on the warehouse. A build that runs meanwhile replaces files by
  rename; a reader sees the old or the new file, never half of one.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb

from rainbow.io import write_bytes_atomic
from rainbow.settings import Lake

VIEWS_FILE = "warehouse_views.sql"
SEPARATOR = "\n-- rainbow:view\n"


def views_path(lake: Lake) -> Path:
    return lake.root / VIEWS_FILE


def view_ddl(con: duckdb.DuckDBPyConnection) -> list[str]:
    """Every user view's CREATE statement (schemas first), in dependency-safe order (by schema, name)."""
    schemas = [
        r[0]
        for r in con.execute(
            "SELECT DISTINCT schema_name FROM duckdb_views() WHERE NOT internal "
            "AND database_name = current_database() ORDER BY 1"
        ).fetchall()
    ]
    views = con.execute(
        "SELECT sql FROM duckdb_views() WHERE NOT internal AND database_name = current_database() "
        "ORDER BY schema_name, view_name"
    ).fetchall()
    return [f'CREATE SCHEMA IF NOT EXISTS "{s}";' for s in schemas] + [str(v[0]) for v in views]


def publish_views(con: duckdb.DuckDBPyConnection, lake: Lake) -> None:
    """Write the views' DDL next to the warehouse, only when it changed."""
    text = SEPARATOR.join(view_ddl(con))
    path = views_path(lake)
    if path.exists() and path.read_text(encoding="utf-8") == text:
        return
    write_bytes_atomic(path, text.encode("utf-8"))


def load_views(con: duckdb.DuckDBPyConnection, lake: Lake) -> int:
    """Run the published view DDL on ``con`` (in its current database); returns views created.

    Views whose files are missing (a zone not built yet) are skipped. Views over encrypted
    files read sources registered here first (:func:`rainbow.parquet.register_sources`).
    """
    from rainbow.parquet import register_sources

    path = views_path(lake)
    if not path.exists():
        return 0
    created = 0
    statements = path.read_text(encoding="utf-8").split(SEPARATOR)
    register_sources(con, lake, statements)
    for statement in statements:
        if not statement.strip():
            continue
        try:
            con.execute(statement)
        except duckdb.Error:
            continue  # e.g. a view over files a reader cannot see yet
        created += statement.lstrip().upper().startswith("CREATE VIEW")
    return created


def open_reader(lake: Lake) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB with the warehouse's views (no lock on ``warehouse.duckdb``)."""
    con = duckdb.connect()
    load_views(con, lake)
    return con


MEMORY_LIMIT_ENV = "RAINBOW_DUCKDB_MEMORY_LIMIT"


def limit_memory(con: duckdb.DuckDBPyConnection) -> None:
    """Cap DuckDB's memory when ``$RAINBOW_DUCKDB_MEMORY_LIMIT`` is set (e.g. ``6GB``); past the cap
    sorts and hash aggregates spill to ``<warehouse>.tmp``. Unset: DuckDB's default (80% of RAM).
    Not a default: at 400,000 elders the provenance query's window functions do not spill and
    fail under a 4GB cap (measured: 11.9 GB peak uncapped), see the README's benchmark notes."""
    limit = os.environ.get(MEMORY_LIMIT_ENV, "").strip()
    if not limit:
        return
    if not re.fullmatch(r"\d+(\.\d+)?\s*(KB|MB|GB|TB|KiB|MiB|GiB|TiB)", limit, flags=re.IGNORECASE):
        raise ValueError(f"${MEMORY_LIMIT_ENV} must be like 4GB or 512MB, not {limit!r}")
    con.execute(f"SET memory_limit = '{limit}'")


@contextmanager
def joins_as_written(con: duckdb.DuckDBPyConnection) -> Iterator[None]:
    """Hash joins build on the side the optimizer's join order gives, not on the side DuckDB's
    ``build_side_probe_side`` optimizer deems smaller: an Arrow-registered source (every
    encrypted table, :mod:`rainbow.parquet`) reports no row count and is estimated at one row,
    so that optimizer builds the hash table on it - on ``elder_links``' 16.8 M rows to find
    27,000 elders' records (2.5-3.2 GB at 400,000 x 365; 4 MB built the other way round)."""
    before = str(con.execute("SELECT current_setting('disabled_optimizers')").fetchall()[0][0])
    names = [n.strip() for n in before.split(",") if n.strip()]
    if "build_side_probe_side" in names:
        yield
        return
    con.execute("SET disabled_optimizers = ?", [",".join([*names, "build_side_probe_side"])])
    try:
        yield
    finally:
        con.execute("SET disabled_optimizers = ?", [before])


def connect_warehouse(lake: Lake, *, read_only: bool = False) -> duckdb.DuckDBPyConnection:
    """``<lake>/warehouse.duckdb`` with the encrypted sources of its views registered.

    The views of the restricted zones read registered Arrow datasets
    (:mod:`rainbow.parquet`); a bare ``duckdb.connect`` cannot bind them.
    """
    from rainbow.parquet import register_view_sources

    con = duckdb.connect(str(lake.warehouse), read_only=read_only)
    try:
        limit_memory(con)
        register_view_sources(con, lake)
    except BaseException:
        con.close()
        raise
    return con

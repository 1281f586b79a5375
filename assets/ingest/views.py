"""DuckDB views over the raw zone's Parquet parts (``raw.<table>``, ``raw.<table>__broken``).

The statements are built here and run by the caller on a connection it opens
only for the moment of the write (DuckDB admits one writing process at a time).
When a table has no part yet its views still exist, typed and empty, so
downstream SQL never fails on a first run without deliveries. The views read
globs, so a new part needs no new view; a view is (re)created only when its
statement changed (a fingerprint of it is kept as the view's comment), so a
run that ingested nothing leaves ``warehouse.duckdb`` byte for byte as it was.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import duckdb
import polars as pl
from polars.datatypes import DataTypeClass

from assets.ingest.ledger import LEDGER_SCHEMA, ledger_dir
from assets.ingest.raw import BROKEN_RAW_SCHEMA, broken_part_paths, raw_part_paths, raw_schema, table_dir
from rainbow.parquet import parquet_from, register_sources
from rainbow.settings import Lake
from schemas.contract import Table

RAW_SCHEMA_NAME = "raw"
LEDGER_VIEW = "ingest_ledger"


def duck_type(dtype: pl.DataType | DataTypeClass) -> str:
    if dtype == pl.String():
        return "VARCHAR"
    if dtype == pl.Int64():
        return "BIGINT"
    if dtype == pl.Float64():
        return "DOUBLE"
    if dtype == pl.Boolean():
        return "BOOLEAN"
    if dtype == pl.Date():
        return "DATE"
    if isinstance(dtype, pl.Datetime):
        return "TIMESTAMPTZ" if dtype.time_zone else "TIMESTAMP"
    if isinstance(dtype, pl.List):
        return f"{duck_type(dtype.inner)}[]"
    raise TypeError(f"no DuckDB type for {dtype}")


def _literal(path: Path | str) -> str:
    return "'" + str(path).replace("'", "''") + "'"


def empty_select(schema: dict[str, pl.DataType]) -> str:
    cols = ", ".join(f'CAST(NULL AS {duck_type(t)}) AS "{c}"' for c, t in schema.items())
    return f"SELECT {cols} WHERE false"


def parquet_select(glob: Path, schema: dict[str, pl.DataType]) -> str:
    """``SELECT <columns>`` over the files of ``glob`` (an encrypted source when they are encrypted)."""
    cols = ", ".join(f'"{c}"' for c in schema)
    return f"SELECT {cols} FROM {parquet_from(glob)}"


def raw_view_statements(lake: Lake, table: Table) -> list[str]:
    """``CREATE OR REPLACE VIEW`` statements for the table's raw and broken views (after the schema)."""
    schema = raw_schema(table)
    base = table_dir(lake, table)
    main = parquet_select(base / "*.parquet", schema) if raw_part_paths(lake, table) else empty_select(schema)
    broken = (
        parquet_select(base / "_broken" / "*.parquet", BROKEN_RAW_SCHEMA)
        if broken_part_paths(lake, table)
        else empty_select(BROKEN_RAW_SCHEMA)
    )
    return [
        f"CREATE SCHEMA IF NOT EXISTS {RAW_SCHEMA_NAME}",
        f'CREATE OR REPLACE VIEW {RAW_SCHEMA_NAME}."{table.name}" AS {main}',
        f'CREATE OR REPLACE VIEW {RAW_SCHEMA_NAME}."{table.name}__broken" AS {broken}',
    ]


# _ledger/<table>.parquet (unpartitioned) or _ledger/<table>/<YYYY-MM-DD>.parquet (per day)
_LEDGER_TABLE_RE = r"_ledger[/\\]([^/\\]+?)(?:[/\\][^/\\]+)?\.parquet$"


def ledger_view_statement(lake: Lake) -> str:
    """One view over every table's ingest ledger (both layouts), with the table name."""
    folder = ledger_dir(lake)
    if any(folder.rglob("*.parquet")):
        cols = ", ".join(f'"{c}"' for c in LEDGER_SCHEMA)
        select = (
            f"SELECT regexp_extract(filename, '{_LEDGER_TABLE_RE}', 1) AS table_name, {cols} "
            f"FROM read_parquet({_literal(folder / '**' / '*.parquet')}, union_by_name = true, "
            "filename = true)"
        )
    else:
        select = empty_select({"table_name": pl.String(), **LEDGER_SCHEMA})
    return f"CREATE OR REPLACE VIEW {RAW_SCHEMA_NAME}.{LEDGER_VIEW} AS {select}"


def _view_name(statement: str) -> str:
    head = statement.split(" AS ", 1)[0]
    return head.rsplit(".", 1)[1].strip('"')


def _fingerprint(statement: str) -> str:
    return "rainbow-view-sha256:" + hashlib.sha256(statement.encode("utf-8")).hexdigest()[:32]


def create_raw_views(con: duckdb.DuckDBPyConnection, lake: Lake, table: Table) -> list[str]:
    """(Re)create ``raw.<table>``, ``raw.<table>__broken`` and ``raw.ingest_ledger`` where changed.

    Returns the names of the views written (none when every view is as it should be).
    """
    [schema_stmt, *views] = raw_view_statements(lake, table)
    views.append(ledger_view_statement(lake))
    return ensure_views(con, lake, RAW_SCHEMA_NAME, schema_stmt, views)


def ensure_views(
    con: duckdb.DuckDBPyConnection, lake: Lake, schema_name: str, schema_stmt: str, views: list[str]
) -> list[str]:
    """Run each ``CREATE OR REPLACE VIEW <schema>."name" AS ...`` whose fingerprint changed.

    Recreating an identical view still rewrites the DuckDB file, so unchanged
    views are left alone (their fingerprint is kept as the view's comment). The
    encrypted sources of every view are registered again on ``con`` either way, so
    the connection's next query sees the files just written.
    """
    register_sources(con, lake, views)
    current = dict(
        con.execute(
            "SELECT view_name, comment FROM duckdb_views() "
            "WHERE schema_name = ? AND database_name = current_database()",
            [schema_name],
        ).fetchall()
    )
    written: list[str] = []
    for statement in views:
        name, tag = _view_name(statement), _fingerprint(statement)
        if current.get(name) == tag:
            continue
        if not written:
            con.execute(schema_stmt)
        con.execute(statement)
        con.execute(f"COMMENT ON VIEW {schema_name}.\"{name}\" IS '{tag}'")
        written.append(name)
    return written

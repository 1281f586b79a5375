"""Read-only data access for the dashboards: typed, pure functions, no Streamlit.

The warehouse (``<lake>/warehouse.duckdb``) is opened read-only for the
duration of one call and closed again: DuckDB allows one writing process *or*
any number of reading ones, so a dashboard holding the file open would stop the
pipeline from writing. While the pipeline holds it, callers get
:attr:`WarehouseState.LOCKED`, never an exception.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from enum import StrEnum
from pathlib import Path

import duckdb

from rainbow.parquet import register_view_sources
from rainbow.settings import ZONES, Lake

SHANGHAI = timezone(timedelta(hours=8), "Asia/Shanghai")  # no daylight saving since 1991

ZONE_LABELS: dict[str, str] = {
    "landing": "落地区",
    "raw": "原始区",
    "staged": "标准区",
    "library": "主题库",
    "marts": "集市区",
    "exports": "开放数据区",
    "main": "默认",
}

_TABLES_SQL = """
SELECT schema_name, view_name AS name, 'view' AS kind
FROM duckdb_views()
WHERE NOT internal AND NOT temporary AND database_name = current_database()
UNION ALL
SELECT schema_name, table_name AS name, 'table' AS kind
FROM duckdb_tables()
WHERE NOT internal AND NOT temporary AND database_name = current_database()
ORDER BY schema_name, name
"""


class WarehouseState(StrEnum):
    OK = "ok"
    MISSING = "missing"
    LOCKED = "locked"
    ERROR = "error"


@dataclass(frozen=True)
class TableInfo:
    """One table or view of the warehouse, with its row count (None when unreadable)."""

    schema: str
    name: str
    kind: str  # "view" or "table"
    rows: int | None
    error: str | None = None


@dataclass(frozen=True)
class WarehouseOverview:
    path: Path
    state: WarehouseState
    tables: tuple[TableInfo, ...] = ()
    detail: str = ""


@dataclass(frozen=True)
class ZoneSummary:
    zone: str
    label: str
    tables: tuple[TableInfo, ...]

    @property
    def total_rows(self) -> int:
        return sum(t.rows or 0 for t in self.tables)

    @property
    def unreadable(self) -> int:
        return sum(1 for t in self.tables if t.rows is None)


@dataclass(frozen=True)
class LandingSystem:
    """Files delivered by one source system under ``landing/<system>/``.

    ``system`` is ``""`` for files lying directly in ``landing/``.
    """

    system: str
    files: int
    bytes: int
    latest: datetime | None


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _sql_string(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def read_warehouse(path: Path) -> WarehouseOverview:
    """Every non-internal table and view of the warehouse at ``path``, with row counts.

    Never raises for a missing, locked or corrupt file: the state says what happened.
    Relative file paths inside views resolve against the warehouse's folder (the lake root).
    """
    if not path.is_file():
        return WarehouseOverview(path, WarehouseState.MISSING)
    try:
        con = duckdb.connect(str(path), read_only=True)
    except duckdb.Error as exc:
        message = str(exc)
        if "lock" in message.lower():
            state = WarehouseState.LOCKED
        elif "does not exist" in message:
            state = WarehouseState.MISSING
        else:
            state = WarehouseState.ERROR
        return WarehouseOverview(path, state, detail=_first_line(exc))
    try:
        con.execute(f"SET file_search_path = {_sql_string(str(path.resolve().parent))}")
        register_view_sources(con, Lake(path.resolve().parent))  # encrypted zones
        listed = con.execute(_TABLES_SQL).fetchall()
        tables = []
        for schema, name, kind in listed:
            try:
                row = con.execute(
                    f"SELECT count(*) FROM {quote_ident(schema)}.{quote_ident(name)}"
                ).fetchone()
                rows = int(row[0]) if row else 0
                tables.append(TableInfo(schema, name, kind, rows))
            except duckdb.Error as exc:
                tables.append(TableInfo(schema, name, kind, None, _first_line(exc)))
    except duckdb.Error as exc:
        return WarehouseOverview(path, WarehouseState.ERROR, detail=_first_line(exc))
    finally:
        con.close()
    return WarehouseOverview(path, WarehouseState.OK, tuple(tables))


def zone_order(schema: str) -> tuple[int, str]:
    """Lake zones in pipeline order first, then any other schema alphabetically."""
    return (ZONES.index(schema), "") if schema in ZONES else (len(ZONES), schema)


def group_by_zone(tables: Iterable[TableInfo]) -> list[ZoneSummary]:
    grouped: dict[str, list[TableInfo]] = {}
    for table in tables:
        grouped.setdefault(table.schema, []).append(table)
    return [
        ZoneSummary(schema, ZONE_LABELS.get(schema, schema), tuple(sorted(items, key=lambda t: t.name)))
        for schema, items in sorted(grouped.items(), key=lambda kv: zone_order(kv[0]))
    ]


def _hidden(path: Path, base: Path) -> bool:
    """Dot files and folders (e.g. atomic-write temporaries) are not deliveries."""
    return any(part.startswith(".") for part in path.relative_to(base).parts)


def _summarise(system: str, files: list[Path]) -> LandingSystem:
    sizes, mtimes = [], []
    for file in files:
        try:
            stat = file.stat()
        except OSError:  # vanished while we looked
            continue
        sizes.append(stat.st_size)
        mtimes.append(stat.st_mtime)
    latest = datetime.fromtimestamp(max(mtimes), tz=SHANGHAI) if mtimes else None
    return LandingSystem(system, len(sizes), sum(sizes), latest)


def landing_summary(landing: Path) -> list[LandingSystem]:
    """File count, total size and latest delivery per source system folder of ``landing``.

    Empty when the folder does not exist. Folders without files are listed with 0 files.
    """
    if not landing.is_dir():
        return []
    result: list[LandingSystem] = []
    loose: list[Path] = []
    for entry in sorted(landing.iterdir()):
        if entry.name.startswith("."):
            continue
        if entry.is_dir():
            files = [
                Path(root) / name
                for root, _dirs, names in os.walk(entry)
                for name in names
                if not _hidden(Path(root) / name, entry)
            ]
            result.append(_summarise(entry.name, files))
        elif entry.is_file():
            loose.append(entry)
    if loose:
        result.append(_summarise("", loose))
    return result


def format_bytes(size: int) -> str:
    """Human-readable size with binary prefixes: ``1.5 KiB``, ``0 B``."""
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{int(value)} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")

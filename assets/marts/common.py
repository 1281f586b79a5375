"""Shared by the marts builders: the build's as-of date, build parameters, writes and views."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import duckdb
import polars as pl

from assets.ingest.views import ensure_views
from assets.marts.rules import PortraitRules
from rainbow.io import atomic_path
from rainbow.settings import Lake

MARTS_SCHEMA = "marts"
SQL_DIR = Path(__file__).resolve().parent / "sql"

# The as-of date of a build: the latest date anything happened in the library, so
# outputs depend on the data only, never on the wall clock.
AS_OF_SQL = """
SELECT greatest(
  (SELECT max(e.service_date) FROM library.fact_service_event AS e),
  (SELECT max(s.screening_date) FROM library.fact_screening AS s),
  (SELECT max(t.measure_date) FROM library.fact_vitals_daily AS t)
) AS as_of
"""


def data_as_of(con: duckdb.DuckDBPyConnection) -> date:
    """The latest service, screening or vital-sign date in the library."""
    rows = con.sql(AS_OF_SQL).fetchall()
    row = rows[0] if rows else None
    if row is None or row[0] is None:
        raise ValueError("the library holds no service, screening or vital-sign dates: nothing to build")
    value = row[0]
    return value.date() if hasattr(value, "date") and callable(value.date) else value


def read_sql(name: str) -> str:
    return (SQL_DIR / f"{name}.sql").read_text(encoding="utf-8")


def register_parameters(con: duckdb.DuckDBPyConnection, as_of: date, rules: PortraitRules) -> None:
    """Temporary ``mart_params`` (as_of) and ``mart_ltci_entitlement`` on this connection."""
    con.execute("CREATE OR REPLACE TEMP TABLE mart_params AS SELECT CAST(? AS DATE) AS as_of", [as_of])
    ent = pl.DataFrame(
        {
            "care_level": list(rules.ltci_visits_per_week),
            "visits_per_week": list(rules.ltci_visits_per_week.values()),
        },
        schema={"care_level": pl.String, "visits_per_week": pl.Int64},
    )
    con.register("_mart_ltci_entitlement_src", ent.to_arrow())
    con.execute(
        "CREATE OR REPLACE TEMP TABLE mart_ltci_entitlement AS SELECT * FROM _mart_ltci_entitlement_src"
    )
    con.unregister("_mart_ltci_entitlement_src")


def mart_path(lake: Lake, table: str) -> Path:
    """``<lake>/marts/<table>/data.parquet`` (a single-file mart table)."""
    return lake.marts / table / "data.parquet"


def write_parquet(frame: pl.DataFrame, path: Path) -> None:
    """Write atomically (temporary sibling, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        frame.write_parquet(tmp, compression="zstd", statistics=True)


def _literal(path: Path) -> str:
    return "'" + str(path).replace("'", "''") + "'"


def ensure_mart_views(con: duckdb.DuckDBPyConnection, lake: Lake, sources: dict[str, Path]) -> list[str]:
    """``marts.<table>`` views over Parquet files or globs (recreated only when changed)."""
    views = [
        f'CREATE OR REPLACE VIEW {MARTS_SCHEMA}."{name}" AS SELECT * FROM read_parquet({_literal(src)})'
        for name, src in sources.items()
    ]
    return ensure_views(con, lake, MARTS_SCHEMA, f"CREATE SCHEMA IF NOT EXISTS {MARTS_SCHEMA}", views)

"""KPI values (评价指标) per street and for the district, per month, with history.

:func:`build_kpis` runs every KPI of ``schemas/kpis.yaml`` (see :mod:`schemas.kpi` for
the formula contract) over the months of the run and writes one Parquet file per
month, ``<lake>/marts/kpi_values/<YYYY-MM>.parquet``, atomically:

- every KPI x area (the district ``310110000000`` and the 12 streets) x month is a row;
  a formula that yields no row or NULL for it gives value NULL and status ``NO_DATA``
  (暂无数据), never 0;
- target and status per row: ``MET`` 达标 / ``NOT_MET`` 未达标 / ``NO_DATA`` 暂无数据 /
  ``NO_TARGET`` 无目标值 / ``NO_BASELINE`` 无上期数据 (a growth target whose previous
  month has no data);
- history: the months of a run are the as-of month, every month since the first
  service month without a file yet, and every month whose file was written before
  the month had ended (its recorded as-of lies before its last day). Months already
  complete keep their file as computed then: a rerun replaces only its months.

The as-of date is the library's latest service / screening / vital-sign date.
"""

from __future__ import annotations

import calendar
import logging
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import duckdb
import polars as pl

from assets.marts.common import data_as_of, ensure_mart_views, register_parameters, write_parquet
from assets.marts.rules import PortraitRules, load_rules
from rainbow.settings import Lake
from schemas.kpi import Kpi, load_kpis
from schemas.registry import Registry, load_registry

log = logging.getLogger(__name__)

KPI_VALUES = "kpi_values"
DISTRICT_CODE = "310110000000"
DISTRICT_ZH = "杨浦区"
NO_DATA_TEXT = "暂无数据"
STATUS_ZH = {
    "MET": "达标",
    "NOT_MET": "未达标",
    "NO_DATA": NO_DATA_TEXT,
    "NO_TARGET": "无目标值",
    "NO_BASELINE": "无上期数据",
}
VALUE_SCHEMA: dict[str, pl.DataType] = {
    "kpi_id": pl.String(),
    "kpi_name_zh": pl.String(),
    "level": pl.String(),
    "area_code": pl.String(),
    "street": pl.String(),
    "area_name": pl.String(),
    "month": pl.Date(),
    "period_end": pl.Date(),
    "value": pl.Float64(),
    "value_text": pl.String(),
    "unit": pl.String(),
    "target": pl.Float64(),
    "target_type": pl.String(),
    "direction": pl.String(),
    "status": pl.String(),
    "status_zh": pl.String(),
    "as_of": pl.Date(),
    "computed_at": pl.Datetime("us", "UTC"),
}


# ------------------------------------------------------------------ months and areas


def month_start(d: date) -> date:
    return d.replace(day=1)


def month_last_day(d: date) -> date:
    return d.replace(day=calendar.monthrange(d.year, d.month)[1])


def add_months(d: date, n: int) -> date:
    y, m = divmod(d.year * 12 + d.month - 1 + n, 12)
    return date(y, m + 1, 1)


def months_between(first: date, last: date) -> list[date]:
    out, m = [], month_start(first)
    while m <= month_start(last):
        out.append(m)
        m = add_months(m, 1)
    return out


def kpi_months_frame(months: list[date], as_of: date) -> pl.DataFrame:
    """``kpi_months``: month, month_start, month_end (capped at as_of), days, is_current, as_of."""
    rows = []
    for m in sorted(set(months)):
        if m > month_start(as_of):
            raise ValueError(f"month {m:%Y-%m} lies after the as-of date {as_of}")
        end = min(month_last_day(m), as_of)
        rows.append((m, m, end, (end - m).days + 1, m == month_start(as_of), as_of))
    return pl.DataFrame(
        rows,
        schema={
            "month": pl.Date,
            "month_start": pl.Date,
            "month_end": pl.Date,
            "days": pl.Int64,
            "is_current": pl.Boolean,
            "as_of": pl.Date,
        },
        orient="row",
    )


def kpi_areas_frame(registry: Registry) -> pl.DataFrame:
    """``kpi_areas``: each current street -> itself; every street code and NULL -> the district."""
    streets = registry.codelist("street").values
    current = [v.code for v in streets if v.valid_until is None]
    rows: list[tuple[str, str | None]] = [(c, c) for c in current]
    rows += [(DISTRICT_CODE, v.code) for v in streets] + [(DISTRICT_CODE, None)]
    return pl.DataFrame(rows, schema={"area": pl.String, "street": pl.String}, orient="row")


def area_table(registry: Registry) -> pl.DataFrame:
    """The areas a KPI is reported for: district first, then the streets in code order."""
    streets = [v for v in registry.codelist("street").values if v.valid_until is None]
    return pl.DataFrame(
        {
            "level": ["district"] + ["street"] * len(streets),
            "area_code": [DISTRICT_CODE] + [v.code for v in streets],
            "street": [None] + [v.code for v in streets],
            "area_name": [DISTRICT_ZH] + [v.zh for v in streets],
        },
        schema={"level": pl.String, "area_code": pl.String, "street": pl.String, "area_name": pl.String},
    )


def _register(con: duckdb.DuckDBPyConnection, name: str, frame: pl.DataFrame) -> None:
    con.register(f"_{name}_src", frame.to_arrow())
    con.execute(f"CREATE OR REPLACE TEMP TABLE {name} AS SELECT * FROM _{name}_src")
    con.unregister(f"_{name}_src")


# ------------------------------------------------------------------ formatting and status


def _number(v: float) -> str:
    return f"{round(v, 2) + 0.0:.2f}".rstrip("0").rstrip(".")


def display_value(value: float | None, unit: str) -> str:
    """How a value is shown: 暂无数据 when there is none (never 0)."""
    if value is None:
        return NO_DATA_TEXT
    if unit == "%":
        return f"{value:.1f}%"
    return f"{_number(value)}{unit}"


def status_of(value: float | None, target: float | None, direction: str, target_type: str) -> str:
    if value is None:
        return "NO_DATA"
    if target is None:
        return "NO_BASELINE" if target_type == "growth" else "NO_TARGET"
    if target_type == "growth":
        met = value > target if direction == "up" else value < target
    else:
        met = value >= target if direction == "up" else value <= target
    return "MET" if met else "NOT_MET"


# ------------------------------------------------------------------ history files


def kpi_dir(lake: Lake) -> Path:
    return lake.marts / KPI_VALUES


def month_file(lake: Lake, month: date) -> Path:
    return kpi_dir(lake) / f"{month:%Y-%m}.parquet"


def read_kpi_history(lake: Lake) -> pl.DataFrame:
    """Every month's KPI values written so far."""
    files = sorted(kpi_dir(lake).glob("*.parquet"))
    if not files:
        return pl.DataFrame(schema=VALUE_SCHEMA)
    return pl.concat([pl.read_parquet(f) for f in files], how="vertical_relaxed").cast(
        pl.Schema(VALUE_SCHEMA)
    )


def _recorded_as_of(path: Path) -> date | None:
    col = pl.read_parquet(path, columns=["as_of"])["as_of"]
    return col.max() if col.len() else None  # type: ignore[return-value]


def months_to_compute(lake: Lake, first: date, as_of: date) -> list[date]:
    """As-of month, months without a file, and months recorded before they had ended."""
    out = []
    for m in months_between(first, as_of):
        path = month_file(lake, m)
        recorded = _recorded_as_of(path) if path.exists() else None
        if m == month_start(as_of) or recorded is None or recorded < month_last_day(m):
            out.append(m)
    return out


def first_data_month(con: duckdb.DuckDBPyConnection, as_of: date) -> date:
    rows = con.sql("SELECT min(e.service_date) FROM library.fact_service_event AS e").fetchall()
    first = rows[0][0] if rows and rows[0][0] is not None else as_of
    return month_start(min(first, as_of))


# ------------------------------------------------------------------ compute


def run_formula(con: duckdb.DuckDBPyConnection, kpi: Kpi) -> pl.DataFrame:
    """(area, month, value) rows of one KPI; raises on a broken formula or duplicate rows."""
    frame = con.sql(
        "SELECT CAST(f.area AS VARCHAR) AS area, CAST(f.month AS DATE) AS month, "
        f"CAST(f.value AS DOUBLE) AS value FROM ({kpi.formula}) AS f"
    ).pl()
    dup = frame.filter(pl.struct("area", "month").is_duplicated())
    if dup.height:
        raise ValueError(f"KPI {kpi.id}: formula returned several rows for {dup.head(3).rows()}")
    return frame


def compute_kpi_values(
    con: duckdb.DuckDBPyConnection,
    kpis: list[Kpi],
    months: pl.DataFrame,
    registry: Registry,
    rules: PortraitRules,
) -> tuple[pl.DataFrame, dict[str, str]]:
    """Every KPI x area x month with its value (null = no data), and the KPIs that failed."""
    as_of = months["as_of"][0]
    register_parameters(con, as_of, rules)
    _register(con, "kpi_months", months)
    _register(con, "kpi_areas", kpi_areas_frame(registry))
    areas = area_table(registry)
    grid_parts, errors = [], {}
    for kpi in kpis:
        try:
            values = run_formula(con, kpi)
        except (duckdb.Error, ValueError) as exc:
            log.error("KPI %s failed: %s", kpi.id, exc)
            errors[kpi.id] = str(exc).splitlines()[0]
            values = pl.DataFrame(schema={"area": pl.String, "month": pl.Date, "value": pl.Float64})
        grid = areas.join(months.select("month", pl.col("month_end").alias("period_end")), how="cross")
        grid_parts.append(
            grid.join(
                values, left_on=["area_code", "month"], right_on=["area", "month"], how="left"
            ).with_columns(pl.lit(kpi.id).alias("kpi_id"))
        )
    return pl.concat(grid_parts), errors


def assess(
    values: pl.DataFrame, kpis: list[Kpi], history: pl.DataFrame, as_of: date, computed_at: datetime
) -> pl.DataFrame:
    """Add targets, status and display text; ``history`` supplies previous months for growth."""
    prev = pl.concat(
        [
            history.select("kpi_id", "area_code", "month", "value"),
            values.select("kpi_id", "area_code", "month", "value"),
        ]
    ).unique(["kpi_id", "area_code", "month"], keep="last")
    prev = prev.select(
        "kpi_id",
        "area_code",
        pl.col("month").dt.offset_by("1mo").alias("month"),
        pl.col("value").alias("previous_value"),
    )
    values = values.join(prev, on=["kpi_id", "area_code", "month"], how="left")
    by_id = {k.id: k for k in kpis}
    rows = []
    for r in values.iter_rows(named=True):
        k = by_id[r["kpi_id"]]
        if k.target_type == "growth":
            target = r["previous_value"]
        elif k.target_type == "absolute" and (k.target_scope == "all" or r["level"] == "district"):
            target = k.target
        else:
            target = None
        status = status_of(r["value"], target, k.direction, k.target_type)
        rows.append(
            {
                "kpi_id": k.id,
                "kpi_name_zh": k.name_zh,
                "level": r["level"],
                "area_code": r["area_code"],
                "street": r["street"],
                "area_name": r["area_name"],
                "month": r["month"],
                "period_end": r["period_end"],
                "value": r["value"],
                "value_text": display_value(r["value"], k.unit),
                "unit": k.unit,
                "target": target,
                "target_type": k.target_type,
                "direction": k.direction,
                "status": status,
                "status_zh": STATUS_ZH[status],
                "as_of": as_of,
                "computed_at": computed_at,
            }
        )
    order = {k.id: i for i, k in enumerate(kpis)}
    out = pl.DataFrame(rows, schema=VALUE_SCHEMA, orient="row")
    return (
        out.with_columns(pl.col("kpi_id").replace_strict(order, return_dtype=pl.Int64).alias("_order"))
        .sort("month", "_order", pl.col("level") != "district", "area_code")
        .drop("_order")
    )


def build_kpis(
    lake: Lake,
    con: duckdb.DuckDBPyConnection,
    *,
    as_of: date | None = None,
    months: list[date] | None = None,
    kpis: list[Kpi] | None = None,
    computed_at: datetime | None = None,
    registry: Registry | None = None,
    rules: PortraitRules | None = None,
) -> dict[str, Any]:
    """Compute the run's months (see the module docstring), write them, (re)create ``marts.kpi_values``."""
    kpis = kpis or load_kpis()
    registry = registry or load_registry()
    rules = rules or load_rules()
    as_of = as_of or data_as_of(con)
    computed_at = computed_at or datetime.now(UTC)
    run_months = (
        sorted({month_start(m) for m in months})
        if months
        else months_to_compute(lake, first_data_month(con, as_of), as_of)
    )
    values, errors = compute_kpi_values(con, kpis, kpi_months_frame(run_months, as_of), registry, rules)
    history = read_kpi_history(lake).filter(~pl.col("month").is_in(run_months))
    table = assess(values, kpis, history, as_of, computed_at)
    for m in run_months:
        write_parquet(table.filter(pl.col("month") == m), month_file(lake, m))
    ensure_mart_views(con, lake, {KPI_VALUES: kpi_dir(lake) / "*.parquet"})
    current = table.filter(pl.col("month") == month_start(as_of))
    return {
        "as_of": as_of.isoformat(),
        "months": [f"{m:%Y-%m}" for m in run_months],
        "rows": table.height,
        "kpis": len(kpis),
        "status_current_month": dict(sorted(current["status"].value_counts().iter_rows())),
        "no_data_current_month": int((current["status"] == "NO_DATA").sum()),
        "errors": errors,
    }

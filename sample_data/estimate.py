"""Estimate rows and bytes per source table at any scale without writing it.

A calibration sample (by default 2,000 elders x 60 days) is generated into a
temporary lake; each table's rows and bytes per delivery per unit (elders, or
wristbands for wristband telemetry) are then scaled to the requested size.
"""

from __future__ import annotations

import math
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

import polars as pl

from rainbow.settings import Lake
from sample_data.config import GeneratorConfig
from sample_data.generate import generate
from sample_data.truth import read_truth
from schemas import load_registry

CALIBRATION = GeneratorConfig(elders=2_000, days=60)


@dataclass(frozen=True)
class TableEstimate:
    system: str
    table: str
    frequency: str
    rows: int
    bytes: int


def _units(cfg: GeneratorConfig, table: str) -> float:
    if table.startswith("wristband"):
        return float(max(cfg.min_wristbands, round(cfg.elders * cfg.wristband_share)))
    return float(cfg.elders)


def _deliveries(cfg: GeneratorConfig, frequency: str) -> int:
    if frequency in ("daily", "hourly"):
        return cfg.days
    if frequency == "weekly":
        return math.ceil(cfg.days / 7)
    if frequency in ("monthly", "quarterly"):
        return len(cfg.month_starts())
    return 1


def estimate(cfg: GeneratorConfig, calibration: GeneratorConfig | None = None) -> list[TableEstimate]:
    cal = calibration or replace(CALIBRATION, seed=cfg.seed, start=cfg.start)
    reg = load_registry()
    with tempfile.TemporaryDirectory(prefix="rainbow-estimate-") as tmp:
        lake = Lake(Path(tmp))
        generate(cal, lake)
        files = read_truth(lake.truth, "files")
        sizes = {
            str(p.relative_to(lake.landing)): p.stat().st_size for p in lake.landing.rglob("*") if p.is_file()
        }
    files = files.with_columns(bytes=pl.col("source_file").replace_strict(sizes, return_dtype=pl.Int64))
    per_table = files.group_by("table").agg(pl.col("rows").sum(), pl.col("bytes").sum())
    measured = {r["table"]: r for r in per_table.iter_rows(named=True)}
    out = []
    for system, table in reg.tables():
        m = measured.get(table.name, {"rows": 0, "bytes": 0})
        f = table.delivery.frequency
        # Day-one full dumps (municipal elders) are one extra delivery's worth of the population.
        scale = (_units(cfg, table.name) / _units(cal, table.name)) * (
            _deliveries(cfg, f) / _deliveries(cal, f)
        )
        if table.name == "muni_elders":
            # A full dump on day one, then daily changes.
            first = files.filter((pl.col("table") == table.name) & (pl.col("delivery_date") == cal.start))
            full_rows, full_bytes = int(first["rows"].sum()), int(first["bytes"].sum())
            k = cfg.elders / cal.elders
            d = (cfg.days - 1) / max(1, cal.days - 1)
            out.append(
                TableEstimate(
                    system.name,
                    table.name,
                    f,
                    round(k * (full_rows + (m["rows"] - full_rows) * d)),
                    round(k * (full_bytes + (m["bytes"] - full_bytes) * d)),
                )
            )
            continue
        out.append(
            TableEstimate(system.name, table.name, f, round(m["rows"] * scale), round(m["bytes"] * scale))
        )
    return out

"""Helpers of the alert tests: a generated lake with the monitoring systems staged, its device
list, and every hour's alerts.

The wristband share is raised (5% of 3,000 elders = 150 bands, 14 days) so every
incident kind is planted several times; water meters go to elders living alone as
the generator always does. Building ``library/elder_devices`` for real needs the
master elder index over every source; here the device list is derived from the staged
monthly lists the way ``assets/library/sql/elder_devices.sql`` does (latest list per
device), with the generator's true person as the elder key (``truth/links``), and
written where the library table lives, so the asset's production path
(``load_devices``) reads it.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl

from assets.marts.alert_rules import AlertRules, load_rules
from assets.marts.alerts import DEVICES_SCHEMA, WATER_METER, WRISTBAND, hour_key, run_hours
from assets.staging.stage import ingest_and_stage
from rainbow.io import atomic_path
from rainbow.settings import Lake
from sample_data.config import GeneratorConfig
from sample_data.generate import generate
from sample_data.truth import read_truth
from schemas import load_registry
from tests.lakefiles import read_parquet

CONFIG = GeneratorConfig(elders=3_000, days=14, wristband_share=0.05)
MONITORING = ("wristband_devices", "wristband_vitals", "wristband_events", "water_meters", "water_readings")


def test_pseudonym(elder_key: str) -> str:
    """Stands in for masking.pseudonym in the pure-function tests (the asset test uses the real one)."""
    return "PS" + hashlib.sha256(f"test|{elder_key}".encode()).hexdigest()[:18]


test_pseudonym.__test__ = False  # type: ignore[attr-defined]


def devices_from_staged(lake: Lake) -> pl.DataFrame:
    """The device list as library/elder_devices will hold it, from the staged monthly lists
    (latest list per device); elder_key = the generator's true person (tests only)."""
    links = read_truth(lake.truth, "links").select(
        "table",
        pl.col("source_file").alias("_source_file"),
        pl.col("row_number").alias("_row_number"),
        "person_id",
    )
    out = []
    for table, kind, id_col in (
        ("wristband_devices", WRISTBAND, "device_id"),
        ("water_meters", WATER_METER, "meter_id"),
    ):
        d = read_parquet(lake.staged / table / "**" / "*.parquet")
        d = d.join(
            links.filter(pl.col("table") == table).drop("table"),
            on=["_source_file", "_row_number"],
            how="left",
        )
        d = d.sort("_delivery_date").unique(id_col, keep="last", maintain_order=True)
        cols: dict[str, pl.Expr] = {
            "device_kind": pl.lit(kind),
            "device_id": pl.col(id_col),
            "elder_key": pl.col("person_id"),
            "street": pl.col("street"),
            "lives_alone": (pl.col("lives_alone") == "Y")
            if "lives_alone" in d.columns
            else pl.lit(None, pl.Boolean),
        }
        for c in ("fence_lat", "fence_lon", "fence_radius_m"):
            cols[c] = pl.col(c) if c in d.columns else pl.lit(None)
        out.append(d.select(**cols).cast(DEVICES_SCHEMA))  # type: ignore[arg-type]
    return pl.concat(out).sort("device_kind", "device_id")


def write_library_devices(lake: Lake, devices: pl.DataFrame) -> Path:
    out = lake.library / "elder_devices" / "data.parquet"
    with atomic_path(out) as tmp:
        devices.with_columns(last_listed=pl.lit(CONFIG.end)).write_parquet(tmp)
    return out


@dataclass(frozen=True)
class AlertLake:
    lake: Lake
    devices: pl.DataFrame
    rules: AlertRules
    hours: list[str]
    rows: pl.DataFrame  # every hour's alert rows, as run_hours returned them
    seconds: float  # time to run every hour


def period_hours(cfg: GeneratorConfig) -> list[str]:
    start = datetime.combine(cfg.start, datetime.min.time())
    return [hour_key(start + timedelta(hours=i)) for i in range(cfg.days * 24)]


def build_alert_lake(root: Path) -> AlertLake:
    lake = Lake(root)
    generate(CONFIG, lake)
    registry = load_registry()
    ingest_and_stage(
        lake, registry, datetime(2026, 12, 1, tzinfo=UTC), [registry.table(t) for t in MONITORING]
    )
    devices = devices_from_staged(lake)
    write_library_devices(lake, devices)
    rules = load_rules()
    hours = period_hours(CONFIG)
    t0 = time.perf_counter()
    rows = run_hours(lake, hours, rules, devices, test_pseudonym)
    return AlertLake(lake, devices, rules, hours, rows, time.perf_counter() - t0)

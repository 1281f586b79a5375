"""A small built lake for the dashboard tests, without Dagster (the functions the assets call).

generate -> ingest and stage -> library -> warehouse views -> portraits, KPIs -> safety
alerts of the last days' hours -> quality history of a few staged tables, quality report ->
catalogue -> two export packages (example agreements); every warehouse connection
publishes ``warehouse_views.sql`` for readers. Also a script for development::

    python tests/dashboards/lake_builder.py /tmp/dash_lake_small --elders 600 --days 10
"""

from __future__ import annotations

import argparse
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from rainbow.settings import Lake
from sample_data.config import GeneratorConfig

# 35 days from 2026-11-01: two KPI months (a trend); alerts for the last days only (fast)
CONFIG = GeneratorConfig(elders=600, days=35, wristband_share=0.05)
ALERT_DAYS = 5
QUALITY_TABLES = ("meal_transactions", "wristband_devices", "facilities", "district_registry")
AGREEMENTS = Path(__file__).resolve().parents[2] / "masking" / "agreements"
EXPORT_AGREEMENTS = ("fudan_service_use_2026", "facility_map_open")


def build_lake(root: Path, config: GeneratorConfig = CONFIG) -> dict[str, float]:
    """Build every zone the dashboards read under ``root``; seconds per step."""
    from assets.library.build import build_library
    from assets.library_assets import prepare_warehouse
    from assets.marts.alert_assets import create_alert_view, marts_pseudonymiser
    from assets.marts.alert_rules import load_rules
    from assets.marts.alerts import hour_key, load_devices, run_hours
    from assets.marts.kpis import build_kpis
    from assets.marts.portraits import build_portraits
    from assets.partitions import is_partitioned
    from assets.staging.stage import ingest_and_stage
    from catalog.build import write_catalog
    from masking.export import build_package
    from pipelines.resources import LakeResource
    from quality.checks import validate_staged
    from quality.report import write_report
    from quality.scorecard import record_results
    from sample_data.generate import generate
    from schemas import load_registry

    lake = Lake(root)
    registry = load_registry()
    times: dict[str, float] = {}
    t = time.perf_counter()

    def step(name: str) -> None:
        nonlocal t
        now = time.perf_counter()
        times[name] = round(now - t, 1)
        t = now

    generate(config, lake)
    step("generate")
    run_at = datetime.combine(config.end + timedelta(days=1), datetime.min.time())
    ingest_and_stage(lake, registry, run_at.replace(tzinfo=UTC))
    step("ingest_and_stage")
    build_library(lake, registry, run_at)
    step("library")
    resource = LakeResource(root=str(lake.root))
    with resource.warehouse() as con:
        as_of = date.fromisoformat(prepare_warehouse(con, resource, registry))
        build_portraits(lake, con, as_of=as_of)
        step("portraits")
        build_kpis(lake, con, as_of=as_of, registry=registry)
        step("kpis")
    alert_days = min(ALERT_DAYS, config.days)
    start = datetime.combine(config.end - timedelta(days=alert_days - 1), datetime.min.time())
    hours = [hour_key(start + timedelta(hours=i)) for i in range(alert_days * 24)]
    run_hours(lake, hours, load_rules(), load_devices(lake), marts_pseudonymiser(lake))
    with resource.warehouse() as con:
        create_alert_view(con, lake)
    step("alerts")
    for name in QUALITY_TABLES:
        table = registry.table(name)
        results, _ = validate_staged(lake, table, registry, partitioned=is_partitioned(table))
        record_results(lake, registry, results, run_date=config.end + timedelta(days=1), run_at=run_at)
    write_report(lake, registry)
    step("quality")
    write_catalog(lake, registry=registry)
    step("catalog")
    for agreement in EXPORT_AGREEMENTS:
        build_package(lake, AGREEMENTS / f"{agreement}.yaml", actor="lake_builder", registry=registry)
    step("exports")
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("root", type=Path)
    parser.add_argument("--elders", type=int, default=CONFIG.elders)
    parser.add_argument("--days", type=int, default=CONFIG.days)
    args = parser.parse_args()
    config = GeneratorConfig(elders=args.elders, days=args.days, wristband_share=CONFIG.wristband_share)
    print(build_lake(args.root, config))


if __name__ == "__main__":
    main()

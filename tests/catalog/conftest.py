"""Fixtures of the catalogue tests: a small lake ingested and staged, with views and a quality result."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from assets.ingest.views import create_raw_views
from assets.staging.stage import create_staged_views, ingest_and_stage, staged_dir
from rainbow.settings import Lake
from rainbow.warehouse import connect_warehouse
from sample_data.config import GeneratorConfig
from sample_data.generate import generate
from schemas import load_registry
from tests.lakefiles import read_parquet

QUALITY_TABLE = "caregivers"


@pytest.fixture(scope="session")
def staged_lake(tmp_path_factory: pytest.TempPathFactory) -> Lake:
    """300 elders x 3 days: landing, raw and staged (with their DuckDB views), one quality result.

    Library and marts are not built here: the catalogue must show them as not built.
    """

    from quality.runner import validate
    from quality.scorecard import record_results

    registry = load_registry()
    lake = Lake(tmp_path_factory.mktemp("catalog") / "lake")
    generate(GeneratorConfig(elders=300, days=3), lake)
    ingest_and_stage(lake, registry, datetime(2026, 11, 4, 2, tzinfo=UTC))
    con = connect_warehouse(lake)
    try:
        for _, table in registry.tables():
            create_raw_views(con, lake, table)
            create_staged_views(con, lake, table)
    finally:
        con.close()
    frame = read_parquet(staged_dir(lake, QUALITY_TABLE) / "**" / "*.parquet")
    result = validate(frame, QUALITY_TABLE, registry)
    record_results(lake, registry, [result], run_date=date(2026, 11, 4))
    return lake

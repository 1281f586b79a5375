"""The staged zone in Dagster: one asset per table, partitioned like its raw asset, reconciled."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest

from assets.partitions import daily_partitions
from assets.staged_assets import (
    RECONCILES,
    build_staged_asset,
    build_staged_reconciles_check,
    staged_asset_key,
)
from pipelines.instance import run_nightly
from pipelines.resources import LakeResource
from rainbow.settings import Lake
from rainbow.warehouse import connect_warehouse
from sample_data.config import GeneratorConfig
from sample_data.generate import generate
from schemas import load_registry
from tests.lakefiles import read_parquet


@pytest.fixture(scope="module")
def built_lake(tmp_path_factory: pytest.TempPathFactory) -> Lake:
    lake = Lake(tmp_path_factory.mktemp("built") / "lake")
    generate(GeneratorConfig(elders=400, days=3), lake)
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("DAGSTER_HOME", raising=False)
        assert run_nightly(lake)
    return lake


@pytest.mark.integration
def test_every_staged_asset_is_materialised_and_its_check_passes(built_lake: Lake) -> None:
    reg = load_registry()
    with dg.DagsterInstance.from_config(str(built_lake.dagster_home)) as instance:
        for _, table in reg.tables():
            key = staged_asset_key(table)
            assert instance.get_latest_materialization_event(key) is not None, table.name
            check = instance.event_log_storage.get_latest_asset_check_execution_by_key(
                [dg.AssetCheckKey(key, RECONCILES)]
            )[dg.AssetCheckKey(key, RECONCILES)]
            assert check.status.value == "SUCCEEDED", table.name
        days = instance.get_materialized_partitions(staged_asset_key("meal_transactions"))
        assert days == {"2026-11-01", "2026-11-02", "2026-11-03"}


@pytest.mark.integration
def test_staged_views_in_duckdb_match_the_parquet(built_lake: Lake) -> None:
    with connect_warehouse(built_lake, read_only=True) as con:
        for table in ("meal_transactions", "muni_elders", "wristband_vitals"):
            staged = read_parquet(built_lake.staged / table / "**" / "*.parquet")
            assert con.sql(f'select count(*) from staged."{table}"').fetchall()[0][0] == staged.height
            quarantine = read_parquet(built_lake.staged / "_quarantine" / table / "**" / "*.parquet")
            quarantined = con.sql(f'select count(*) from staged."{table}__quarantine"').fetchall()[0][0]
            assert quarantined == quarantine.height
        ids = con.sql("select count(*) from staged.muni_elders where id_number is not null").fetchall()[0][0]
        assert ids > 300


@pytest.mark.integration
def test_the_reconciliation_check_fails_when_staged_rows_go_missing(built_lake: Lake, tmp_path: Path) -> None:
    import shutil

    lake = Lake(tmp_path / "copy")
    shutil.copytree(built_lake.root, lake.root, ignore=shutil.ignore_patterns("dagster_home"))
    part = lake.staged / "meal_transactions" / "date=2026-11-02" / "data.parquet"
    frame = read_parquet(part)
    frame.head(frame.height - 1).write_parquet(part)
    reg = load_registry()
    table = reg.table("meal_transactions")
    asset = build_staged_asset(reg.system_of(table.name), table, reg, daily_partitions())
    check = build_staged_reconciles_check(table)
    result = dg.materialize(
        [asset, check],
        resources={"lake": LakeResource(root=str(lake.root))},
        selection=dg.AssetSelection.checks(check),
        raise_on_error=False,
    )
    assert not result.success  # blocking: an ERROR fails the step
    (evaluation,) = result.get_asset_check_evaluations()
    assert not evaluation.passed
    assert evaluation.severity == dg.AssetCheckSeverity.ERROR
    assert evaluation.metadata["mismatched_files"].value == 1

"""Dagster wiring: the code location loads, one raw asset per contract table, in-process runs."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import duckdb
import polars as pl
import pytest
import yaml

from assets.raw_assets import build_raw_asset, build_reconciles_check, raw_asset_key
from pipelines.definitions import build_definitions, defs
from pipelines.instance import ensure_dagster_home, run_nightly
from pipelines.resources import LakeResource
from rainbow.settings import Lake
from schemas import load_registry

RAW_LINEAGE = ["_extra", "_source_file", "_row_number", "_file_sha256", "_ingested_at"]


def raw_specs() -> dict[dg.AssetKey, dg.AssetSpec]:
    return {s.key: s for s in defs.resolve_all_asset_specs() if s.group_name == "raw"}


def test_definitions_load() -> None:
    dg.Definitions.validate_loadable(defs)
    assert defs.resolve_job_def("nightly_build").executor_def.name == "in_process"


def test_one_raw_asset_per_contract_table() -> None:
    expected = {dg.AssetKey(["raw", t.name]) for _, t in load_registry().tables()}
    assert len(expected) == 20
    assert set(raw_specs()) == expected
    checks = {k for k in defs.resolve_asset_graph().asset_check_keys if k.asset_key in expected}
    assert checks == {dg.AssetCheckKey(k, "reconciles") for k in expected}


def test_every_raw_asset_carries_owner_description_schema_and_tags() -> None:
    reg = load_registry()
    specs = raw_specs()
    for system, t in reg.tables():
        spec = specs[raw_asset_key(t)]
        assert spec.owners == [f"team:{system.table_owner(t)}"]
        assert spec.description and t.zh in spec.description and t.en in spec.description
        assert spec.kinds == {"polars", "parquet"}
        assert spec.tags["zone"] == "raw"
        assert spec.tags["pii"] in ("yes", "no")
        assert spec.tags["open_data"] == t.open_data
        assert spec.metadata["owner_department"] == system.table_owner(t)
        schema = spec.metadata["dagster/column_schema"]
        assert isinstance(schema, dg.TableSchema)
        assert [c.name for c in schema.columns] == [*t.column_names, *RAW_LINEAGE]
        assert all(c.description for c in schema.columns)
        assert schema.columns[0].description.startswith(t.columns[0].zh)


def test_nightly_schedule_runs_at_two_in_shanghai() -> None:
    schedule = defs.resolve_schedule_def("nightly_build_schedule")
    assert schedule.cron_schedule == "0 2 * * *"
    assert schedule.execution_timezone == "Asia/Shanghai"
    assert schedule.job_name == "nightly_build"


def test_lake_resource_reads_the_environment_when_built(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RAINBOW_LAKE_ROOT", str(tmp_path / "elsewhere"))
    assert LakeResource().lake.root == (tmp_path / "elsewhere").resolve()
    built = build_definitions(lake_root=str(tmp_path / "explicit"))
    assert built.resources["lake"].root == str(tmp_path / "explicit")


# ----------------------------------------------------------------------------- in-process runs


def deliver_samples(lake: Lake) -> None:
    reg = load_registry()
    meal = reg.table("meal_transactions")
    header = ",".join(c.source for c in meal.columns)
    rows = [f"T{i},C{i},张{i},,P01,长者食堂,2024/11/5 11:30:00,午餐,15.00,10,5.00,敬老卡" for i in range(3)]
    path = lake.landing / "meal_aid" / "meal_txn_20241105.csv"
    path.parent.mkdir(parents=True)
    path.write_bytes(("\r\n".join([header, *rows, "T9,截断"]) + "\r\n").encode("gbk"))
    shutil.copy(path, path.with_name("meal_txn_20241105(1).csv"))
    dump = lake.landing / "municipal" / "assessments_20241105.json"
    dump.parent.mkdir(parents=True)
    dump.write_text(
        '{"code":0,"msg":"成功","data":{"total":2,"records":['
        '{"pgbh":"A1","xm":"钱七","pgrq":"2024-11-05","pgdj":"照护二级"},'
        '{"pgbh":"A2","xm":"孙八","pgrq":"2024-11-05","pgdj":"照护三级"}]}}',
        encoding="utf-8",
    )


def build(name: str) -> tuple[dg.AssetsDefinition, dg.AssetChecksDefinition]:
    reg = load_registry()
    system, table = reg.system_of(name), reg.table(name)
    return build_raw_asset(system, table), build_reconciles_check(system, table)


@pytest.mark.integration
def test_materialize_raw_assets_writes_parts_and_duckdb_views(tmp_path: Path) -> None:
    lake = Lake(tmp_path / "lake")
    deliver_samples(lake)
    meal, meal_check = build("meal_transactions")
    muni, muni_check = build("muni_assessments")

    result = dg.materialize(
        [meal, meal_check, muni, muni_check],
        resources={"lake": LakeResource(root=str(lake.root))},
    )

    assert result.success
    mats = {
        e.materialization.asset_key: e.materialization.metadata
        for e in result.get_asset_materialization_events()
    }
    meal_md = mats[dg.AssetKey(["raw", "meal_transactions"])]
    assert meal_md["dagster/row_count"].value == 3
    assert meal_md["files_ingested"].value == 1
    assert meal_md["duplicates_skipped"].value == 1
    assert meal_md["broken_rows"].value == 1
    assert "meal_txn_20241105(1).csv" in str(meal_md["files"].value)
    checks = result.get_asset_check_evaluations()
    assert len(checks) == 2 and all(c.passed for c in checks)

    with duckdb.connect(str(lake.warehouse), read_only=True) as con:
        meal_rows = con.sql(
            "select transaction_id, name, _row_number from raw.meal_transactions order by 3"
        ).fetchall()
        assert meal_rows == [("T0", "张0", 1), ("T1", "张1", 2), ("T2", "张2", 3)]
        assert con.sql("select _raw_text from raw.meal_transactions__broken").fetchall() == [("T9,截断",)]
        assert con.sql("select assessment_id from raw.muni_assessments order by 1").fetchall() == [
            ("A1",),
            ("A2",),
        ]
        ledger = con.sql("select table_name, status from raw.ingest_ledger order by all").fetchall()
        assert ledger == [
            ("meal_transactions", "duplicate"),
            ("meal_transactions", "ingested"),
            ("muni_assessments", "ingested"),
        ]


@pytest.mark.integration
def test_reconciles_fails_with_error_when_a_part_lost_rows(tmp_path: Path) -> None:
    lake = Lake(tmp_path / "lake")
    deliver_samples(lake)
    meal, meal_check = build("meal_transactions")
    resources = {"lake": LakeResource(root=str(lake.root))}
    dg.materialize([meal], resources=resources)
    part = next((lake.raw / "meal_transactions").glob("*.parquet"))
    pl.read_parquet(part).head(1).write_parquet(part)

    result = dg.materialize(
        [meal, meal_check],
        resources=resources,
        selection=dg.AssetSelection.checks(meal_check),
        raise_on_error=False,
    )

    assert not result.success  # a blocking check failing with ERROR fails its step
    (evaluation,) = result.get_asset_check_evaluations()
    assert not evaluation.passed
    assert evaluation.severity == dg.AssetCheckSeverity.ERROR
    assert evaluation.metadata["mismatched_files"].value == 1


@pytest.mark.integration
def test_an_unreadable_file_fails_the_asset_with_a_clear_error(tmp_path: Path) -> None:
    lake = Lake(tmp_path / "lake")
    deliver_samples(lake)
    (lake.landing / "meal_aid" / "meal_txn_20241106.csv").write_text("not an export\n", encoding="utf-8")
    meal, _ = build("meal_transactions")

    result = dg.materialize(
        [meal], resources={"lake": LakeResource(root=str(lake.root))}, raise_on_error=False
    )

    assert not result.success
    (failure,) = [e for e in result.all_events if e.is_step_failure]
    message = str(failure.step_failure_data.error)
    assert "meal_aid/meal_txn_20241106.csv" in message and "no header row" in message


def test_ensure_dagster_home_writes_yaml_once(tmp_path: Path) -> None:
    lake = Lake(tmp_path / "lake")
    home = ensure_dagster_home(lake)
    config = yaml.safe_load((home / "dagster.yaml").read_text(encoding="utf-8"))
    assert config["telemetry"] == {"enabled": False}
    assert config["storage"]["sqlite"]["base_dir"].startswith(str(home))
    stamp = (home / "dagster.yaml").stat().st_mtime_ns
    ensure_dagster_home(lake)
    assert (home / "dagster.yaml").stat().st_mtime_ns == stamp


@pytest.mark.integration
def test_run_nightly_records_the_run_in_the_lake_instance(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DAGSTER_HOME", raising=False)  # restored after the test
    lake = Lake(tmp_path / "lake")
    deliver_samples(lake)

    assert run_nightly(lake)

    with dg.DagsterInstance.from_config(str(lake.dagster_home)) as instance:
        event = instance.get_latest_materialization_event(dg.AssetKey(["raw", "meal_transactions"]))
        assert event is not None
        runs = instance.get_runs()
        assert [r.job_name for r in runs] == ["nightly_build"]
        assert runs[0].is_success


@pytest.mark.integration
def test_warehouse_waits_while_another_process_holds_the_duckdb_lock(tmp_path: Path) -> None:
    lake = LakeResource(root=str(tmp_path / "lake"))
    with lake.warehouse() as con:
        con.execute("create schema raw")
    script = (
        "import duckdb, time\n"
        f"con = duckdb.connect({str(lake.lake.warehouse)!r}, read_only=True)\n"
        "print('locked', flush=True)\n"
        "time.sleep(1.0)\n"
    )
    with subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True) as holder:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        started = time.monotonic()
        with lake.warehouse() as con:
            con.execute("create or replace view raw.v as select 1 as x")
        assert time.monotonic() - started > 0.2  # it had to wait for the other process

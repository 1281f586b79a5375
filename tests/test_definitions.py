"""Dagster wiring: the code location loads, one raw asset per contract table, in-process runs."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import pytest
import yaml

from assets.ingest.raw import ingest_table
from assets.partitions import PARTITION_START_ENV
from assets.raw_assets import build_raw_asset, build_reconciles_check, raw_asset_key
from pipelines.definitions import build_definitions, defs
from pipelines.instance import SUBSET_PLANNED_ENV, ensure_dagster_home, range_size, run_nightly
from pipelines.resources import LakeResource
from pipelines.sensors import load_cursor
from rainbow.settings import Lake
from rainbow.warehouse import connect_warehouse
from schemas import load_registry
from tests.lakefiles import read_parquet

RAW_LINEAGE = ["_extra", "_source_file", "_row_number", "_file_sha256", "_ingested_at"]


def raw_specs() -> dict[dg.AssetKey, dg.AssetSpec]:
    return {s.key: s for s in defs.resolve_all_asset_specs() if s.group_name == "raw"}


PARTITIONED = {
    "care_bed_visits",
    "device_rentals",
    "device_returns",
    "district_hotline",
    "meal_transactions",
    "muni_assessments",
    "muni_ltci_services",
    "screenings",
    "timebank_transactions",
    "water_readings",
    "wristband_events",
    "wristband_vitals",
}


def test_definitions_load() -> None:
    dg.Definitions.validate_loadable(defs)
    for job in ("nightly_build", "event_partitions", "unpartitioned_assets"):
        assert defs.resolve_job_def(job).executor_def.name == "in_process"
    sensor = defs.resolve_sensor_def("landing_sensor")
    assert [t.job_name for t in sensor.targets] == ["event_partitions", "unpartitioned_assets"]


def test_event_tables_are_partitioned_by_delivery_day_and_backfill_in_one_run() -> None:
    reg = load_registry()
    assert {t.name for _, t in reg.tables() if t.delivery.partitioned} == PARTITIONED
    graph = defs.resolve_asset_graph()
    for _, t in reg.tables():
        node = graph.get(raw_asset_key(t))
        if t.name in PARTITIONED:
            assert node.partitions_def == dg.DailyPartitionsDefinition(
                start_date="2024-01-01", timezone="Asia/Shanghai", end_offset=1
            )
            assert node.backfill_policy == dg.BackfillPolicy.single_run()
        else:
            assert node.partitions_def is None, t.name
    events = defs.resolve_job_def("event_partitions")
    others = defs.resolve_job_def("unpartitioned_assets")
    zones = ("raw", "staged")
    assert {tuple(k.path) for k in events.asset_layer.executable_asset_keys} == {
        (z, t) for z in zones for t in PARTITIONED
    }
    library = {("library", t.name) for _, t in reg.derived_tables("library")}
    library |= {("marts", n) for n in ("elder_portrait", "elder_risk_tags", "elder_scenarios", "kpi_values")}
    library |= {("marts", "catalog")}
    assert {tuple(k.path) for k in others.asset_layer.executable_asset_keys} == {
        (z, t.name) for z in zones for _, t in reg.tables() if t.name not in PARTITIONED
    } | library
    nightly = set(defs.resolve_job_def("nightly_build").asset_layer.executable_asset_keys)
    assert len(nightly) == 40 + len(library)
    for _, t in reg.tables():  # each staged asset is partitioned exactly like its raw asset
        assert (
            graph.get(dg.AssetKey(["staged", t.name])).partitions_def
            == graph.get(raw_asset_key(t)).partitions_def
        )
        assert raw_asset_key(t) in graph.get(dg.AssetKey(["staged", t.name])).parent_keys


def test_partition_start_is_read_when_the_definitions_are_built(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PARTITION_START_ENV, "2026-10-01")
    built = build_definitions(lake_root="/nonexistent")
    partitions = built.resolve_job_def("event_partitions").partitions_def
    assert isinstance(partitions, dg.DailyPartitionsDefinition)
    assert partitions.get_first_partition_key() == "2026-10-01"
    assert partitions.timezone == "Asia/Shanghai"


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
        assert (schema.columns[0].description or "").startswith(t.columns[0].zh)


def test_nightly_schedule_runs_at_two_in_shanghai() -> None:
    schedule = defs.resolve_schedule_def("nightly_build_schedule")
    assert schedule.cron_schedule == "0 2 * * *"
    assert schedule.execution_timezone == "Asia/Shanghai"
    assert schedule.job_name == "nightly_build"


ZONES = ("raw", "staged")
# unpartitioned mart assets (the hourly safety alerts are not among them)
MARTS = ("catalog", "elder_portrait", "elder_risk_tags", "elder_scenarios", "kpi_values")


def partitioned_keys() -> list[dg.AssetKey]:
    return sorted((dg.AssetKey([z, t]) for z in ZONES for t in PARTITIONED), key=lambda k: list(k.path))


def unpartitioned_keys() -> list[dg.AssetKey]:
    reg = load_registry()
    keys = {dg.AssetKey([z, t.name]) for z in ZONES for _, t in reg.tables()} - set(partitioned_keys())
    keys |= {dg.AssetKey(["library", t.name]) for _, t in reg.derived_tables("library")}
    keys |= {dg.AssetKey(["marts", n]) for n in MARTS}
    return sorted(keys, key=lambda k: list(k.path))


def test_nightly_schedule_requests_yesterdays_event_partition_then_the_unpartitioned_assets() -> None:
    schedule = defs.resolve_schedule_def("nightly_build_schedule")
    # 02:00 on 5 December in Shanghai is 18:00 UTC on the 4th: "yesterday" is the 4th
    with dg.instance_for_test() as instance:
        context = dg.build_schedule_context(
            instance=instance,
            scheduled_execution_time=datetime(2026, 12, 4, 18, 0, tzinfo=UTC),
            repository_def=defs.get_repository_def(),
        )
        data = schedule.evaluate_tick(context)
    assert data.run_requests is not None
    events, others = data.run_requests
    assert events.partition_key == "2026-12-04"
    assert events.tags["dagster/partition"] == "2026-12-04"
    assert list(events.asset_selection or []) == partitioned_keys()
    assert events.run_key == "nightly_build:2026-12-04:events"
    assert others.partition_key is None
    assert list(others.asset_selection or []) == unpartitioned_keys()
    assert others.run_key == "nightly_build:2026-12-04:unpartitioned"


def test_lake_resource_reads_the_environment_when_built(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RAINBOW_LAKE_ROOT", str(tmp_path / "elsewhere"))
    assert LakeResource().lake.root == (tmp_path / "elsewhere").resolve()
    built = build_definitions(lake_root=str(tmp_path / "explicit"))
    assert built.resources is not None and built.resources["lake"].root == str(tmp_path / "explicit")


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
        partition_key="2024-11-05",
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

    with connect_warehouse(lake, read_only=True) as con:
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
    dg.materialize([meal], resources=resources, partition_key="2024-11-05")
    part = next((lake.raw / "meal_transactions").glob("*.parquet"))
    read_parquet(part).head(1).write_parquet(part)

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
        [meal],
        resources={"lake": LakeResource(root=str(lake.root))},
        raise_on_error=False,
        partition_key="2024-11-06",
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


def lake_digest(lake: Lake) -> dict[str, str]:
    """Every byte of the lake's data: raw zone (parts, ledgers) and the warehouse."""
    files = [*sorted(lake.raw.rglob("*")), lake.warehouse]
    return {
        p.relative_to(lake.root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in files
        if p.is_file()
    }


@pytest.mark.integration
def test_run_nightly_makes_one_ranged_event_run_and_a_second_build_changes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DAGSTER_HOME", raising=False)  # restored after the test
    lake = Lake(tmp_path / "lake")
    deliver_samples(lake)
    for day in ("20241103", "20241107"):
        write_meal(lake, day, 2)

    assert run_nightly(lake)
    first = lake_digest(lake)
    assert run_nightly(lake)

    assert lake_digest(lake) == first
    with dg.DagsterInstance.from_config(str(lake.dagster_home)) as instance:
        runs = list(reversed(instance.get_runs()))  # oldest first
        assert [(r.job_name, r.tags.get("rainbow/nightly")) for r in runs] == [
            ("nightly_build", "events"),
            ("nightly_build", "unpartitioned"),
            ("safety_alerts_hourly", "alerts"),  # every hour of the new delivery days
            ("nightly_build", "unpartitioned"),  # the second build: no new event file, no event run
        ]
        assert all(r.is_success for r in runs)
        alerts = runs[2]
        assert alerts.tags["dagster/asset_partition_range_start"] == "2024-11-03T00"
        assert alerts.tags["dagster/asset_partition_range_end"] == "2024-11-07T23"
        events = runs[0]
        assert events.tags["dagster/asset_partition_range_start"] == "2024-11-03"
        assert events.tags["dagster/asset_partition_range_end"] == "2024-11-07"
        assert set(events.asset_selection or ()) == set(partitioned_keys())
        meal = dg.AssetKey(["raw", "meal_transactions"])
        partitions = instance.get_materialized_partitions(meal)
        assert partitions == {f"2024-11-0{d}" for d in range(3, 8)}
        latest = instance.get_latest_materialization_event(dg.AssetKey(["raw", "muni_elders"]))
        assert latest is not None and latest.run_id == runs[3].run_id
        # "planned" events: one per partition for the 5 days, one per asset for the 120 hours
        planned = dg.DagsterEventType.ASSET_MATERIALIZATION_PLANNED
        meal_planned = [
            e
            for e in instance.all_logs(events.run_id, of_type=planned)
            if e.dagster_event and e.dagster_event.asset_key == meal
        ]
        assert len(meal_planned) == 5
        (alerts_planned,) = instance.all_logs(alerts.run_id, of_type=planned)
        assert alerts_planned.dagster_event is not None
        assert alerts_planned.dagster_event.event_specific_data.partitions_subset is not None  # type: ignore[union-attr]
        hours = instance.get_materialized_partitions(dg.AssetKey(["marts", "safety_alerts"]))
        assert len(hours) == 120 and "2024-11-07T23" in hours
        assert SUBSET_PLANNED_ENV not in os.environ  # restored after the run


def write_meal(lake: Lake, day: str, n: int) -> Path:
    meal = load_registry().table("meal_transactions")
    header = ",".join(c.source for c in meal.columns)
    rows = [
        f"T{day}{i},C{i},张{i},,P01,长者食堂,2024/11/5 11:30:00,午餐,15.00,10,5.00,敬老卡" for i in range(n)
    ]
    path = lake.landing / "meal_aid" / f"meal_txn_{day}.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(("\r\n".join([header, *rows]) + "\r\n").encode("gbk"))
    return path


def write_elders(lake: Lake, day: str) -> Path:
    path = lake.landing / "municipal" / f"elders_{day}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f'{{"code": 0, "data": {{"total": 1, "records": [{{"lrbh": "E{day}"}}]}}}}', "utf-8")
    return path


@pytest.mark.integration
def test_a_ranged_run_ingests_three_days_in_one_run_and_a_rerun_of_a_day_changes_nothing(
    tmp_path: Path,
) -> None:
    lake = Lake(tmp_path / "lake")
    for day, n in (("20241104", 2), ("20241105", 3), ("20241106", 4)):
        write_meal(lake, day, n)
    shutil.copy(
        lake.landing / "meal_aid" / "meal_txn_20241105.csv",
        lake.landing / "meal_aid" / "meal_txn_20241105(1).csv",
    )
    built = build_definitions(lake_root=str(lake.root))
    job = built.resolve_job_def("event_partitions")
    meal = dg.AssetKey(["raw", "meal_transactions"])

    with dg.instance_for_test() as instance:
        result = job.execute_in_process(
            instance=instance,
            asset_selection=[meal],
            tags={
                "dagster/asset_partition_range_start": "2024-11-04",
                "dagster/asset_partition_range_end": "2024-11-06",
            },
        )
        assert result.success
        assert len(instance.get_runs()) == 1
        mats = result.get_asset_materialization_events()
        assert sorted(e.materialization.partition or "" for e in mats) == [
            "2024-11-04",
            "2024-11-05",
            "2024-11-06",
        ]
        md = mats[0].materialization.metadata
        assert md["dagster/row_count"].value == 9
        assert md["partition_count"].value == 3
        per_date = str(md["per_date"].value).splitlines()[2:]  # date, files, duplicates, ..., rows ingested
        assert [row.split(" | ")[0:3] for row in per_date] == [
            ["| 2024-11-04", "1", "0"],
            ["| 2024-11-05", "1", "1"],
            ["| 2024-11-06", "1", "0"],
        ]
        assert [row.split(" | ")[5] for row in per_date] == ["2", "3", "4"]
        files = str(md["files"].value)  # a range lists only what deserves a look, and counts the rest
        assert "meal_txn_20241105(1).csv` | duplicate" in files
        assert "3 file(s) ingested cleanly" in files
        (check,) = result.get_asset_check_evaluations()
        assert check.passed
        before = lake_digest(lake)

        rerun = job.execute_in_process(instance=instance, asset_selection=[meal], partition_key="2024-11-05")

        assert rerun.success
        (again,) = rerun.get_asset_materialization_events()
        assert again.materialization.partition == "2024-11-05"
        assert again.materialization.metadata["files_already_known"].value == 2
        assert again.materialization.metadata["dagster/row_count"].value == 3
        assert lake_digest(lake) == before


@pytest.mark.integration
def test_landing_sensor_requests_only_what_new_files_touch(tmp_path: Path) -> None:
    lake = Lake(tmp_path / "lake")
    write_meal(lake, "20241104", 2)
    d5 = write_meal(lake, "20241105", 3)
    shutil.copy(d5, d5.with_name("meal_txn_20241105(1).csv"))
    deliver_samples_assessments(lake)  # municipal/assessments_20241105.json (partitioned)
    write_elders(lake, "20241105")  # unpartitioned daily snapshot
    write_meal(lake, "20991231", 1)  # no partition for that day yet: left for a later tick
    built = build_definitions(lake_root=str(lake.root))
    sensor = built.resolve_sensor_def("landing_sensor")
    meal, muni = dg.AssetKey(["raw", "meal_transactions"]), dg.AssetKey(["raw", "muni_assessments"])
    s_meal, s_muni = dg.AssetKey(["staged", "meal_transactions"]), dg.AssetKey(["staged", "muni_assessments"])
    elders = [dg.AssetKey(["raw", "muni_elders"]), dg.AssetKey(["staged", "muni_elders"])]

    with dg.instance_for_test() as instance:
        first = sensor.evaluate_tick(sensor_context(instance, built, lake))
        requested = [
            (r.job_name, r.partition_key, r.tags.get("dagster/partition"), list(r.asset_selection or ()))
            for r in first.run_requests or []
        ]
        # each touched raw asset and the staged asset built from it, and the library tables
        # downstream of an unpartitioned staged table
        assert requested == [
            ("unpartitioned_assets", None, None, library_downstream_of_elders() + elders),
            ("event_partitions", "2024-11-04", "2024-11-04", [meal, s_meal]),
            ("event_partitions", "2024-11-05", "2024-11-05", [meal, muni, s_meal, s_muni]),
        ]
        cursor = load_cursor(first.cursor)
        assert sorted(cursor.requested["meal_transactions"]) == [
            "meal_aid/meal_txn_20241104.csv",
            "meal_aid/meal_txn_20241105(1).csv",
            "meal_aid/meal_txn_20241105.csv",
        ]  # not the file of 2099: no partition yet, so meal_transactions is looked at again next tick
        assert sorted(cursor.listings) == ["muni_assessments", "muni_elders"]

        second = sensor.evaluate_tick(sensor_context(instance, built, lake, first.cursor))
        assert not second.run_requests
        assert second.skip_message == "no new file in landing/"

        for r in first.run_requests or []:
            run = built.resolve_job_def(r.job_name or "").execute_in_process(
                instance=instance,
                partition_key=r.partition_key,
                asset_selection=r.asset_selection,
                tags=r.tags,
            )
            assert run.success
            assert {e.asset_key for e in run.get_asset_check_evaluations()} == set(r.asset_selection or ())
        # a sensor started afresh (no cursor) finds everything in the ledgers
        fresh = sensor.evaluate_tick(sensor_context(instance, built, lake))
        assert not fresh.run_requests

        write_meal(lake, "20241106", 1)
        third = sensor.evaluate_tick(sensor_context(instance, built, lake, second.cursor))
        assert [(r.partition_key, list(r.asset_selection or ())) for r in third.run_requests or []] == [
            ("2024-11-06", [meal, s_meal])
        ]
        assert list(load_cursor(third.cursor).requested["meal_transactions"]) == [
            "meal_aid/meal_txn_20241106.csv"
        ]


def library_downstream_of_elders() -> list[dg.AssetKey]:
    """Library and mart assets downstream of staged/muni_elders: all but the library tables reading
    neither it nor the index."""
    library = [
        dg.AssetKey(["library", t.name])
        for _, t in load_registry().derived_tables("library")
        if t.name not in ("dim_facility", "dim_caregiver")
    ]
    return sorted([*library, *(dg.AssetKey(["marts", n]) for n in MARTS)], key=lambda k: list(k.path))


def sensor_context(
    instance: dg.DagsterInstance, built: dg.Definitions, lake: Lake, cursor: str | None = None
) -> dg.SensorEvaluationContext:
    return dg.build_sensor_context(
        instance=instance,
        definitions=built,
        cursor=cursor,
        resources={"lake": LakeResource(root=str(lake.root))},
    )


def deliver_samples_assessments(lake: Lake) -> None:
    dump = lake.landing / "municipal" / "assessments_20241105.json"
    dump.parent.mkdir(parents=True, exist_ok=True)
    dump.write_text(
        '{"code":0,"msg":"成功","data":{"total":1,"records":[{"pgbh":"A1","xm":"钱七","pgrq":"2024-11-05"}]}}',
        encoding="utf-8",
    )


def test_landing_sensor_reads_no_ledger_while_landing_is_unchanged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pipelines.sensors

    lake = Lake(tmp_path / "lake")
    write_meal(lake, "20241104", 2)
    ingest_table(lake, load_registry().table("meal_transactions"), datetime(2024, 11, 5, tzinfo=UTC))
    write_elders(lake, "20241105")  # not ingested yet
    built = build_definitions(lake_root=str(lake.root))
    sensor = built.resolve_sensor_def("landing_sensor")
    with dg.instance_for_test() as instance:
        first = sensor.evaluate_tick(sensor_context(instance, built, lake))
        assert [list(r.asset_selection or ()) for r in first.run_requests or []] == [
            [
                *library_downstream_of_elders(),
                dg.AssetKey(["raw", "muni_elders"]),
                dg.AssetKey(["staged", "muni_elders"]),
            ]
        ]
        cursor = load_cursor(first.cursor)
        assert sorted(cursor.listings) == ["meal_transactions", "muni_elders"]
        assert cursor.requested == {
            "muni_elders": {
                "municipal/elders_20241105.json": [
                    (st := (lake.landing / "municipal" / "elders_20241105.json").stat()).st_size,
                    st.st_mtime_ns,
                ]
            }
        }
        assert len(first.cursor or "") < 300  # stored with every tick: kept small

        def no_ledger(*_: object) -> None:
            raise AssertionError("a ledger was read although landing did not change")

        monkeypatch.setattr(pipelines.sensors, "read_ledger", no_ledger)
        second = sensor.evaluate_tick(sensor_context(instance, built, lake, first.cursor))
    assert not second.run_requests
    assert second.cursor == first.cursor


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


def test_a_second_layer_with_the_same_partitioning_joins_the_sensor_targets() -> None:
    """A staged layer (same partitions as its raw table) is run with it; other partitionings are not."""
    from assets.partitions import daily_partitions
    from assets.raw_assets import build_raw_assets
    from pipelines.jobs import keys_by_partitioning
    from pipelines.sensors import sensor_targets

    reg = load_registry()
    daily = daily_partitions()
    raw_assets, _ = build_raw_assets(reg, daily)
    meal, elders = dg.AssetKey(["raw", "meal_transactions"]), dg.AssetKey(["raw", "muni_elders"])

    @dg.asset(key=["staged", "meal_transactions"], deps=[meal], partitions_def=daily)
    def staged_meal() -> None: ...

    @dg.asset(key=["staged", "muni_elders"], deps=[elders])
    def staged_elders() -> None: ...

    @dg.asset(key=["library", "services"], deps=[staged_meal, staged_elders])
    def services() -> None: ...

    assets = [*raw_assets, staged_meal, staged_elders, services]
    targets = sensor_targets(reg, assets)
    assert targets["meal_transactions"].partitioned
    assert targets["meal_transactions"].keys == (meal, dg.AssetKey(["staged", "meal_transactions"]))
    assert not targets["muni_elders"].partitioned
    assert targets["muni_elders"].keys == (
        dg.AssetKey(["library", "services"]),
        elders,
        dg.AssetKey(["staged", "muni_elders"]),
    )
    partitioned, unpartitioned = keys_by_partitioning(s for a in assets for s in a.specs)
    assert dg.AssetKey(["staged", "meal_transactions"]) in partitioned
    assert dg.AssetKey(["library", "services"]) in unpartitioned


def test_range_size_counts_days_and_hours() -> None:
    def tags(a: str, b: str) -> dict[str, str]:
        return {"dagster/asset_partition_range_start": a, "dagster/asset_partition_range_end": b}

    assert range_size(tags("2025-12-01", "2026-11-30")) == 365
    assert range_size(tags("2024-11-03T00", "2024-11-07T23")) == 120
    assert range_size(tags("2024-11-05", "2024-11-05")) == 1
    assert range_size({}) == 0

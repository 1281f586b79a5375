"""What the Dagster UI shows per asset: owners, kinds, tags, column schema and column lineage."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from assets.library_assets import build_library_assets
from assets.mart_assets import build_mart_assets
from assets.raw_assets import build_raw_assets
from assets.staged_assets import build_staged_assets
from catalog.dagster_meta import asset_metadata, column_lineage, kinds, owner_team, owners, tags
from catalog.graph import contract_schema
from schemas import load_registry

REG = load_registry()
TAG_VALUE = re.compile(r"^[A-Za-z0-9_.-]{0,63}$")
OWNER = re.compile(r"^team:\S+$")
TEAM = re.compile(r"^[a-z0-9][a-z0-9-]*$")
ALL = (
    [("raw", t.name) for _, t in REG.tables()]
    + [("staged", t.name) for _, t in REG.tables()]
    + [(d.zone, t.name) for d, t in REG.derived_tables()]
)


@pytest.mark.parametrize(("zone", "table"), ALL, ids=[f"{z}.{t}" for z, t in ALL])
def test_every_asset_gets_valid_owners_tags_kinds_and_schema(zone: str, table: str) -> None:
    t = tags(table, zone, REG)
    assert t["zone"] == zone and t["pii"] in ("yes", "no")
    assert all(TAG_VALUE.match(v) for v in t.values()), t
    assert owners(table, zone, REG) == [f"team:{contract_owner(table, zone)}"]
    assert all(OWNER.match(o) for o in owners(table, zone, REG))
    assert TEAM.match(owner_team(table, zone, REG))
    meta = asset_metadata(table, zone, REG)
    # Dagster accepts all of it on a spec
    spec = dg.AssetSpec(
        key=[zone, table],
        owners=owners(table, zone, REG),
        tags=t,
        kinds=kinds(table, zone, REG),
        metadata=meta,
    )
    schema = meta["dagster/column_schema"]
    contract = REG.table(table) if zone in ("raw", "staged") else REG.derived(table)
    by_name = {c.name: c for c in schema.columns}
    for c in contract.columns:
        assert by_name[c.name].tags == {"pii": c.pii}, c.name
    assert spec.metadata["dagster/table_name"] == f"{zone}.{table}"


def test_column_lineage_points_at_existing_assets_and_columns() -> None:
    schema = contract_schema(REG)
    seen = 0
    for zone, table in ALL:
        lineage = column_lineage(table, zone, REG)
        if lineage is None:
            continue
        for column, deps in lineage.deps_by_column.items():
            for dep in deps:
                dep_zone, dep_table = dep.asset_key.path
                assert dep.column_name in schema[dep_zone][dep_table], (zone, table, column, dep)
                seen += 1
    assert seen > 100
    staged = column_lineage("muni_elders", "staged", REG)
    assert staged is not None
    assert staged.deps_by_column["id_number"] == [
        dg.TableColumnDep(dg.AssetKey(["raw", "muni_elders"]), "id_number")
    ]


def contract_owner(table: str, zone: str) -> str:
    if zone in ("raw", "staged"):
        return REG.system_of(table).table_owner(REG.table(table))
    return REG.dataset_of(table).table_owner(REG.derived(table))


def test_every_asset_of_the_definitions_carries_the_helpers_fields() -> None:
    """raw, staged, library and mart assets: Chinese owner team, kinds, tags, column schema and
    description; library and mart assets also their column lineage from the lineage graph."""
    specs = {}
    for build in (build_raw_assets, build_staged_assets, build_library_assets, build_mart_assets):
        assets, _ = build(REG)
        specs.update({spec.key: spec for a in assets for spec in a.specs})
    # the hourly safety alerts are built by assets/marts/alert_assets.py, not these four factories
    built_elsewhere = {("marts", "safety_alerts")}
    assert {(z, t) for z, t in ALL if dg.AssetKey([z, t]) not in specs} == built_elsewhere
    lineage_seen = 0
    for zone, table in ALL:
        if (zone, table) in built_elsewhere:
            continue
        spec = specs[dg.AssetKey([zone, table])]
        # the department's Chinese name, e.g. team:区民政局（养老服务科）
        assert spec.owners == [f"team:{contract_owner(table, zone)}"], spec.key
        assert spec.kinds == kinds(table, zone, REG)
        own_tags = {k: v for k, v in spec.tags.items() if not k.startswith("dagster/kind/")}
        assert own_tags == tags(table, zone, REG)
        assert {"zone", "pii", "open_data"} <= set(spec.tags)
        assert spec.description
        assert isinstance(spec.metadata["dagster/column_schema"], dg.TableSchema)
        if zone in ("library", "marts"):
            lineage = spec.metadata["dagster/column_lineage"]
            assert isinstance(lineage, dg.TableColumnLineage), spec.key
            lineage_seen += 1
    assert lineage_seen == len(list(REG.derived_tables())) - len(built_elsewhere)
    portrait = specs[dg.AssetKey(["marts", "elder_portrait"])].metadata["dagster/column_lineage"]
    assert portrait.deps_by_column["elder_pseudonym"] == [
        dg.TableColumnDep(dg.AssetKey(["library", "dim_elder"]), "elder_key")
    ]
    # the KPI values: a KPI formula is no asset; the columns the formulas read stand for it
    kpi = specs[dg.AssetKey(["marts", "kpi_values"])].metadata["dagster/column_lineage"]
    screened = dg.TableColumnDep(dg.AssetKey(["library", "fact_screening"]), "elder_key")
    assert screened in kpi.deps_by_column["value"]


def test_loading_the_definitions_imports_no_great_expectations(tmp_path: Path) -> None:
    """GX takes seconds to import: the definitions (and the lineage graph they build) do without it."""
    code = (
        "import sys, pipelines.definitions as d; "
        "assert d.defs is not None; "
        "assert 'great_expectations' not in sys.modules, 'great_expectations imported'"
    )
    env = {**os.environ, "RAINBOW_LAKE_ROOT": str(tmp_path / "lake")}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]

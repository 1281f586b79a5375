"""What the Dagster UI shows per asset: owners, kinds, tags, column schema and column lineage."""

from __future__ import annotations

import re

import dagster as dg
import pytest

from assets.raw_assets import asset_tags, definition_metadata
from catalog.dagster_meta import asset_metadata, column_lineage, kinds, owners, tags
from catalog.graph import contract_schema
from schemas import load_registry

REG = load_registry()
TAG_VALUE = re.compile(r"^[A-Za-z0-9_.-]{0,63}$")
OWNER = re.compile(r"^team:[a-z0-9][a-z0-9-]*$")
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
    assert all(OWNER.match(o) for o in owners(table, zone, REG))
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


def test_helpers_give_a_superset_of_what_the_raw_and_staged_assets_set_today() -> None:
    for system, table in REG.tables():
        ours = asset_metadata(table.name, "raw", REG)
        assert set(definition_metadata(system, table)) <= set(ours)
        assert set(asset_tags(system, table)).issubset(tags(table.name, "raw", REG))
        assert {k: v for k, v in asset_tags(system, table).items()} == {
            k: v for k, v in tags(table.name, "raw", REG).items() if k in asset_tags(system, table)
        }
    assert kinds("muni_elders", "staged", REG) == {"polars", "parquet", "duckdb"}
    assert kinds("dim_elder", "library", REG) == {"duckdb", "parquet", "sql"}
    assert kinds("elder_links", "library", REG) == {"duckdb", "parquet", "python"}

"""The catalogue over a built lake: every dataset exists, PII is flagged, the site works offline."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from catalog.build import Catalog, build_catalog, catalog_frames, write_catalog
from catalog.cli import catalog_command
from catalog.site import page_name
from rainbow.settings import Lake
from schemas import load_registry
from tests.lakefiles import read_parquet

REG = load_registry()
SOURCE_ZONES = ("landing", "raw", "staged", "quarantine")


@pytest.fixture(scope="module")
def catalog(staged_lake: Lake) -> Catalog:
    return build_catalog(staged_lake, REG)


def _files(lake: Lake, location: str) -> list[Path]:
    return [p for p in (lake.root / location).rglob("*") if p.is_file()]


def test_every_contract_table_is_catalogued_in_every_zone(catalog: Catalog) -> None:
    ids = {d.id for d in catalog.datasets}
    for _, t in REG.tables():
        assert {f"{z}.{t.name}" for z in SOURCE_ZONES} <= ids
    for d, dt in REG.derived_tables():
        assert f"{d.zone}.{dt.name}" in ids
    assert len(ids) == len(catalog.datasets)


def test_every_catalogued_dataset_exists_on_disk_and_as_a_view(catalog: Catalog, staged_lake: Lake) -> None:
    for d in catalog.datasets:
        if d.zone in ("raw", "staged"):
            assert d.exists and d.status == "built", d.id
            assert d.row_count is not None and d.view_exists is True, d.id
        if d.zone == "quarantine":
            assert d.view_exists is True, d.id
        if d.exists:
            files = _files(staged_lake, d.location) if d.zone != "landing" else None
            assert files is None or files, d.id
        if d.zone in ("library", "marts"):  # not built in this lake: said so, not invented
            assert d.exists == bool(_files(staged_lake, d.location)), d.id
            assert d.status == ("built" if d.exists else "not built"), d.id
            assert d.freshness.status == "not_built" or d.exists, d.id
        if d.zone == "landing":
            assert d.exists and d.files > 0, d.id


def test_row_counts_match_the_parquet_on_disk(catalog: Catalog, staged_lake: Lake) -> None:

    entry = catalog.dataset("staged.muni_elders")
    assert (
        entry.row_count
        == read_parquet(staged_lake.staged / "muni_elders" / "**" / "*.parquet").height
    )
    assert entry.freshness.last_delivery is not None and entry.freshness.status in ("fresh", "late")


def test_every_pii_column_in_the_contracts_is_flagged(catalog: Catalog) -> None:
    for _, t in REG.tables():
        expected = {(c.name, c.pii) for c in t.columns if c.pii != "none"}
        for zone in ("raw", "staged"):
            entry = catalog.dataset(f"{zone}.{t.name}")
            assert {(p.column, p.pii) for p in entry.pii_columns} == expected, entry.id
            by_name = {c.name: c.pii for c in entry.columns}
            assert {(n, by_name[n]) for n, _ in expected} == expected, entry.id
            assert entry.pii == bool(expected)
        landing = {c.name: c.pii for c in catalog.dataset(f"landing.{t.name}").columns}
        quarantine = {c.name: c.pii for c in catalog.dataset(f"quarantine.{t.name}").columns}
        for c in t.columns:
            assert landing[c.source] == c.pii and quarantine[c.name] == c.pii, (t.name, c.name)
    for d, dt in REG.derived_tables():
        entry = catalog.dataset(f"{d.zone}.{dt.name}")
        expected = {(c.name, c.pii) for c in dt.columns if c.pii != "none"}
        assert {(p.column, p.pii) for p in entry.pii_columns} == expected, entry.id


def test_quality_scores_and_roles(catalog: Catalog) -> None:
    quality = catalog.dataset("staged.caregivers").quality
    assert quality is not None and quality.score is not None and 0 <= quality.score <= 1
    assert catalog.dataset("staged.muni_elders").quality is None  # never validated here
    assert catalog.dataset("landing.muni_elders").roles == []
    assert [r.role for r in catalog.dataset("raw.muni_elders").roles] == ["steward"]
    secret = catalog.dataset("library.fact_screening")
    assert secret.sensitivity == "secret" and "street_staff" not in {r.role for r in secret.roles}
    assert "street_staff" in {r.role for r in catalog.dataset("library.dim_elder").roles}


def test_lineage_scenarios_and_kpis_are_cross_referenced(catalog: Catalog) -> None:
    dim = catalog.dataset("library.dim_elder")
    id_col = next(c for c in dim.columns if c.name == "id_number")
    assert "staged.muni_elders.id_number" in id_col.origins
    assert "YP-14" in dim.scenarios
    staged_id = next(c for c in catalog.dataset("staged.muni_elders").columns if c.name == "id_number")
    assert "library.dim_elder.id_number" in staged_id.downstream
    assert {s.id for s in catalog.scenarios} >= {f"YP-{i:02d}" for i in range(1, 19)}
    everything = {s.id: s for s in catalog.scenarios}["YP-05"]
    assert len(everything.pilot_streets) == 12 and "五角场街道" in everything.pilot_streets_zh


def test_flat_tables_for_the_dashboards(catalog: Catalog) -> None:
    frames = catalog_frames(catalog)
    assert frames["datasets"].height == len(catalog.datasets)
    assert frames["scenarios"].height == len(catalog.scenarios)
    assert frames["columns"].filter(frames["columns"]["pii"] == "direct_identifier").height > 0


def test_site_is_written_offline_and_searchable(catalog: Catalog, staged_lake: Lake, tmp_path: Path) -> None:
    out = write_catalog(staged_lake, tmp_path / "site", catalog=catalog)
    index = (out / "index.html").read_text(encoding="utf-8")
    match = re.search(r'<script id="search-index" type="application/json">(.*?)</script>', index, re.S)
    assert match
    entries = json.loads(match.group(1))
    assert {e["id"] for e in entries} == {d.id for d in catalog.datasets}
    muni = next(e for e in entries if e["id"] == "staged.muni_elders")
    assert "id_number" in muni["text"] and "身份证号" in muni["text"]
    for d in catalog.datasets:
        assert (out / page_name(d.id)).is_file(), d.id
    pages = [
        out / "index.html",
        out / "scenarios.html",
        out / "kpis.html",
        *(out / "datasets").glob("*.html"),
    ]
    for page in pages:
        text = page.read_text(encoding="utf-8")
        assert not re.search(r"https?:|(src|href)=\"//", text), page.name
        assert '<html lang="zh-CN">' in text
    assert "场景库" in (out / "scenarios.html").read_text(encoding="utf-8")
    dim = (out / page_name("library.dim_elder")).read_text(encoding="utf-8")
    assert "<svg" in dim and "身份证号" in dim
    loaded = Catalog.model_validate_json((out / "catalog.json").read_text(encoding="utf-8"))
    assert len(loaded.datasets) == len(catalog.datasets)
    # a second write replaces the site and drops pages of datasets no longer catalogued
    (out / "datasets" / "raw.gone.html").write_text("old", encoding="utf-8")
    write_catalog(staged_lake, out, catalog=catalog)
    assert not (out / "datasets" / "raw.gone.html").exists()


def test_cli_writes_under_the_lake_by_default(staged_lake: Lake, capsys: pytest.CaptureFixture[str]) -> None:
    catalog_command(lake=staged_lake.root)
    out = staged_lake.marts / "catalog"
    assert (out / "catalog.json").is_file() and (out / "index.html").is_file()
    assert "datasets" in capsys.readouterr().out
    # the catalogue does not list itself
    assert "marts.catalog" not in {d.id for d in build_catalog(staged_lake, REG).datasets}


def test_a_broken_scenario_reference_fails_the_catalogue_build(
    staged_lake: Lake, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import typer
    import yaml

    import catalog.scenarios as scenarios

    data = yaml.safe_load(scenarios.SCENARIOS_PATH.read_text(encoding="utf-8"))
    data["scenarios"][0]["datasets"] = ["wristband_telemetry"]
    broken = tmp_path / "scenarios.yaml"
    broken.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    monkeypatch.setattr(scenarios, "SCENARIOS_PATH", broken)
    with pytest.raises(scenarios.ScenarioError, match="wristband_telemetry"):
        build_catalog(staged_lake, REG)
    with pytest.raises(typer.Exit) as exit_info:
        catalog_command(out=tmp_path / "out", lake=staged_lake.root)
    assert exit_info.value.exit_code == 2 and not (tmp_path / "out").exists()

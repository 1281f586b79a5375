"""Shared fixtures: one generated sample per test session (small, seeded)."""

from __future__ import annotations

from pathlib import Path

import pytest

from rainbow.settings import Lake
from sample_data.config import GeneratorConfig
from sample_data.generate import generate

SAMPLE = GeneratorConfig(elders=3_000, days=35, record_exposure=True)


@pytest.fixture(scope="session")
def sample_lake(tmp_path_factory: pytest.TempPathFactory) -> Lake:
    """A generated lake (3,000 elders x 35 days, crossing a month boundary); treat as read-only."""
    lake = Lake(tmp_path_factory.mktemp("sample") / "lake")
    generate(SAMPLE, lake)
    return lake


@pytest.fixture()
def tmp_lake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Lake:
    """An empty lake under tmp_path, also set as $RAINBOW_LAKE_ROOT."""
    root = tmp_path / "lake"
    monkeypatch.setenv("RAINBOW_LAKE_ROOT", str(root))
    return Lake(root)


@pytest.fixture(scope="session")
def library_lake(sample_lake: Lake, tmp_path_factory: pytest.TempPathFactory) -> Lake:
    """A copy of ``sample_lake`` ingested, staged and built into the library (no Dagster); read-only."""
    import shutil
    from datetime import UTC, datetime

    from assets.library.build import build_library
    from assets.staging.stage import ingest_and_stage
    from schemas import load_registry

    lake = Lake(tmp_path_factory.mktemp("library") / "lake")
    shutil.copytree(sample_lake.root, lake.root)
    registry = load_registry()
    ingest_and_stage(lake, registry, datetime(2026, 12, 10, tzinfo=UTC))
    build_library(lake, registry, datetime(2026, 12, 10, 2, 0))
    return lake

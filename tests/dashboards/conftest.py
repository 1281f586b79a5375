"""Fixtures of the dashboard tests: one small built lake per session and its users (helpers: support.py).

The lake (600 elders x 35 days, every zone the dashboards read) is built once without
Dagster (``lake_builder.build_lake``, ~30-45 s on 2 cores) and treated as read-only;
tests that write (alert acknowledgements, steward decisions) work on a copy.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import streamlit as st

from dashboards.auth import add_user, default_users_path
from rainbow.settings import LAKE_ROOT_ENV, Lake
from tests.dashboards.lake_builder import build_lake
from tests.dashboards.support import PASSWORD, USERS, relocate


@pytest.fixture(scope="session")
def built_lake(tmp_path_factory: pytest.TempPathFactory) -> Lake:
    """The built lake with the test users (password :data:`PASSWORD`); treat as read-only."""
    lake = Lake(tmp_path_factory.mktemp("dashboards") / "lake")
    build_lake(lake.root)
    path = default_users_path(lake)
    for username, role, street in USERS:
        recipient = "fudan_sph" if role == "third_party" else None
        add_user(path, username, role, PASSWORD, street=street, recipient=recipient)
    return lake


@pytest.fixture()
def lake(built_lake: Lake, monkeypatch: pytest.MonkeyPatch) -> Lake:
    """The shared built lake as ``$RAINBOW_LAKE_ROOT`` (read-only use)."""
    monkeypatch.setenv(LAKE_ROOT_ENV, str(built_lake.root))
    monkeypatch.delenv("RAINBOW_DASHBOARD_USERS", raising=False)
    return built_lake


@pytest.fixture()
def writable_lake(built_lake: Lake, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Lake:
    """A private copy of the built lake, for tests that write to its operational store."""
    root = tmp_path / "lake"
    shutil.copytree(built_lake.root, root, symlinks=True)
    relocate(built_lake, Lake(root))
    monkeypatch.setenv(LAKE_ROOT_ENV, str(root))
    monkeypatch.delenv("RAINBOW_DASHBOARD_USERS", raising=False)
    return Lake(root)


@pytest.fixture(autouse=True)
def _clear_streamlit_cache() -> Iterator[None]:
    st.cache_data.clear()
    yield
    st.cache_data.clear()

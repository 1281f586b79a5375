"""Fixtures of the export tests: a lake over the session's built library."""

from __future__ import annotations

from pathlib import Path

import pytest

from rainbow.settings import Lake
from tests.exports.export_helpers import MASTER_KEY
from tests.lakefiles import use_key_of


@pytest.fixture(scope="session")
def export_source(library_lake: Lake) -> Lake:
    """The session's built library (read-only): staged and library zones."""
    return library_lake


@pytest.fixture()
def export_lake(export_source: Lake, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Lake:
    """A fresh lake whose staged/library zones are the built library's (symlinked, read-only);
    exports and the ops store are written under tmp_path."""
    root = tmp_path / "lake"
    root.mkdir()
    for zone in ("staged", "library"):
        (root / zone).symlink_to(export_source.root / zone, target_is_directory=True)
    monkeypatch.setenv("RAINBOW_PSEUDONYM_KEY", MASTER_KEY.hex())
    use_key_of(export_source, monkeypatch)  # the linked zones are encrypted under the source's key
    return Lake(root)

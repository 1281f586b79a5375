"""Lake layout and run-time settings.

Nothing here reads the environment at import time: call :func:`lake_root` (or
build a :class:`Lake`) when the value is needed, so tests can point the lake at
``tmp_path`` with ``monkeypatch.setenv``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

LAKE_ROOT_ENV = "RAINBOW_LAKE_ROOT"
DEFAULT_LAKE_ROOT = "./data"
ZONES = ("landing", "raw", "staged", "library", "marts", "exports")


def lake_root() -> Path:
    """The lake root: ``$RAINBOW_LAKE_ROOT`` or ``./data``, made absolute."""
    return Path(os.environ.get(LAKE_ROOT_ENV, DEFAULT_LAKE_ROOT)).expanduser().resolve()


@dataclass(frozen=True)
class Lake:
    """Paths of every zone under one lake root."""

    root: Path

    @classmethod
    def from_env(cls) -> Lake:
        return cls(lake_root())

    @property
    def landing(self) -> Path:
        return self.root / "landing"

    @property
    def truth(self) -> Path:
        """Generator ground truth. Never read by the pipeline."""
        return self.root / "truth"

    @property
    def raw(self) -> Path:
        return self.root / "raw"

    @property
    def staged(self) -> Path:
        return self.root / "staged"

    @property
    def library(self) -> Path:
        return self.root / "library"

    @property
    def marts(self) -> Path:
        return self.root / "marts"

    @property
    def exports(self) -> Path:
        return self.root / "exports"

    @property
    def warehouse(self) -> Path:
        return self.root / "warehouse.duckdb"

    @property
    def dagster_home(self) -> Path:
        return self.root / "dagster_home"

    def zone(self, name: str) -> Path:
        if name not in ZONES:
            raise ValueError(f"unknown zone {name!r}; expected one of {ZONES}")
        return self.root / name

"""Reference data the district holds (roads per street, ...), shared by staging and the generator."""

from __future__ import annotations

import functools
from pathlib import Path

import yaml

REFERENCE_DIR = Path(__file__).resolve().parent


@functools.cache
def street_roads() -> dict[str, tuple[str, ...]]:
    """Street code -> the roads running through it."""
    data = yaml.safe_load((REFERENCE_DIR / "streets.yaml").read_text(encoding="utf-8"))
    return {str(code): tuple(roads) for code, roads in data["roads"].items()}


@functools.cache
def road_to_street() -> dict[str, str]:
    """Road -> street code (first street listing it wins)."""
    out: dict[str, str] = {}
    for code, roads in street_roads().items():
        for road in roads:
            out.setdefault(road, code)
    return out

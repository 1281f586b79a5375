"""The Dagster code location: ``dagster dev -m pipelines.definitions``.

Wiring only. The lake root is read from the environment when the resource is
built here (``$RAINBOW_LAKE_ROOT``, default ``./data``); tests build their own
definitions (or swap the resource) with :func:`build_definitions`.
"""

from __future__ import annotations

import dagster as dg

from assets.raw_assets import build_raw_assets
from pipelines.jobs import nightly_build
from pipelines.resources import LakeResource
from pipelines.schedules import nightly_schedule


def build_definitions(lake_root: str | None = None) -> dg.Definitions:
    """All assets, checks, jobs and schedules, bound to a lake (default: from the environment)."""
    raw_assets, raw_checks = build_raw_assets()
    lake = LakeResource(root=lake_root) if lake_root is not None else LakeResource()
    return dg.Definitions(
        assets=raw_assets,
        asset_checks=raw_checks,
        jobs=[nightly_build],
        schedules=[nightly_schedule],
        resources={"lake": lake},
    )


defs = build_definitions()

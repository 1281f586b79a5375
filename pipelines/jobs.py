"""Jobs."""

from __future__ import annotations

import dagster as dg

NIGHTLY_BUILD = "nightly_build"

# Every asset and asset check. The in-process executor: one process runs the
# steps one after another (a new process per step costs ~1 s on this machine,
# and DuckDB takes one writer at a time anyway).
nightly_build = dg.define_asset_job(
    name=NIGHTLY_BUILD,
    selection=dg.AssetSelection.all(),
    executor_def=dg.in_process_executor,
    description="每晚全量构建：landing -> raw -> ... Nightly build of every asset and its checks.",
)

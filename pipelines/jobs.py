"""Jobs, and which assets are partitioned.

Every run materialises assets of one partitioning only: either partition keys
(one day, or a range in one run) of the daily-partitioned event assets, or the
unpartitioned assets. Dagster 1.13 does accept one partitions definition plus
unpartitioned assets in one job, and even runs them together, but such a run
plans a materialisation of every partition of the run for each *unpartitioned*
asset too (30 phantom planned partitions per unpartitioned asset in a 30-day
range: UI noise and ~20 ms each), so no run of ours mixes them.

* ``nightly_build``: every asset and check. The schedule and ``rainbow build``
  launch two runs of it per night, each selecting one partitioning (see
  :mod:`pipelines.schedules`), so it materialises everything without a mixed
  run. (Launching the whole job with a partition from the launchpad
  would make a mixed run: use the two jobs below for hand-made runs.)
* ``event_partitions``: the daily-partitioned assets (a day, a range, a
  backfill); ``landing_sensor``'s per-date runs.
* ``unpartitioned_assets``: the others; ``landing_sensor``'s other runs.

All use the in-process executor: one process runs the steps one after another
(a new process per step costs ~1 s on this machine, and DuckDB takes one writer
at a time anyway). Keys are split by partitions definition
(:func:`keys_by_partitioning`) over whatever assets the definitions hold, so a
new layer with the same partitioning (staged, ...) joins without a change here.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import dagster as dg

if TYPE_CHECKING:  # what define_asset_job returns (not exported by dagster)
    from dagster._core.definitions.unresolved_asset_job_definition import UnresolvedAssetJobDefinition

NIGHTLY_BUILD = "nightly_build"
EVENT_PARTITIONS = "event_partitions"
UNPARTITIONED_ASSETS = "unpartitioned_assets"

# the nightly order: event days first, so unpartitioned assets downstream of them see the new days
EVENTS_RUN, UNPARTITIONED_RUN = "events", "unpartitioned"
# then the hourly safety alerts over the new delivery days (their own job)
ALERTS_RUN = "alerts"


def keys_by_partitioning(
    specs: Iterable[dg.AssetSpec],
) -> tuple[list[dg.AssetKey], list[dg.AssetKey]]:
    """(partitioned keys, unpartitioned keys), each sorted."""
    partitioned: list[dg.AssetKey] = []
    unpartitioned: list[dg.AssetKey] = []
    for spec in specs:
        (partitioned if spec.partitions_def is not None else unpartitioned).append(spec.key)
    return sorted(partitioned, key=_path), sorted(unpartitioned, key=_path)


def _path(key: dg.AssetKey) -> list[str]:
    return list(key.path)


@dataclass(frozen=True)
class Jobs:
    nightly_build: UnresolvedAssetJobDefinition
    event_partitions: UnresolvedAssetJobDefinition
    unpartitioned_assets: UnresolvedAssetJobDefinition

    @property
    def all(self) -> list[UnresolvedAssetJobDefinition]:
        return [self.nightly_build, self.event_partitions, self.unpartitioned_assets]


def build_jobs(partitioned: Sequence[dg.AssetKey], unpartitioned: Sequence[dg.AssetKey]) -> Jobs:
    """The three jobs over the given split of the asset keys."""
    nightly = dg.define_asset_job(
        name=NIGHTLY_BUILD,
        # every daily-partitioned and unpartitioned asset (the hourly alerts run on their own schedule)
        selection=dg.AssetSelection.assets(*partitioned, *unpartitioned),
        executor_def=dg.in_process_executor,
        description=(
            "每晚构建：事件表按交付日分区运行一次（一天或一个日期区间），其余资产再运行一次。"
            "Nightly build of every asset, launched as two runs of one partitioning each: the event "
            "assets for a day or a range of days, then the unpartitioned assets."
        ),
    )
    events = dg.define_asset_job(
        name=EVENT_PARTITIONS,
        selection=dg.AssetSelection.assets(*partitioned),
        executor_def=dg.in_process_executor,
        description=(
            "按交付日分区的事件表（一天、一个区间或回填）。"
            "The daily-partitioned event assets: one day, a range in one run, or a backfill."
        ),
    )
    others = dg.define_asset_job(
        name=UNPARTITIONED_ASSETS,
        selection=dg.AssetSelection.assets(*unpartitioned),
        executor_def=dg.in_process_executor,
        description=(
            "非分区资产（主数据、参考数据、月度文件）。"
            "The unpartitioned assets (master, reference, monthly files)."
        ),
    )
    return Jobs(nightly, events, others)

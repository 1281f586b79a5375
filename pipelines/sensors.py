"""``landing_sensor``: run only what a new delivery touches.

Every tick it lists each table's files in ``<lake>/landing`` (the contract's
path template) with their size and mtime - nothing is hashed - and compares a
digest of that listing with the one in its cursor. Only for a table whose
listing changed is the ingest ledger read: a file not in it (by path, size and
mtime) and not requested before touches its table, and the sensor requests:

* for a partitioned table, one run of ``event_partitions`` per touched
  delivery date, with that partition key, selecting the raw assets of the
  tables touched on that date and what depends on them under the same
  partitions (the staged layer...);
* for unpartitioned tables, one run of ``unpartitioned_assets`` selecting the
  touched raw assets and what depends on them without partitions.

The cursor stays small - Dagster stores it with every tick - : per table the
listing digest, and the files requested but not in the ledger when last looked
(runs still queued, files that failed to read). So a second tick with nothing
new requests nothing and reads no ledger. A file whose date has no partition
yet (a day ahead of Shanghai's today) is not requested, and its table is
looked at again next tick. A file that fails to read stays out of the ledger
and is not requested again by the sensor: the next nightly build or ``rainbow
build`` retries it, and so does the sensor when it is delivered again (new size
or mtime).
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

import dagster as dg

from assets.ingest.ledger import read_ledger
from assets.ingest.raw import PendingFile, discover_files
from assets.partitions import partition_date, partition_key
from assets.raw_assets import raw_asset_key
from pipelines.jobs import EVENT_PARTITIONS, UNPARTITIONED_ASSETS, Jobs
from pipelines.resources import LakeResource
from rainbow.settings import Lake
from schemas import Registry
from schemas.contract import Table

LANDING_SENSOR = "landing_sensor"
CURSOR_VERSION = 2


@dataclass(frozen=True)
class SensorTarget:
    """What a new file of ``table`` makes the sensor run."""

    table: Table
    partitioned: bool
    keys: tuple[dg.AssetKey, ...]  # raw/<table> and its downstream assets with the same partitions


def sensor_targets(registry: Registry, assets: Sequence[dg.AssetsDefinition]) -> dict[str, SensorTarget]:
    """Per table: its raw key plus every downstream asset under the same partitions definition."""
    partitions: dict[dg.AssetKey, dg.PartitionsDefinition | None] = {
        spec.key: spec.partitions_def for a in assets for spec in a.specs
    }
    targets: dict[str, SensorTarget] = {}
    for _, table in registry.tables():
        raw = raw_asset_key(table)
        if raw not in partitions:
            continue
        own = partitions[raw]
        downstream = dg.AssetSelection.assets(raw).downstream().resolve(list(assets))
        keys = sorted((k for k in downstream if partitions.get(k) == own), key=lambda k: list(k.path))
        targets[table.name] = SensorTarget(table, own is not None, tuple(keys))
    return targets


@dataclass(frozen=True)
class SensorCursor:
    listings: dict[str, str]  # table -> digest of its landing listing, when fully handled
    requested: dict[str, dict[str, list[int]]]  # table -> path -> [size, mtime_ns] requested, not in ledger


@dataclass(frozen=True)
class LandingScan:
    touched: dict[str, list[PendingFile]]  # table -> files not in its ledger and not requested before
    cursor: SensorCursor  # the cursor after this scan
    not_yet: list[PendingFile]  # dated after the last partition: looked at again next tick


def _listing_digest(files: Sequence[tuple[str, int, int]]) -> str:
    text = "\n".join(f"{rel}|{size}|{mtime}" for rel, size, mtime in sorted(files))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def scan_landing(
    lake: Lake,
    tables: Sequence[Table],
    cursor: SensorCursor,
    partitioned: Mapping[str, bool],
    last_day: date | None,
) -> LandingScan:
    """Compare landing with the cursor and, for tables whose listing changed, with their ledgers."""
    touched: dict[str, list[PendingFile]] = defaultdict(list)
    listings: dict[str, str] = {}
    requested: dict[str, dict[str, list[int]]] = {}
    not_yet: list[PendingFile] = []
    for table in tables:
        found = []
        for path, dname in discover_files(lake, table).files:
            st = path.stat()
            found.append((path.relative_to(lake.landing).as_posix(), dname.delivered_date, st))
        if not found:
            continue  # nothing in landing for this table: nothing to compare, no cursor entry
        digest = _listing_digest([(rel, st.st_size, st.st_mtime_ns) for rel, _, st in found])
        if cursor.listings.get(table.name) == digest:  # nothing changed since it was handled
            listings[table.name] = digest
            if table.name in cursor.requested:
                requested[table.name] = cursor.requested[table.name]
            continue
        in_ledger = set(
            read_ledger(lake, table.name).select("source_file", "file_size", "file_mtime_ns").iter_rows()
        )
        before = cursor.requested.get(table.name, {})
        still: dict[str, list[int]] = {}
        waiting = False
        for rel, day, st in found:
            if (rel, st.st_size, st.st_mtime_ns) in in_ledger:
                continue
            pending = PendingFile(table.name, rel, day, st.st_size, st.st_mtime_ns)
            if partitioned.get(table.name) and last_day is not None and (day is None or day > last_day):
                not_yet.append(pending)
                waiting = True
                continue
            sig = [st.st_size, st.st_mtime_ns]
            if list(before.get(rel, ())) != sig:
                touched[table.name].append(pending)
            still[rel] = sig
        if still:
            requested[table.name] = still
        if not waiting:
            listings[table.name] = digest
    return LandingScan(dict(touched), SensorCursor(listings, requested), not_yet)


def _digest(files: Sequence[PendingFile]) -> str:
    text = "\n".join(f"{f.source_file}|{f.file_size}|{f.file_mtime_ns}" for f in files)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def run_requests(
    touched: Mapping[str, Sequence[PendingFile]],
    targets: Mapping[str, SensorTarget],
    first_day: date | None,
) -> tuple[list[dg.RunRequest], list[PendingFile]]:
    """Unpartitioned touched tables: one run; partitioned ones: one run per delivery date.

    Returns the requests and the files left out (dated before the first partition).
    """
    by_date: dict[date, dict[str, list[PendingFile]]] = defaultdict(lambda: defaultdict(list))
    unpartitioned: dict[str, list[PendingFile]] = {}
    skipped: list[PendingFile] = []
    for name, files in sorted(touched.items()):
        if not targets[name].partitioned:
            unpartitioned[name] = list(files)
            continue
        for f in files:
            if f.delivered_date is None or (first_day is not None and f.delivered_date < first_day):
                skipped.append(f)
            else:
                by_date[f.delivered_date][name].append(f)

    requests: list[dg.RunRequest] = []

    def request(tables: Mapping[str, list[PendingFile]], key: str | None) -> dg.RunRequest:
        files = sorted((f for fs in tables.values() for f in fs), key=lambda f: f.source_file)
        keys = sorted({k for t in tables for k in targets[t].keys}, key=lambda k: list(k.path))
        tags = {"rainbow/trigger": LANDING_SENSOR, "rainbow/tables": ",".join(sorted(tables))}
        return dg.RunRequest(
            run_key=f"{key or 'unpartitioned'}:{_digest(files)}",
            job_name=EVENT_PARTITIONS if key else UNPARTITIONED_ASSETS,
            asset_selection=keys,
            partition_key=key,
            tags=tags,
        )

    if unpartitioned:
        requests.append(request(unpartitioned, None))
    for day in sorted(by_date):
        requests.append(request(by_date[day], partition_key(day)))
    return requests, skipped


def load_cursor(cursor: str | None) -> SensorCursor:
    data: Any = json.loads(cursor) if cursor else {}
    if not isinstance(data, dict) or data.get("version") != CURSOR_VERSION:
        return SensorCursor({}, {})  # none yet, or an older form: the ledgers say what is known
    return SensorCursor(dict(data.get("listings", {})), dict(data.get("requested", {})))


def dump_cursor(cursor: SensorCursor) -> str:
    data = {"version": CURSOR_VERSION, "listings": cursor.listings, "requested": cursor.requested}
    return json.dumps(data, sort_keys=True, separators=(",", ":"))


def build_landing_sensor(
    registry: Registry,
    assets: Sequence[dg.AssetsDefinition],
    daily: dg.TimeWindowPartitionsDefinition | None,
    jobs: Jobs,
    minimum_interval_seconds: int = 60,
) -> dg.SensorDefinition:
    """The ``landing_sensor`` over ``assets`` (see the module docstring)."""
    targets = sensor_targets(registry, assets)
    tables = [t.table for t in targets.values()]
    partitioned = {name: t.partitioned for name, t in targets.items()}

    @dg.sensor(
        name=LANDING_SENSOR,
        jobs=[jobs.event_partitions, jobs.unpartitioned_assets],
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=dg.DefaultSensorStatus.STOPPED,
        description=(
            "落地区新文件触发：只运行新交付涉及的表（分区表按交付日每日一次运行）。"
            "New files in landing/: runs only the raw assets they touch (and what depends on them "
            "under the same partitions), one run per delivery date for event tables."
        ),
    )
    def _landing(context: dg.SensorEvaluationContext, lake: LakeResource) -> dg.SensorResult:
        first_key = daily.get_first_partition_key() if daily is not None else None
        last_key = daily.get_last_partition_key() if daily is not None else None
        scan = scan_landing(
            lake.lake,
            tables,
            load_cursor(context.cursor),
            partitioned,
            partition_date(last_key) if last_key else None,
        )
        requests, skipped = run_requests(
            scan.touched, targets, partition_date(first_key) if first_key else None
        )
        for f in scan.not_yet:
            context.log.info(f"{f.source_file}: dated {f.delivered_date}, no partition yet; next tick")
        for f in skipped:
            context.log.warning(f"{f.source_file}: dated {f.delivered_date}, before the first partition")
        cursor = dump_cursor(scan.cursor)
        if not requests:
            return dg.SensorResult(skip_reason=dg.SkipReason("no new file in landing/"), cursor=cursor)
        return dg.SensorResult(run_requests=requests, cursor=cursor)

    return _landing

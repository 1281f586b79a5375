"""The person records' profiles kept between runs (画像分组留存), so a new day groups only its month.

The master elder index collapses every person record to profiles
(:class:`assets.library.identity.ProfileGrouper`): a district year is 16.8 M records in 156
chunks (a table's delivery month, :func:`assets.library.record_cache.person_chunks`), and grouping
them all again each night took ~24 s of the new day's MEI, though only the current month's
chunks had changed. Here the grouping of the *closed* months - every chunk but those of the
newest delivery month - is kept (``library/_cache/profiles/``: the groups and each record's
group, encrypted like the zone) with the signature of every chunk it covers. A run

1. lists the chunks (their kept files' footers only) and takes the kept grouping if every chunk
   it covers is still there with the same signature, and it was made by the same grouping code,
   for the same carried columns and the same steward decisions' records (otherwise it starts
   from nothing: a part delivered again into a closed month, a normalisation change, a new
   decision);
2. adds the closed chunks the kept grouping does not cover, and keeps the grouping again with
   them once they hold more than :data:`PROMOTE_SHARE` of its records (or there was none);
3. adds the newest month's chunks and finishes: the profiles equal grouping every chunk afresh
   (tested), since grouping is associative and the isolating column is in the kept groups.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pyarrow as pa

from assets.library import identity
from assets.library.identity import ProfileBase, Profiled, ProfileGrouper, group_person_records
from assets.library.record_cache import RecordChunk, person_chunks
from assets.library.records import PERSON_RECORD_SCHEMA
from rainbow.io import atomic_path
from rainbow.parquet import file_metadata, read_frame, write_frame
from rainbow.settings import Lake
from schemas.registry import Registry

BASE_STATE = "rainbow.profile_base"
# the closed months not yet kept are grouped each night until they hold this share of the kept
# grouping's records; then it is kept again with them (a district year: every month or two)
PROMOTE_SHARE = 0.1
UNDATED = "undated"


@dataclass(frozen=True)
class KeptGrouping:
    base: ProfileBase
    chunks: dict[str, str]  # chunk name -> signature


@dataclass(frozen=True)
class GroupingRun:
    """What :func:`profile_lake_records` did: chunks taken from the kept grouping, chunks
    grouped, and whether it kept the grouping again (and why it could not use the kept one)."""

    kept_chunks: int
    grouped_chunks: int
    grouped_records: int
    rewritten: bool
    reason: str


def base_folder(lake: Lake) -> Path:
    return lake.library / "_cache" / "profiles"


def base_version(isolate: pl.Series, carry: Sequence[str]) -> str:
    """The grouping code (the identity module's file), the carried columns and the records the
    steward decisions isolate."""
    code = hashlib.sha256(Path(inspect.getfile(identity)).read_bytes()).hexdigest()
    ids = hashlib.sha256("\x1f".join(sorted(isolate.cast(pl.String).to_list())).encode()).hexdigest()
    return hashlib.sha256(repr([code, list(carry), ids]).encode()).hexdigest()[:32]


def read_grouping(
    lake: Lake, version: str, current: dict[str, str | None]
) -> tuple[KeptGrouping | None, str]:
    """The kept grouping if usable with the chunks as they are now (``current``: name ->
    signature, None for a chunk whose kept records are out of date), else None and why."""
    folder = base_folder(lake)
    paths = {name: folder / f"{name}.parquet" for name in ("profiles", "records")}
    if not all(p.exists() for p in paths.values()):
        return None, "no kept grouping"
    try:
        states = {name: json.loads(file_metadata(p, lake)[BASE_STATE]) for name, p in paths.items()}
        if len({s["token"] for s in states.values()}) != 1:
            return None, "kept grouping half written"
        state = states["records"]
        if state["version"] != version:
            return None, "grouping code, carried columns or decisions changed"
        chunks = {str(k): str(v) for k, v in state["chunks"].items()}
        changed = sorted(name for name, sig in chunks.items() if current.get(name) != sig)
        if changed:
            return None, f"{len(changed)} kept chunks changed or gone (e.g. {changed[0]})"
        base = ProfileBase(read_frame(paths["profiles"], lake), read_frame(paths["records"], lake))
    except (OSError, ValueError, KeyError, TypeError, pa.ArrowException):
        return None, "kept grouping unreadable"
    return KeptGrouping(base, chunks), f"kept grouping of {len(chunks)} chunks"


def write_grouping(lake: Lake, base: ProfileBase, version: str, chunks: dict[str, str]) -> None:
    """Two files, one token: a reader takes them only when both carry it."""
    token = uuid.uuid4().hex
    folder = base_folder(lake)
    folder.mkdir(parents=True, exist_ok=True)
    full = json.dumps({"token": token, "version": version, "chunks": dict(sorted(chunks.items()))})
    for name, frame, state in (
        ("profiles", base.profiles, json.dumps({"token": token})),
        ("records", base.records, full),
    ):
        with atomic_path(folder / f"{name}.parquet") as tmp:
            write_frame(frame, tmp, lake, metadata={BASE_STATE: state})


def _signature(chunk: RecordChunk) -> str:
    assert chunk.signature is not None, "a chunk is signed once loaded"
    return chunk.signature


def profile_lake_records(
    lake: Lake,
    registry: Registry,
    decisions: pl.DataFrame | None = None,
    carry: Sequence[str] = ("_delivery_date",),
) -> tuple[Profiled, pl.DataFrame, GroupingRun]:
    """:func:`assets.library.identity.profile_person_records` of every person record in the
    lake, from the kept grouping of the closed months where it is still valid (module docstring)."""
    schema = pl.Schema(PERSON_RECORD_SCHEMA)
    chunks = person_chunks(lake, registry)
    months = [c.month for c in chunks if c.month != UNDATED]
    newest = max(months) if months else None
    runs: list[GroupingRun] = []

    def fill(grouper: ProfileGrouper) -> None:
        version = base_version(grouper.isolate, carry)
        kept, reason = read_grouping(lake, version, {c.name: c.signature for c in chunks})
        covered: dict[str, str] = {}
        base_rows = 0
        if kept is not None:
            grouper.start(kept.base)
            covered, base_rows = kept.chunks, kept.base.records.height
            del kept
        rest = [c for c in chunks if c.name not in covered]
        closed = [c for c in rest if c.month != newest]
        closed_rows = 0
        for chunk in closed:
            frame = chunk.load().cast(schema)
            closed_rows += frame.height
            grouper.add(frame)
        rewrite = bool(closed) and (not covered or closed_rows > PROMOTE_SHARE * base_rows)
        if rewrite:
            signed = {**covered, **{c.name: _signature(c) for c in closed}}
            write_grouping(lake, grouper.snapshot(), version, signed)
        added = closed_rows
        for chunk in rest:
            if chunk.month == newest:
                frame = chunk.load().cast(schema)
                added += frame.height
                grouper.add(frame)
        runs.append(GroupingRun(len(covered), len(rest), added, rewrite, reason))

    profiled, known = group_person_records(fill, decisions, carry, {"_delivery_date": pl.Date()})
    return profiled, known, runs[0]

"""The person records of the master elder index (老年人主索引), kept between runs.

- :func:`person_records` - every staged row that names an elder, as normalised standard person
  records (:mod:`assets.library.records` extracts and normalises them) with their lineage;
- :func:`iter_person_records` / :func:`person_chunks` - the same records one kept chunk (a table's
  delivery month) at a time, so the linkage can collapse them to profiles without holding a
  year of rows at once.

The kept records' version covers the extraction, the normalisation code (``records.py`` and
staging's normalisers: :func:`assets.library.records._normaliser_fingerprint`) and the code
lists. This module is not part of it: a change to how the records are kept does not normalise
every record again.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa

from assets.library.records import (
    PERSON_RECORD_SCHEMA,
    _normaliser_fingerprint,
    _record_select,
    elder_tables,
    normalise_records,
)
from assets.staging.stage import staged_dir
from rainbow.io import atomic_path
from rainbow.parquet import file_metadata, glob_files, read_frame, write_frame
from rainbow.settings import Lake
from schemas.contract import Table
from schemas.registry import Registry, load_registry


def person_records(lake: Lake, registry: Registry) -> pl.DataFrame:
    """Every staged row naming an elder, as standard person records (+ lineage: ``_source_file``,
    ``_row_number``, ``_delivery_date``).

    Only the subject's columns are used: caregivers, volunteers, callers and
    emergency contacts named on the same row are other people. Where a table
    has no birth date or sex column, the ones derived from the validated ID are
    used. ``record_id`` is ``<table>:<_source_file>:<_row_number>``, stable
    across runs because staging keeps the lineage of every row. The records come
    normalised (:func:`normalise_records`: a no-op on rows staging normalised,
    measured on 1.8 M district records, but the linkage must not depend on that),
    so :func:`link_records` takes them with ``normalised=True``. Each table's
    records are kept between runs (:func:`table_chunks`), so a new day reads and
    normalises the new day's staged parts only.
    """
    frames = list(iter_person_records(lake, registry))
    if not frames:
        return pl.DataFrame(schema=PERSON_RECORD_SCHEMA)
    out = pl.concat(frames, how="vertical_relaxed")
    return out.sort("source", "_source_file", "_row_number")


def iter_person_records(lake: Lake, registry: Registry) -> Iterator[pl.DataFrame]:
    """The records of :func:`person_records` (unsorted) one kept chunk at a time: a table's
    delivery month, at most a few hundred thousand rows in a district year."""
    schema = pl.Schema(PERSON_RECORD_SCHEMA)
    for chunk in person_chunks(lake, registry):
        yield chunk.load().cast(schema)


def person_chunks(lake: Lake, registry: Registry) -> list[RecordChunk]:
    """Every elder table's :func:`record_chunks` (not yet read), table by table."""
    return [chunk for table in elder_tables(registry) for chunk in record_chunks(lake, table, registry)]


# the staged parts (path relative to the lake -> [size, mtime_ns]) a table's kept records cover
RECORDS_PARTS = "rainbow.record_parts"


# the extraction the kept records were made with (a code change rebuilds them)
RECORDS_VERSION = "rainbow.record_select"


PART = "_part"


def records_cache(lake: Lake, table: Table | str) -> Path:
    """``library/_cache/person_records/<table>/``: one file per delivery month (``YYYY-MM.parquet``),
    encrypted like the rest of the zone."""
    name = table if isinstance(table, str) else table.name
    return lake.library / "_cache" / "person_records" / name


def records_chunk(part: str) -> str:
    """The cache file a staged part's records are kept in: its delivery month (``date=YYYY-MM-DD``
    folders), else ``undated``."""
    found = re.search(r"date=(\d{4}-\d{2})-\d{2}", part)
    return found.group(1) if found else "undated"


def _codelists_fingerprint(registry: Registry) -> str:
    lists = {name: cl.model_dump(mode="json") for name, cl in sorted(registry.codelists.items())}
    return hashlib.sha256(json.dumps(lists, sort_keys=True, ensure_ascii=False).encode()).hexdigest()[:16]


@dataclass
class RecordChunk:
    """One kept chunk of a table's person records: its delivery month (``YYYY-MM`` or
    ``undated``). ``signature`` names its content - the parts it covers (size and mtime each)
    and the extraction, normalisation and code lists it was made with - and is known without
    reading the records when the kept file is current; otherwise it is None until :meth:`load`
    has read the new parts and rewritten the file."""

    table: str
    month: str
    signature: str | None
    _load: Callable[[], tuple[pl.DataFrame, str]]

    @property
    def name(self) -> str:
        return f"{self.table}/{self.month}"

    def load(self) -> pl.DataFrame:
        """The chunk's normalised records (:data:`PERSON_RECORD_SCHEMA` columns, unsorted)."""
        frame, self.signature = self._load()
        return frame


def _signature(version: str, covered: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps([version, covered], sort_keys=True).encode()).hexdigest()[:32]


def table_chunks(lake: Lake, table: Table, registry: Registry | None = None) -> Iterator[pl.DataFrame]:
    """The normalised person records of one staged table, one delivery month at a time
    (:func:`record_chunks`, each loaded)."""
    for chunk in record_chunks(lake, table, registry):
        yield chunk.load()


def record_chunks(lake: Lake, table: Table, registry: Registry | None = None) -> list[RecordChunk]:
    """The chunks of one staged table's normalised person records, one per delivery month, in
    month order, not yet read.

    A year of daily parts is ~3,000 files, and opening each one costs more than its rows: the
    records are kept in :func:`records_cache`, one file per delivery month, with the size and
    mtime of each part they came from; loading a chunk reads and normalises only the parts that
    are new or changed since, drops the records of parts that are gone, and rewrites the month's
    file only when anything differs (a new day: its month's file, not the year's). The cache
    also records the extraction, the normalisation code and the code lists it was made with (a
    change to any rebuilds it). The result equals reading and normalising every part (same rows;
    callers sort). Listing the chunks reads only the kept files' footers.
    """
    registry = registry or load_registry()
    select = _record_select(table)
    columns = sorted({name for expr in select for name in expr.meta.root_names()})
    made_with = [str(e) for e in select] + [_normaliser_fingerprint(), _codelists_fingerprint(registry)]
    version = hashlib.sha256(repr(made_with).encode()).hexdigest()[:16]
    parts = glob_files(staged_dir(lake, table) / "**" / "*.parquet")
    folder = records_cache(lake, table)
    folder.with_suffix(".parquet").unlink(missing_ok=True)  # the single file of earlier versions
    if not parts:
        return []
    root = lake.root.resolve()
    rel = {p: p.resolve().relative_to(root).as_posix() for p in parts}
    chunks: dict[str, list[Path]] = {}
    for p in parts:
        chunks.setdefault(records_chunk(rel[p]), []).append(p)
    for stale in folder.glob("*.parquet") if folder.exists() else ():
        if stale.stem not in chunks:
            stale.unlink()
    out = []
    for month, chunk_parts in sorted(chunks.items()):
        cache = folder / f"{month}.parquet"
        sigs = {rel[p]: [st.st_size, st.st_mtime_ns] for p in chunk_parts if (st := p.stat())}
        covered = _kept_parts(lake, cache, version)
        current = covered is not None and covered == sigs

        def load(
            cache: Path = cache, chunk_parts: list[Path] = chunk_parts, sigs: dict[str, Any] = sigs
        ) -> tuple[pl.DataFrame, str]:
            return _chunk_records(lake, cache, chunk_parts, rel, sigs, select, columns, version, registry)

        out.append(RecordChunk(table.name, month, _signature(version, sigs) if current else None, load))
    return out


def _kept_parts(lake: Lake, cache: Path, version: str) -> dict[str, Any] | None:
    """The parts a kept month's file covers (None: no file, another version, unreadable)."""
    if not cache.exists():
        return None
    try:
        meta = file_metadata(cache, lake)
        if meta.get(RECORDS_VERSION) != version:
            return None
        covered = json.loads(meta.get(RECORDS_PARTS, "{}"))
    except (OSError, ValueError, pa.ArrowException):
        return None
    return covered if isinstance(covered, dict) else None


def _chunk_records(
    lake: Lake,
    cache: Path,
    parts: list[Path],
    rel: dict[Path, str],
    sigs: dict[str, Any],
    select: list[pl.Expr],
    columns: list[str],
    version: str,
    registry: Registry,
) -> tuple[pl.DataFrame, str]:
    """One month of :func:`record_chunks`: kept records of unchanged parts, new parts read; and
    the signature of what the kept file now covers."""
    kept, covered = None, {}
    if cache.exists():
        try:
            meta = file_metadata(cache, lake)
            if meta.get(RECORDS_VERSION) == version:
                covered = json.loads(meta.get(RECORDS_PARTS, "{}"))
                kept = read_frame(cache, lake)
        except (OSError, ValueError, pa.ArrowException):  # unreadable: read every part again
            kept, covered = None, {}
    valid = {r for r, sig in covered.items() if sigs.get(r) == sig}
    todo = [p for p in parts if rel[p] not in valid]
    fresh = [
        read_frame(p, lake, columns=columns).lazy().select(select).with_columns(pl.lit(rel[p]).alias(PART))
        for p in todo
    ]
    frames = (
        [normalise_records(pl.concat([f.collect() for f in fresh], how="vertical_relaxed"), registry)]
        if fresh
        else []
    )
    if kept is not None and valid:
        frames.insert(0, kept.filter(pl.col(PART).is_in(list(valid))))
    records = pl.concat(frames, how="vertical_relaxed") if len(frames) > 1 else frames[0]
    keep = {r: sigs[r] for r in sorted(valid | {rel[p] for p in todo})}
    if todo or valid != set(covered):
        cache.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(cache) as tmp:
            write_frame(
                records,
                tmp,
                lake,
                metadata={RECORDS_PARTS: json.dumps(keep), RECORDS_VERSION: version},
            )
    return records.drop(PART), _signature(version, keep)

"""landing -> raw: one Parquet part per new delivered file, with lineage.

Pure functions, no Dagster. :func:`ingest_table` discovers a table's files from
its contract's path template (optionally only those of some delivery dates: one
run per partition, or a range of them), skips what the ledger already knows (by
checksum, across every delivery date), reads each new file, and writes

* ``<lake>/raw/<table>/<file-stem>-<sha8>.parquet``: the rows, every field as text,
  plus ``_extra``, ``_source_file``, ``_row_number``, ``_file_sha256``, ``_ingested_at``;
* ``<lake>/raw/<table>/_broken/<file-stem>-<sha8>.parquet``: rows that could not be
  parsed (``_raw_text``, ``_error``) with the same lineage, only when there are any;

each atomically, then the ledger (the per-day ledger files of the dates that got
an entry; see :mod:`assets.ingest.ledger`). Re-running with no new file writes
nothing. :func:`pending_deliveries` lists, cheaply (path, size, mtime), the files
the ledger does not know yet: what a sensor or a nightly build should ingest.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Collection, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, Literal

import polars as pl

from assets.ingest.ledger import LedgerEntry, read_ledger, save_entries
from assets.ingest.readers import ERROR, EXTRA, RAW_TEXT, ROW_NUMBER, Delivered, ReadError, read_delivery
from rainbow.filefacts import row_counts
from rainbow.io import atomic_path, sha256_file
from rainbow.parquet import row_count, write_frame
from rainbow.settings import Lake
from rainbow.workers import release_memory, workers
from schemas.contract import Table

SOURCE_FILE = "_source_file"
FILE_SHA256 = "_file_sha256"
INGESTED_AT = "_ingested_at"

INGESTED_AT_TYPE = pl.Datetime("us", "UTC")
BROKEN_DIR = "_broken"

FileStatus = Literal["ingested", "duplicate", "failed"]


# Where every row of every zone came from (raw parts, staged rows, quarantine).
LINEAGE_SCHEMA: dict[str, pl.DataType] = {
    SOURCE_FILE: pl.String(),
    ROW_NUMBER: pl.Int64(),
    FILE_SHA256: pl.String(),
    INGESTED_AT: INGESTED_AT_TYPE,
}


def raw_schema(table: Table) -> dict[str, pl.DataType]:
    """Column order and types of a raw part of ``table``."""
    schema: dict[str, pl.DataType] = {c.name: pl.String() for c in table.columns}
    schema[EXTRA] = pl.String()
    return {**schema, **LINEAGE_SCHEMA}


BROKEN_RAW_SCHEMA: dict[str, pl.DataType] = {
    SOURCE_FILE: pl.String(),
    ROW_NUMBER: pl.Int64(),
    RAW_TEXT: pl.String(),
    ERROR: pl.String(),
    FILE_SHA256: pl.String(),
    INGESTED_AT: INGESTED_AT_TYPE,
}


# --------------------------------------------------------------------------- discovery

_PLACEHOLDER = re.compile(r"\{(\w+)(?::([^}]*))?\}")
_STRFTIME_RE = {
    "Y": r"\d{4}",
    "y": r"\d{2}",
    "m": r"\d{2}",
    "d": r"\d{2}",
    "H": r"\d{2}",
    "M": r"\d{2}",
    "S": r"\d{2}",
    "j": r"\d{3}",
    "-m": r"\d{1,2}",
    "-d": r"\d{1,2}",
}


def _strftime_regex(fmt: str) -> str:
    out: list[str] = []
    i = 0
    while i < len(fmt):
        if fmt[i] == "%":
            code = fmt[i + 1 : i + 3] if fmt[i + 1 : i + 2] == "-" else fmt[i + 1 : i + 2]
            if code not in _STRFTIME_RE:
                raise ValueError(f"unsupported date directive %{code} in path template")
            out.append(_STRFTIME_RE[code])
            i += 1 + len(code)
        else:
            out.append(re.escape(fmt[i]))
            i += 1
    return "".join(out)


def template_glob(template: str) -> str:
    """The template as a glob relative to landing/: every placeholder becomes ``*``."""
    parts = _PLACEHOLDER.split(template)
    # split() with two groups yields: literal, name, fmt, literal, name, fmt, ..., literal
    literals = parts[::3]
    return "*".join(re.sub(r"([\[\]*?])", r"[\1]", lit) for lit in literals)


def template_regex(template: str) -> re.Pattern[str]:
    """A full-match regex of the template's file paths.

    ``{date:FMT}`` becomes a group ``date`` matching FMT exactly; any other
    placeholder (``{street}``) a non-empty group without ``/``. After the last
    placeholder an optional ``suffix`` (no ``/``) is allowed, so a resend such
    as ``meal_txn_20241105_重发.csv`` or ``..._20241105 (1).csv`` is seen (and
    then skipped as a duplicate by checksum if its bytes are known).
    """
    out: list[str] = []
    pos = 0
    matches = list(_PLACEHOLDER.finditer(template))
    for n, m in enumerate(matches):
        out.append(re.escape(template[pos : m.start()]))
        name, fmt = m.group(1), m.group(2)
        if name == "date":
            out.append(f"(?P<date>{_strftime_regex(fmt or '%Y%m%d')})")
        else:
            out.append(f"(?P<{name}>[^/]+?)")
        if n == len(matches) - 1:
            out.append("(?P<suffix>[^/]*?)")
        pos = m.end()
    out.append(re.escape(template[pos:]))
    return re.compile("".join(out))


@dataclass(frozen=True)
class DeliveryName:
    """What a delivered file's path says, per its template."""

    delivered_date: date | None
    fields: Mapping[str, str]
    suffix: str


def parse_delivery_name(template: str, relative: str) -> DeliveryName | None:
    """Match a path relative to landing/ against ``template``; None when it does not fit."""
    m = template_regex(template).fullmatch(relative)
    if m is None:
        return None
    groups = {k: v for k, v in m.groupdict().items() if v is not None}
    delivered: date | None = None
    fmt_match = re.search(r"\{date:([^}]*)\}", template)
    if "date" in groups:
        fmt = (fmt_match.group(1) if fmt_match else "%Y%m%d").replace("%-", "%")
        try:
            delivered = datetime.strptime(groups["date"], fmt).date()
        except ValueError:
            return None  # e.g. month 13: not a delivery name
    suffix = groups.pop("suffix", "")
    groups.pop("date", None)
    return DeliveryName(delivered, groups, suffix)


@dataclass(frozen=True)
class Discovered:
    files: list[tuple[Path, DeliveryName]]
    unmatched: list[str]  # relative to landing/: matched the glob but not the template


def discover_files(lake: Lake, table: Table) -> Discovered:
    """The table's landing files, canonical names first within a delivery date."""
    template = table.delivery.path
    found: list[tuple[Path, DeliveryName]] = []
    unmatched: list[str] = []
    if lake.landing.is_dir():
        for path in lake.landing.glob(template_glob(template)):
            if not path.is_file():
                continue
            rel = path.relative_to(lake.landing).as_posix()
            name = parse_delivery_name(template, rel)
            if name is None:
                unmatched.append(rel)
            else:
                found.append((path, name))
    found.sort(key=lambda f: (f[1].delivered_date or date.min, f[1].suffix != "", f[0].name))
    return Discovered(found, sorted(unmatched))


# --------------------------------------------------------------------------- reports


@dataclass(frozen=True)
class FileReport:
    """One landing file seen for the first time in this ingest."""

    source_file: str
    file_sha256: str
    status: FileStatus
    delivered_date: date | None = None  # from the file name
    delivered_rows: int = 0  # rows the reader found in the file
    raw_rows: int = 0  # rows in the written raw part (read back from disk)
    broken_rows: int = 0  # rows in the written _broken part (read back from disk)
    duplicate_of: str | None = None
    raw_part: str | None = None
    broken_part: str | None = None
    encoding: str | None = None
    header_row: int | None = None
    declared_total: int | None = None
    extra_columns: tuple[str, ...] = ()
    missing_columns: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    error: str | None = None

    @property
    def reconciles(self) -> bool:
        """Delivered rows = raw rows + broken rows (duplicates carry none; failures never reconcile)."""
        if self.status == "failed":
            return False
        return self.delivered_rows == self.raw_rows + self.broken_rows


@dataclass(frozen=True)
class IngestReport:
    table: str
    files: tuple[FileReport, ...] = ()
    known_files: int = 0  # files already in the ledger (same path, same checksum)
    unmatched: tuple[str, ...] = ()  # files near the template that do not fit it
    healed: tuple[str, ...] = ()  # known files whose missing parts were rewritten
    raw_rows_total: int = 0  # rows in all raw parts of the table after this ingest
    # the delivery dates this ingest was limited to (None: every file of the table)
    dates: tuple[date, ...] | None = None
    # per date in ``dates``: files already known, and raw rows of all the date's ingested files
    known_by_date: tuple[tuple[date, int], ...] = ()
    rows_by_date: tuple[tuple[date, int], ...] = ()

    def _of(self, status: FileStatus) -> list[FileReport]:
        return [f for f in self.files if f.status == status]

    @property
    def ingested(self) -> list[FileReport]:
        return self._of("ingested")

    @property
    def duplicates(self) -> list[FileReport]:
        return self._of("duplicate")

    @property
    def failed(self) -> list[FileReport]:
        return self._of("failed")

    @property
    def delivered_rows(self) -> int:
        return sum(f.delivered_rows for f in self.ingested)

    @property
    def raw_rows(self) -> int:
        return sum(f.raw_rows for f in self.ingested)

    @property
    def broken_rows(self) -> int:
        return sum(f.broken_rows for f in self.ingested)

    @property
    def reconciles(self) -> bool:
        return all(f.reconciles for f in self.files if f.status == "ingested")

    @property
    def rows_in_dates(self) -> int:
        """Raw rows of every file ingested (now or before) under the dates of this ingest."""
        return sum(n for _, n in self.rows_by_date)

    def per_date(self) -> list[dict[str, object]]:
        """One record per delivery date of this ingest (only when it was limited to dates)."""
        if self.dates is None:
            return []
        known, rows = dict(self.known_by_date), dict(self.rows_by_date)
        out: list[dict[str, object]] = []
        for day in self.dates:
            files = [f for f in self.files if f.delivered_date == day]
            ingested = [f for f in files if f.status == "ingested"]
            out.append(
                {
                    "date": day.isoformat(),
                    "files_ingested": len(ingested),
                    "duplicates_skipped": sum(f.status == "duplicate" for f in files),
                    "files_failed": sum(f.status == "failed" for f in files),
                    "files_already_known": known.get(day, 0),
                    "rows_ingested": sum(f.raw_rows for f in ingested),
                    "broken_rows": sum(f.broken_rows for f in ingested),
                    "date_rows": rows.get(day, 0),
                }
            )
        return out


# --------------------------------------------------------------------------- parts


def table_dir(lake: Lake, table: Table | str) -> Path:
    return lake.raw / (table if isinstance(table, str) else table.name)


def part_name(source_file: str, sha256: str) -> str:
    return f"{Path(source_file).stem}-{sha256[:8]}.parquet"


def raw_part_paths(lake: Lake, table: Table | str) -> list[Path]:
    """Every raw part of the table (what the ``raw.<table>`` view reads)."""
    return sorted(table_dir(lake, table).glob("*.parquet"))


def broken_part_paths(lake: Lake, table: Table | str) -> list[Path]:
    return sorted((table_dir(lake, table) / BROKEN_DIR).glob("*.parquet"))


def _utc(now: datetime) -> datetime:
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be timezone-aware (e.g. datetime.now(UTC))")
    return now.astimezone(UTC)


def _write_parts(
    lake: Lake, table: Table, delivered: Delivered, source_file: str, sha: str, ingested_at: datetime
) -> tuple[Path, Path | None]:
    """Write the raw part (and the broken part when needed) atomically; return their paths."""
    lineage = [
        pl.lit(source_file, pl.String()).alias(SOURCE_FILE),
        pl.lit(sha, pl.String()).alias(FILE_SHA256),
        pl.lit(ingested_at, INGESTED_AT_TYPE).alias(INGESTED_AT),
    ]
    name = part_name(source_file, sha)
    broken_path: Path | None = None
    if delivered.broken.height:
        broken_path = table_dir(lake, table) / BROKEN_DIR / name
        broken = (
            delivered.broken.with_columns(lineage)
            .select(list(BROKEN_RAW_SCHEMA))
            .cast(pl.Schema(BROKEN_RAW_SCHEMA))
        )
        with atomic_path(broken_path) as tmp:
            write_frame(broken, tmp, lake)
    raw_path = table_dir(lake, table) / name
    schema = raw_schema(table)
    rows = delivered.rows.with_columns(lineage).select(list(schema)).cast(pl.Schema(schema))
    with atomic_path(raw_path) as tmp:
        write_frame(rows, tmp, lake)
    return raw_path, broken_path


def _rel(lake: Lake, path: Path | None) -> str | None:
    return None if path is None else path.relative_to(lake.root).as_posix()


# --------------------------------------------------------------------------- ingest


# a file's report, and its ledger entry (None: a file that could not be read, tried again next run)
_Slot = tuple[FileReport, LedgerEntry | None]


def _ingest_file(
    lake: Lake,
    table: Table,
    path: Path,
    rel: str,
    sha: str,
    dname: DeliveryName,
    st: os.stat_result,
    ingested_at: datetime,
) -> _Slot:
    """Read a new landing file and write its raw (and broken) part; runs on a worker thread."""
    try:
        delivered = read_delivery(path, table)
    except ReadError as exc:
        return FileReport(rel, sha, "failed", delivered_date=dname.delivered_date, error=str(exc)), None
    raw_path, broken_path = _write_parts(lake, table, delivered, rel, sha, ingested_at)
    report = FileReport(
        source_file=rel,
        file_sha256=sha,
        status="ingested",
        delivered_date=dname.delivered_date,
        delivered_rows=delivered.records_seen,
        raw_rows=row_count(raw_path, lake),
        broken_rows=row_count(broken_path, lake) if broken_path else 0,
        raw_part=_rel(lake, raw_path),
        broken_part=_rel(lake, broken_path),
        encoding=delivered.encoding,
        header_row=delivered.header_row,
        declared_total=delivered.declared_total,
        extra_columns=delivered.extra_columns,
        missing_columns=delivered.missing_columns,
        notes=delivered.notes,
    )
    entry = LedgerEntry(
        file_sha256=sha,
        source_file=rel,
        delivered_date=dname.delivered_date,
        status="ingested",
        ingested_at=ingested_at,
        delivered_rows=report.delivered_rows,
        declared_total=report.declared_total,
        rows=report.raw_rows,
        broken_rows=report.broken_rows,
        raw_part=report.raw_part,
        broken_part=report.broken_part,
        encoding=report.encoding,
        header_row=report.header_row,
        extra_columns=report.extra_columns,
        missing_columns=report.missing_columns,
        file_size=st.st_size,
        file_mtime_ns=st.st_mtime_ns,
    )
    return report, entry


def _settle(slot: _Slot, ingested_sha: dict[str, tuple[str, date | None, int | None]]) -> None:
    """Note an ingested file as the first with its bytes (later copies are duplicates of it)."""
    report, _ = slot
    if report.status == "ingested":
        ingested_sha.setdefault(
            report.file_sha256, (report.source_file, report.delivered_date, report.delivered_rows)
        )


def ingest_table(
    lake: Lake, table: Table, now: datetime, dates: Collection[date] | None = None
) -> IngestReport:
    """Ingest every new landing file of ``table`` into raw; see the module docstring.

    ``dates``: only files delivered on these dates (the dates in their names),
    re-deliveries such as ``..._20241105(1).csv`` included; a file whose name has
    no date is then left alone. Duplicates are still found against the ledger
    of every date. A file that cannot be read at all (undecodable, no header
    row, a dump that is not JSON) is reported as ``failed`` and left out of the
    ledger, so it is tried again on the next run. ``now`` (timezone-aware)
    becomes ``_ingested_at`` of the files first ingested by this call.
    """
    ingested_at = _utc(now)
    scope = None if dates is None else tuple(sorted(set(dates)))
    ledger = read_ledger(lake, table.name)
    known_pairs: dict[tuple[str, str], dict[str, Any]] = {}
    last_seen: dict[str, dict[str, Any]] = {}
    for r in ledger.iter_rows(named=True):
        known_pairs[(r["source_file"], r["file_sha256"])] = r
        last_seen[r["source_file"]] = r
    # checksum -> (source_file, delivered_date, delivered_rows) of the first ingested file with those bytes
    ingested_sha: dict[str, tuple[str, date | None, int | None]] = {}
    ingested_first = ledger.filter(pl.col("status") == "ingested").sort(
        ["ingested_at", "source_file"], maintain_order=True
    )
    for r in ingested_first.iter_rows(named=True):
        ingested_sha.setdefault(
            r["file_sha256"], (r["source_file"], r["delivered_date"], r["delivered_rows"])
        )

    discovered = discover_files(lake, table)
    # one slot per file in discovery order: its (report, ledger entry), or the reading of a new
    # file running on a worker thread (resolved in order below, so the ledger is as one by one)
    slots: list[_Slot | Future[_Slot]] = []
    inflight: dict[str, Future[_Slot]] = {}  # checksum -> the reading of its first new file
    running: list[Future[_Slot]] = []
    healed: list[str] = []
    known: Counter[date | None] = Counter()
    width = workers()
    with ThreadPoolExecutor(max_workers=width, thread_name_prefix="rainbow-ingest") as pool:
        for path, dname in discovered.files:
            if scope is not None and dname.delivered_date not in scope:
                continue
            rel = path.relative_to(lake.landing).as_posix()
            st = path.stat()
            prev = last_seen.get(rel)
            if (
                prev is not None
                and prev["file_size"] == st.st_size
                and prev["file_mtime_ns"] == st.st_mtime_ns
            ):
                sha = str(prev["file_sha256"])  # same path, size and mtime: the bytes we hashed before
            else:
                sha = sha256_file(path)

            seen = known_pairs.get((rel, sha))
            if seen is not None:
                known[dname.delivered_date] += 1
                if seen["status"] == "ingested" and _parts_missing(lake, seen):
                    delivered = read_delivery(path, table)
                    _write_parts(lake, table, delivered, rel, sha, seen["ingested_at"])
                    healed.append(rel)
                continue

            if sha in inflight:  # the same bytes are being read for an earlier file: wait for it
                _settle(inflight.pop(sha).result(), ingested_sha)
            first = ingested_sha.get(sha)
            if first is not None and not _empty_delivery_of_another_day(first, dname):
                original = first[0]
                report = FileReport(
                    rel, sha, "duplicate", delivered_date=dname.delivered_date, duplicate_of=original
                )
                entry = LedgerEntry(
                    file_sha256=sha,
                    source_file=rel,
                    delivered_date=dname.delivered_date,
                    status="duplicate",
                    ingested_at=ingested_at,
                    duplicate_of=original,
                    file_size=st.st_size,
                    file_mtime_ns=st.st_mtime_ns,
                )
                slots.append((report, entry))
                known_pairs[(rel, sha)] = {"status": "duplicate"}
                continue

            if width <= 1:  # one by one in this thread, as RAINBOW_WORKERS=1 promises
                done = _ingest_file(lake, table, path, rel, sha, dname, st, ingested_at)
                _settle(done, ingested_sha)
                slots.append(done)
                continue
            running = [f for f in running if not f.done()]
            if len(running) >= width:  # at most `width` files in memory at once
                wait(running, return_when=FIRST_COMPLETED)
            reading = pool.submit(_ingest_file, lake, table, path, rel, sha, dname, st, ingested_at)
            slots.append(reading)
            running.append(reading)
            inflight[sha] = reading

        reports: list[FileReport] = []
        entries: list[LedgerEntry] = []
        for slot in slots:
            done = slot.result() if isinstance(slot, Future) else slot
            _settle(done, ingested_sha)
            reports.append(done[0])
            if done[1] is not None:
                entries.append(done[1])
    release_memory()  # the reading threads' heap arenas

    if entries:
        save_entries(lake, table.name, entries, by_day=table.delivery.partitioned)
    rows_by_date: tuple[tuple[date, int], ...] = ()
    if scope is not None:
        rows: Counter[date] = Counter()
        for r in ingested_first.iter_rows(named=True):
            rows[r["delivered_date"]] += r["rows"] or 0
        for e in entries:
            if e.status == "ingested" and e.delivered_date is not None:
                rows[e.delivered_date] += e.rows or 0
        rows_by_date = tuple((d, rows[d]) for d in scope)
    return IngestReport(
        table=table.name,
        files=tuple(reports),
        known_files=sum(known.values()),
        unmatched=tuple(discovered.unmatched),
        healed=tuple(healed),
        # From the ledger, not by opening every part: the blocking `reconciles` check holds it to disk.
        raw_rows_total=int(ingested_first["rows"].sum() or 0)
        + sum(e.rows or 0 for e in entries if e.status == "ingested"),
        dates=scope,
        known_by_date=tuple((d, known[d]) for d in scope) if scope is not None else (),
        rows_by_date=rows_by_date,
    )


@dataclass(frozen=True)
class PendingFile:
    """A landing file of a table that the ledger does not know under its path, size and mtime."""

    table: str
    source_file: str  # relative to landing/
    delivered_date: date | None
    file_size: int
    file_mtime_ns: int


def pending_deliveries(lake: Lake, table: Table, ledger: pl.DataFrame | None = None) -> list[PendingFile]:
    """The table's landing files not in its ledger, judged by (path, size, mtime) only: no hashing.

    A file listed here is either new, changed, touched (same bytes, new mtime:
    the ingest then finds it known by checksum) or failed to read before.
    """
    known = ledger if ledger is not None else read_ledger(lake, table.name)
    seen = set(known.select("source_file", "file_size", "file_mtime_ns").iter_rows())
    out: list[PendingFile] = []
    for path, dname in discover_files(lake, table).files:
        rel = path.relative_to(lake.landing).as_posix()
        st = path.stat()
        if (rel, st.st_size, st.st_mtime_ns) not in seen:
            out.append(PendingFile(table.name, rel, dname.delivered_date, st.st_size, st.st_mtime_ns))
    return out


def _empty_delivery_of_another_day(first: tuple[str, date | None, int | None], name: DeliveryName) -> bool:
    """Identical bytes are a duplicate, except a header-only file under another delivery date.

    A system with nothing to report on a day still delivers its (header-only)
    file, byte-identical to every other empty day's: that is that day's
    delivery, not a resend. It holds no row, so ingesting it doubles nothing.
    """
    _, first_date, first_rows = first
    return first_rows == 0 and name.suffix == "" and name.delivered_date != first_date


def _parts_missing(lake: Lake, entry: Mapping[str, object]) -> bool:
    for key in ("raw_part", "broken_part"):
        rel = entry.get(key)
        if isinstance(rel, str) and not (lake.root / rel).exists():
            return True
    return False


# --------------------------------------------------------------------------- reconciliation


@dataclass(frozen=True)
class Reconciliation:
    """Ledger vs. what is on disk, for every file the ledger says was ingested."""

    table: str
    files_checked: int
    mismatches: tuple[dict[str, object], ...]  # files whose parts do not add up
    orphan_parts: tuple[str, ...]  # parts in raw/<table>/ the ledger does not know
    declared_total_mismatches: tuple[dict[str, object], ...]  # JSON dumps: total != records

    @property
    def passed(self) -> bool:
        return not self.mismatches and not self.orphan_parts


def reconcile_table(lake: Lake, table: Table | str) -> Reconciliation:
    """Check delivered rows = raw rows + broken rows for every ingested file, from the parts on disk."""
    name = table if isinstance(table, str) else table.name
    ledger = read_ledger(lake, name).filter(pl.col("status") == "ingested")
    mismatches: list[dict[str, object]] = []
    declared: list[dict[str, object]] = []
    referenced: set[str] = set()
    # footers are read only for parts written since the last check (rainbow.filefacts)
    parts = [
        path
        for rel in ledger.select(pl.concat_list("raw_part", "broken_part")).to_series().explode().drop_nulls()
        if (path := lake.root / rel).exists()
    ]
    rows_of = dict(zip(parts, row_counts(lake, parts), strict=True))
    for r in ledger.iter_rows(named=True):
        raw_rel, broken_rel = r["raw_part"], r["broken_part"]
        referenced.update(p for p in (raw_rel, broken_rel) if p)
        raw_path = lake.root / raw_rel if raw_rel else None
        broken_path = lake.root / broken_rel if broken_rel else None
        problems: list[str] = []
        raw_rows = broken_rows = 0
        if raw_path is None or not raw_path.exists():
            problems.append("raw part missing")
        else:
            raw_rows = rows_of[raw_path]
        if broken_path is not None:
            if broken_path.exists():
                broken_rows = rows_of[broken_path]
            else:
                problems.append("broken part missing")
        delivered = r["delivered_rows"]
        if delivered is None or delivered != raw_rows + broken_rows:
            problems.append(f"delivered {delivered} != raw {raw_rows} + broken {broken_rows}")
        if problems:
            mismatches.append(
                {
                    "source_file": r["source_file"],
                    "delivered_rows": delivered,
                    "raw_rows": raw_rows,
                    "broken_rows": broken_rows,
                    "problem": "; ".join(problems),
                }
            )
        total = r["declared_total"]
        if total is not None and delivered is not None and total != delivered:
            declared.append({"source_file": r["source_file"], "declared_total": total, "records": delivered})
    on_disk = [*raw_part_paths(lake, name), *broken_part_paths(lake, name)]
    orphans = sorted(rel for p in on_disk if (rel := p.relative_to(lake.root).as_posix()) not in referenced)
    return Reconciliation(
        table=name,
        files_checked=ledger.height,
        mismatches=tuple(mismatches),
        orphan_parts=tuple(orphans),
        declared_total_mismatches=tuple(declared),
    )


def worth_a_look(f: FileReport) -> bool:
    """Anything a steward should look at: not a plain, clean ingest."""
    return (
        f.status != "ingested" or f.broken_rows > 0 or bool(f.notes or f.extra_columns or f.missing_columns)
    )


def summarise(report: IngestReport, limit: int = 50) -> str:
    """Markdown table of the per-file counts of one ingest.

    An ingest over several delivery dates (a ranged run, whose metadata Dagster
    stores once per date) lists only the files worth a look - duplicates,
    failures, broken rows, unexpected columns - and counts the clean ones.
    """
    several_days = report.dates is not None and len(report.dates) > 1
    shown = [f for f in report.files if worth_a_look(f)] if several_days else list(report.files)
    clean = len(report.files) - len(shown)
    lines = [
        "| file | status | delivered | raw | broken | encoding | header row | notes |",
        "|---|---|---:|---:|---:|---|---:|---|",
    ]
    for f in shown[:limit]:
        notes: list[str] = list(f.notes)
        if f.duplicate_of:
            notes.append(f"duplicate of {f.duplicate_of}")
        if f.extra_columns:
            notes.append("extra columns kept in _extra: " + ", ".join(f.extra_columns))
        if f.missing_columns:
            notes.append("missing columns (null): " + ", ".join(f.missing_columns))
        if f.error:
            notes.append(f"ERROR: {f.error}")
        cells: Sequence[object] = (
            f"`{f.source_file}`",
            f.status,
            f.delivered_rows if f.status == "ingested" else "",
            f.raw_rows if f.status == "ingested" else "",
            f.broken_rows if f.status == "ingested" else "",
            f.encoding or "",
            f.header_row if f.header_row is not None else "",
            "; ".join(notes).replace("|", "\\|"),
        )
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    if len(shown) > limit:
        lines.append(f"\n… and {len(shown) - limit} more files (see the ingest ledger).")
    if not shown:
        lines = []
    if clean:
        lines.append(
            f"\n{clean} file(s) ingested cleanly (no broken row, columns as declared): "
            "see the per-date counts and `raw.ingest_ledger`."
        )
    if not report.files:
        lines = ["No new file in landing/ for this table."]
    if report.unmatched:
        lines.append(
            "\nFiles next to the template that do not fit it (not ingested): " + ", ".join(report.unmatched)
        )
    return "\n".join(lines).strip("\n")

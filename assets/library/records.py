"""Person records for the master elder index (老年人主索引): every staged row that names an elder.

- :func:`person_records` - every such row in the standard person-record columns
  (``STANDARD_COLUMNS``), normalised, with its lineage;
- :func:`iter_person_records` - the same records one cached chunk (a table's delivery month) at a
  time, so the linkage can collapse them to profiles without holding a year of rows at once;
- :func:`normalise_records` - the staging normalisers (``assets.staging.normalise``)
  applied to a person-record table from anywhere (a steward's CSV, an API).

The normalised records are kept between runs (:func:`table_chunks`); the cache's version covers
this module and staging's normalisers, so a change to the linkage does not normalise them again.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa

from assets.staging.normalise import Rule, rule_for, with_clean_texts
from assets.staging.stage import staged_dir
from rainbow.io import atomic_path
from rainbow.parquet import file_metadata, glob_files, read_frame, write_frame
from rainbow.settings import Lake
from schemas.contract import Column, Delivery, Table
from schemas.registry import Registry, load_registry

STANDARD_COLUMNS = (
    "record_id",
    "source",
    "name",
    "sex",
    "birth_date",
    "id_number",
    "other_id",
    "phone",
    "address",
    "street",
)
RECORD_SCHEMA: dict[str, pl.DataType] = {
    "record_id": pl.String(),
    "source": pl.String(),
    "name": pl.String(),
    "sex": pl.String(),
    "birth_date": pl.Date(),
    "id_number": pl.String(),
    "other_id": pl.String(),
    "phone": pl.String(),
    "address": pl.String(),
    "street": pl.String(),
}
# Tables whose `name` column is a person other than an elder.
NON_ELDER_TABLES: dict[str, str] = {
    "caregivers": "the workforce register (护理员): people who serve elders, not elders",
}
# Identifiers an elder carries in another register, compared as `other_id`
# (written `<column>:<value>`, so numbers of different registers never compare).
OTHER_ID_COLUMNS = ("platform_elder_id", "senior_card_no")


# ------------------------------------------------------------------ records


# ``record_id`` is ``<table>:<_source_file>:<_row_number>`` (:func:`_record_select` writes it);
# this reads it back (a file name may hold ':' or a newline; the table name and row may not)
RECORD_ID_PARTS = r"(?s)^([^:]*):(.*):(-?\d+)$"


def elder_tables(registry: Registry) -> list[Table]:
    """Staged tables whose rows name an elder as their subject (a ``name`` person column)."""
    out = []
    for _, table in registry.tables():
        if table.name in NON_ELDER_TABLES or "name" not in table.column_names:
            continue
        if table.column("name").semantic == "person_name":
            out.append(table)
    return out


def _record_select(table: Table) -> list[pl.Expr]:
    """Staged columns of ``table`` -> the standard person-record columns (subject only)."""
    names = set(table.column_names)

    def has(col: str, *semantics: str) -> bool:
        return col in names and (not semantics or table.column(col).semantic in semantics)

    null = pl.lit(None, dtype=pl.String)
    sex: list[pl.Expr] = []
    if has("sex") and table.column("sex").codelist == "sex":
        sex.append(pl.col("sex"))
    birth: list[pl.Expr] = [pl.col("birth_date")] if has("birth_date") else []
    if has("id_number", "resident_id"):
        sex.append(pl.col("id_sex"))
        birth.append(pl.col("id_birth_date"))
    other = [pl.format("{}:{}", pl.lit(c), pl.col(c)) for c in OTHER_ID_COLUMNS if c in names]
    address = next((c.name for c in table.columns if c.semantic == "address"), None)
    return [
        pl.format("{}:{}:{}", pl.lit(table.name), pl.col("_source_file"), pl.col("_row_number")).alias(
            "record_id"
        ),
        pl.lit(table.name).alias("source"),
        pl.col("name"),
        (pl.coalesce(sex) if sex else null).alias("sex"),
        (pl.coalesce(birth) if birth else pl.lit(None, dtype=pl.Date)).alias("birth_date"),
        (pl.col("id_number") if has("id_number", "resident_id") else null).alias("id_number"),
        (pl.coalesce(other) if other else null).alias("other_id"),
        (pl.col("phone") if has("phone", "phone", "mobile_phone") else null).alias("phone"),
        (pl.col(address) if address else null).alias("address"),
        (pl.col("street") if has("street", "street") else null).alias("street"),
        pl.col("_source_file"),
        pl.col("_row_number"),
        pl.col("_delivery_date"),
    ]


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


PERSON_RECORD_SCHEMA: dict[str, pl.DataType] = {
    **RECORD_SCHEMA,
    "_source_file": pl.String(),
    "_row_number": pl.Int64(),
    "_delivery_date": pl.Date(),
}


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


@functools.cache
def _normaliser_fingerprint() -> str:
    """The code of the normalisation (staging's normalisers and this module): a change to either
    file makes the kept records stale. Whole files, not ``inspect.getsource`` of the functions:
    that reads the file as it is now at the line numbers of the code as imported, so an edit
    above them gave another fingerprint for the same code (measured: a bench's new day
    normalised every record again)."""
    files = (inspect.getfile(rule_for), __file__)
    return hashlib.sha256(b"".join(Path(f).read_bytes() for f in files)).hexdigest()[:16]


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


@functools.cache
def record_contract() -> Table:
    """The standard person-record columns declared like a source table, so staging's rules apply."""

    def col(name: str, zh: str, type_: str = "string", **kw: Any) -> Column:
        return Column(name=name, source=name, type=type_, zh=zh, pii=kw.pop("pii", "none"), **kw)  # type: ignore[arg-type]

    return Table(
        name="person_records",
        zh="人员记录",
        en="Person records",
        description="Standard person records for identity resolution.",
        kind="reference",
        grain="one delivered row naming an elder",
        primary_key=["record_id"],
        delivery=Delivery(
            format="csv",
            frequency="once",
            path="person_records.csv",
            date_forms=["%Y-%m-%d", "%Y/%m/%d", "%Y年%m月%d日", "%Y%m%d", "excel_serial"],
        ),
        open_data="non_open",
        sensitivity="restricted",
        columns=[
            col("record_id", "记录编号", semantic="identifier"),
            col("source", "来源"),
            col("name", "姓名", pii="direct_identifier", semantic="person_name"),
            col("sex", "性别", pii="quasi_identifier", semantic="code", codelist="sex"),
            col("birth_date", "出生日期", "date", pii="quasi_identifier"),
            col("id_number", "身份证号", pii="direct_identifier", semantic="resident_id"),
            col("other_id", "其他编号", pii="quasi_identifier", semantic="identifier"),
            col("phone", "联系电话", pii="direct_identifier", semantic="phone"),
            col("address", "居住地址", pii="direct_identifier", semantic="address"),
            col("street", "所属街道", pii="quasi_identifier", semantic="street", codelist="street"),
        ],
    )


def normalise_records(frame: pl.DataFrame, registry: Registry | None = None) -> pl.DataFrame:
    """Person records (any of the standard columns, as text or typed) -> typed and normalised.

    Each distinct combination of the attributes is normalised once (a year of daily
    deliveries names the same elder with the same attributes hundreds of times), then
    joined back to its records: the result is row for row what :func:`_normalise_rows`
    gives the whole frame.
    """
    attrs = [c for c in STANDARD_COLUMNS if c != "record_id" and c in frame.columns]
    if frame.height < DISTINCT_FIRST_MIN_ROWS or not attrs:
        return _normalise_rows(frame, registry)
    distinct = frame.select(attrs).unique(maintain_order=True)
    if distinct.height > frame.height // 2:
        return _normalise_rows(frame, registry)
    distinct = distinct.with_row_index(_ATTRS_ROW)
    typed = _normalise_rows(distinct, registry).drop("record_id")
    given = (
        pl.col("record_id").cast(pl.String) if "record_id" in frame.columns else pl.lit(None, dtype=pl.String)
    )
    keep = [c for c in frame.columns if c not in STANDARD_COLUMNS]
    return (
        frame.join(distinct, on=attrs, how="left", nulls_equal=True, maintain_order="left")
        .select(
            pl.coalesce(given, pl.format("row:{}", pl.int_range(1, pl.len() + 1))).alias("record_id"),
            _ATTRS_ROW,
            *keep,
        )
        .join(typed, on=_ATTRS_ROW, how="left", maintain_order="left")
        .select(*STANDARD_COLUMNS, *keep)
        .cast(pl.Schema(RECORD_SCHEMA), strict=False)
    )


# Below this many records every row is normalised directly.
DISTINCT_FIRST_MIN_ROWS = 10_000
_ATTRS_ROW = "__attrs_row"


def _normalise_rows(frame: pl.DataFrame, registry: Registry | None = None) -> pl.DataFrame:
    """Person records (any of the standard columns, as text or typed) -> typed and normalised.

    The same rules as staging: resident IDs upgraded 15 -> 18 digits and
    validated (an invalid ID becomes null: it is not trustworthy), phones
    canonical, names without spaces, addresses completed, streets to codes,
    dates in every source form, sex labels to codes. Birth date and sex fall
    back to the ones the validated ID carries. ``record_id`` is kept as given
    (missing values become ``row:<n>``); other columns pass through unchanged.
    """
    registry = registry or load_registry()
    table = record_contract()
    text = frame.with_columns(
        [
            (
                pl.col(c).dt.strftime("%Y-%m-%d")
                if c in frame.columns and frame.schema[c] in (pl.Date, pl.Datetime)
                else pl.col(c).cast(pl.String)
                if c in frame.columns
                else pl.lit(None, dtype=pl.String)
            ).alias(c)
            for c in STANDARD_COLUMNS
        ]
    )
    rules: dict[str, Rule] = {
        c.name: rule_for(c, table, registry, pl.lit(None, dtype=pl.Datetime("us"))) for c in table.columns
    }
    work = with_clean_texts(text, STANDARD_COLUMNS)
    for i in range(max(len(r.stages) for r in rules.values())):
        work = work.with_columns(
            [e.alias(k) for r in rules.values() if i < len(r.stages) for k, e in r.stages[i].items()]
        )
    work = work.with_columns(
        [r.value.alias(f"__typed_{n}") for n, r in rules.items()]
        + [e.alias(k) for r in rules.values() for k, e in r.extra.items()]
    )
    typed = work.with_columns(
        [
            pl.col(f"__typed_{c}").alias(c)
            for c in STANDARD_COLUMNS
            if c not in ("record_id", "sex", "birth_date")
        ]
        + [
            pl.coalesce("__typed_sex", "id_sex").alias("sex"),
            pl.coalesce("__typed_birth_date", "id_birth_date").alias("birth_date"),
        ]
    ).with_columns(
        record_id=pl.coalesce("record_id", pl.format("row:{}", pl.int_range(1, pl.len() + 1))),
    )
    keep = [c for c in frame.columns if c not in STANDARD_COLUMNS]
    return typed.select(*STANDARD_COLUMNS, *keep).cast(pl.Schema(RECORD_SCHEMA), strict=False)

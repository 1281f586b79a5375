"""Identity resolution for the master elder index (老年人主索引): which rows are the same elder.

Pure functions, no Dagster:

- :func:`person_records` - every staged row that names an elder as its subject,
  in the standard person-record columns (``STANDARD_COLUMNS``);
- :func:`normalise_records` - the staging normalisers (``assets.staging.normalise``)
  applied to a person-record table from anywhere (a steward's CSV, an API);
- :func:`link_records` - an ``elder_key`` per record:

  1. records are collapsed to *profiles* (identical normalised attributes in the
     same source), so a meal user's hundred transactions are one profile;
  2. exact: profiles with the same validated resident ID are one elder;
  3. probabilistic: a splink 5 model (:mod:`assets.library.identity_model`)
     scores profiles without a validated ID against the ID-anchored profiles and
     each other (name characters and pinyin, birth date, sex, phone, address,
     street, other IDs);
  4. clustering (:mod:`assets.library.identity_keys`): steward 'match' decisions,
     then ID groups, then scored pairs above the threshold, strongest first, are
     merged unless the merge would put two different validated IDs (or a steward
     'no_match' pair) into one elder;
  5. weak records (a name, perhaps a street) still without an elder are weighed
     against the elders already known to their own source (a meal user eats
     every day): linked when one elder takes the posterior above the threshold;
     otherwise each such record stays on its own, since two meal users may
     share a name;
  6. keys: ``elder_key`` values are kept stable against the previous run's
     assignments; new elders get the next keys of the sequence.

Between runs the linkage keeps its trained model and every pair it scored
(:class:`KeptLinkage`): a new day scores only the pairs touching profiles not
seen before, with the kept model, and takes the others' scores as they were,
until the profiles changed since training exceed ``LinkSettings.retrain_share``.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import polars as pl
import pyarrow as pa
from splink import __version__ as splink_version

from assets.library.identity_keys import Clustering, Constraints, assign_keys
from assets.library.identity_model import (
    COMPARISONS,
    NEW,
    PAIR_SCHEMA,
    KeptModel,
    ModelSettings,
    ScoredPairs,
    _parameters,
    score_pairs,
    source_population_pairs,
    weak_profiles,
)
from assets.staging.normalise import Rule, clean_text, rule_for
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
ASSIGNMENT_SCHEMA: dict[str, pl.DataType] = {
    "record_id": pl.String(),
    "elder_key": pl.String(),
    "match_probability": pl.Float64(),
    # id | steward | model | source_population | null (linked to nothing)
    "link_method": pl.String(),
}
DECISION_SCHEMA: dict[str, pl.DataType] = {
    "record_id_l": pl.String(),
    "record_id_r": pl.String(),
    "decision": pl.String(),
}
# Attributes that make two records one profile (plus the source).
PROFILE_KEY = ("source", "name", "sex", "birth_date", "id_number", "other_id", "phone", "address", "street")

# Tables whose `name` column is a person other than an elder.
NON_ELDER_TABLES: dict[str, str] = {
    "caregivers": "the workforce register (护理员): people who serve elders, not elders",
}
# Identifiers an elder carries in another register, compared as `other_id`
# (written `<column>:<value>`, so numbers of different registers never compare).
OTHER_ID_COLUMNS = ("platform_elder_id", "senior_card_no")


# ------------------------------------------------------------------ records


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
    records are kept between runs (:func:`table_records`), so a new day reads and
    normalises the new day's staged parts only.
    """
    frames = []
    for table in elder_tables(registry):
        records = table_records(lake, table, registry)
        if records is not None:
            frames.append(records)
    schema = {
        **RECORD_SCHEMA,
        "_source_file": pl.String(),
        "_row_number": pl.Int64(),
        "_delivery_date": pl.Date(),
    }
    if not frames:
        return pl.DataFrame(schema=schema)
    out = pl.concat(frames, how="vertical_relaxed").cast(pl.Schema(schema))
    return out.sort("source", "_source_file", "_row_number")


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


def table_records(lake: Lake, table: Table, registry: Registry | None = None) -> pl.DataFrame | None:
    """The normalised person records of one staged table (None when it has no staged part).

    A year of daily parts is ~3,000 files, and opening each one costs more than its rows: the
    records are kept in :func:`records_cache`, one file per delivery month, with the size and
    mtime of each part they came from; a run reads and normalises only the parts that are new or
    changed since, drops the records of parts that are gone, and rewrites only the months where
    anything differs (a new day: its month's file, not the year's). The cache also records the
    extraction, the normalisation code and the code lists it was made with (a change to any
    rebuilds it). The result equals reading and normalising every part (same rows; callers sort).
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
        return None
    root = lake.root.resolve()
    rel = {p: p.resolve().relative_to(root).as_posix() for p in parts}
    chunks: dict[str, list[Path]] = {}
    for p in parts:
        chunks.setdefault(records_chunk(rel[p]), []).append(p)
    for stale in folder.glob("*.parquet") if folder.exists() else ():
        if stale.stem not in chunks:
            stale.unlink()
    frames = [
        _chunk_records(
            lake, folder / f"{chunk}.parquet", chunk_parts, rel, select, columns, version, registry
        )
        for chunk, chunk_parts in sorted(chunks.items())
    ]
    return pl.concat(frames, how="vertical_relaxed") if len(frames) > 1 else frames[0]


def _chunk_records(
    lake: Lake,
    cache: Path,
    parts: list[Path],
    rel: dict[Path, str],
    select: list[pl.Expr],
    columns: list[str],
    version: str,
    registry: Registry,
) -> pl.DataFrame:
    """One month of :func:`table_records`: kept records of unchanged parts, new parts read."""
    sigs = {rel[p]: [st.st_size, st.st_mtime_ns] for p in parts if (st := p.stat())}
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
    if todo or valid != set(covered):
        keep = {r: sigs[r] for r in sorted(valid | {rel[p] for p in todo})}
        cache.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(cache) as tmp:
            write_frame(
                records,
                tmp,
                lake,
                metadata={RECORDS_PARTS: json.dumps(keep), RECORDS_VERSION: version},
            )
    return records.drop(PART)


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
    work = text.with_columns([clean_text(c).alias(f"__clean_{c}") for c in STANDARD_COLUMNS])
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


# ------------------------------------------------------------------ linking


@dataclass(frozen=True)
class LinkSettings:
    """Thresholds and the fixed model settings of one linkage."""

    # Scored pairs at or above this probability are linked.
    threshold: float = 0.9
    # Pairs in [review_low, review_high) go to the stewards' review queue.
    review_low: float = 0.5
    review_high: float = 0.98
    model: ModelSettings = field(default_factory=ModelSettings)
    # A kept model scores new profiles until the profiles new or gone since its training exceed
    # this share of those it was trained on (at 400,000 elders a day brings ~3,100 new profiles
    # of 1.06 M: retrained about every 17 days).
    retrain_share: float = 0.05
    key_prefix: str = "E"
    key_digits: int = 8


@dataclass(frozen=True)
class LinkResult:
    """``assignments``: record_id, elder_key, match_probability (1.0 for validated
    IDs and steward links, the strongest accepted pair for probabilistic links,
    null for a record linked to nothing).

    ``review_pairs``: one row per uncertain profile pair (a representative record
    on each side), with the probability, the total and per-field match weights
    and both sides' values, and whether the pair ended up in one elder.

    ``key_changes``: previous keys merged into another (``merged``), records
    split off a previous key onto a new one (``split``) or moved to another
    existing key (``moved``), with the number of records.

    ``parameters``: the model's m, u and match weight per comparison level.
    ``stats``: counts of records, profiles, pairs and links of the run.
    """

    assignments: pl.DataFrame
    review_pairs: pl.DataFrame
    key_changes: pl.DataFrame
    parameters: pl.DataFrame
    stats: dict[str, int | float]
    kept: KeptLinkage | None = None  # for the next run (None: nothing trained)


def _profiles(records: pl.DataFrame, isolate: set[str]) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(records + ``profile``, profiles): distinct attributes per source; decision records stand alone.

    Each group carries its records' row numbers, scattered back into a ``profile`` column: a
    join back on the nine key columns (strings, nulls equal) took twice as long (4.5 M records:
    5.3 -> 2.5 s, same result)."""
    solo = pl.Series(sorted(isolate), dtype=pl.String).implode()
    keyed = records.with_columns(__solo=pl.when(pl.col("record_id").is_in(solo)).then(pl.col("record_id")))
    key = [*PROFILE_KEY, "__solo"]
    groups = (
        keyed.with_row_index("__row")
        .group_by(key)
        .agg(pl.col("record_id").min().alias("first_record"), pl.len().alias("records"), pl.col("__row"))
        .sort("first_record")
        .with_row_index("profile")
        .with_columns(pl.col("profile").cast(pl.Int64))
    )
    rows = groups.select("profile", "__row").explode("__row")
    profile = np.empty(records.height, dtype=np.int64)
    profile[rows["__row"].to_numpy()] = rows["profile"].to_numpy()
    profiles = groups.drop("__row")
    linked = records.with_columns(profile=pl.Series(profile))
    return linked, profiles.with_columns(profile_keys(profiles)).drop("__solo")


PROFILE_ID = "profile_key"


def profile_keys(profiles: pl.DataFrame) -> pl.Series:
    """A stable id of each profile across runs (profile numbers are not): the MD5 of its
    attributes (and of the record a steward decision isolates), nulls marked."""
    cols = [c for c in (*PROFILE_KEY, "__solo") if c in profiles.columns]
    parts = ", ".join(f"coalesce(CAST({c} AS VARCHAR), chr(0))" for c in cols)
    con = duckdb.connect(":memory:")
    try:
        con.register("profiles_arrow", profiles.select(cols).to_arrow())
        keys = con.sql(f"SELECT md5(concat_ws(chr(31), {parts})) AS {PROFILE_ID} FROM profiles_arrow").pl()
    finally:
        con.close()
    return keys[PROFILE_ID]


@dataclass(frozen=True)
class KeptLinkage:
    """What a linkage keeps for the next run (``library/_cache/linkage``): the trained model,
    the profiles scored so far (:func:`profile_keys`) and every pair scored, by profile key.
    While it is kept, a run scores only the pairs that touch a profile new since (see
    :func:`link_records`); the model is trained again once the profiles new or gone since its
    training exceed ``LinkSettings.retrain_share`` of those it was trained on."""

    model: KeptModel
    profiles: pl.Series  # profile keys
    pairs: pl.DataFrame  # profile_key_l, profile_key_r, match_probability, match_weight, mw_<comparison>
    trained_profiles: int
    changed: int  # profiles new or gone since training
    fingerprint: str  # the model code and settings it was made with


def linkage_fingerprint(settings: ModelSettings) -> str:
    """The model's code (features, comparisons, blocking, training), settings and splink version."""
    code = Path(inspect.getfile(score_pairs)).read_bytes()
    made_with = [repr(settings), splink_version, hashlib.sha256(code).hexdigest()]
    return hashlib.sha256(repr(made_with).encode()).hexdigest()[:16]


_PAIR_VALUES = [c for c in PAIR_SCHEMA if not c.startswith("unique_id")]


def _keyed_pairs(pairs: pl.DataFrame, keys: pl.DataFrame) -> pl.DataFrame:
    """Scored pairs by profile number -> by profile key."""
    left = keys.rename({"profile": "unique_id_l", PROFILE_ID: f"{PROFILE_ID}_l"})
    right = keys.rename({"profile": "unique_id_r", PROFILE_ID: f"{PROFILE_ID}_r"})
    return (
        pairs.join(left, on="unique_id_l")
        .join(right, on="unique_id_r")
        .select(f"{PROFILE_ID}_l", f"{PROFILE_ID}_r", *_PAIR_VALUES)
    )


def _numbered_pairs(kept: pl.DataFrame, keys: pl.DataFrame) -> pl.DataFrame:
    """Kept pairs by profile key -> also by this run's profile numbers (pairs of gone profiles
    drop); the key columns stay, so they need not be looked up again."""
    left = keys.rename({PROFILE_ID: f"{PROFILE_ID}_l", "profile": "a"})
    right = keys.rename({PROFILE_ID: f"{PROFILE_ID}_r", "profile": "b"})
    return (
        kept.join(left, on=f"{PROFILE_ID}_l")
        .join(right, on=f"{PROFILE_ID}_r")
        .select(
            pl.min_horizontal("a", "b").cast(pl.Int64).alias("unique_id_l"),
            pl.max_horizontal("a", "b").cast(pl.Int64).alias("unique_id_r"),
            *_PAIR_VALUES,
            f"{PROFILE_ID}_l",
            f"{PROFILE_ID}_r",
        )
    )


def _score(
    profiles: pl.DataFrame, settings: LinkSettings, kept: KeptLinkage | None
) -> tuple[ScoredPairs, KeptLinkage | None, dict[str, int]]:
    """Score the profile pairs: train and score every pair, or, with a usable ``kept``, score
    only the pairs touching profiles it has not seen and take the rest from it (the same scores
    a full scoring with the kept model gives, tested)."""
    keys = profiles.select("profile", PROFILE_ID)
    fingerprint = linkage_fingerprint(settings.model)
    model_input = profiles.drop(PROFILE_ID).rename({"profile": "unique_id"})
    if kept is not None and kept.fingerprint == fingerprint:
        known = profiles[PROFILE_ID].is_in(kept.profiles.implode())
        new, gone = int((~known).sum()), kept.profiles.len() - int(known.sum())
        changed = kept.changed + new + gone
        if changed <= settings.retrain_share * kept.trained_profiles:
            old = _numbered_pairs(kept.pairs, keys)
            keyed = old.select(f"{PROFILE_ID}_l", f"{PROFILE_ID}_r", *_PAIR_VALUES)
            pairs = old.select(*PAIR_SCHEMA)
            fresh = None
            if new:
                flagged = model_input.with_columns((~known).alias(NEW))
                fresh = score_pairs(flagged, settings.model, kept=kept.model)
                pairs = pl.concat([pairs, fresh.pairs])
                keyed = pl.concat([keyed, _keyed_pairs(fresh.pairs, keys)])
            model = kept.model
            scored = ScoredPairs(
                pairs.sort("unique_id_l", "unique_id_r").cast(pl.Schema(PAIR_SCHEMA)),
                float(model.model["probability_two_random_records_match"]),
                fresh.parameters if fresh is not None else _parameters(model.model),
                model.training,
                model,
            )
            after = KeptLinkage(
                model, profiles[PROFILE_ID], keyed, kept.trained_profiles, changed, fingerprint
            )
            return scored, after, {"model_trained": 0, "new_profiles": new, "gone_profiles": gone}
    scored = score_pairs(model_input, settings.model)
    trained = None
    if scored.kept is not None:
        keyed = _keyed_pairs(scored.pairs, keys)
        trained = KeptLinkage(scored.kept, profiles[PROFILE_ID], keyed, profiles.height, 0, fingerprint)
    return scored, trained, {"model_trained": 1, "new_profiles": profiles.height, "gone_profiles": 0}


def _decisions(decisions: pl.DataFrame | None) -> pl.DataFrame:
    if decisions is None or decisions.height == 0:
        return pl.DataFrame(schema=DECISION_SCHEMA)
    d = decisions.select(
        pl.col("record_id_l").cast(pl.String),
        pl.col("record_id_r").cast(pl.String),
        pl.col("decision").cast(pl.String).str.strip_chars().str.to_lowercase(),
    )
    bad = d.filter(~pl.col("decision").is_in(["match", "no_match"]))
    if bad.height:
        raise ValueError(f"decisions must be 'match' or 'no_match', got {bad['decision'].unique().to_list()}")
    return d


def link_records(
    records: pl.DataFrame,
    *,
    previous: pl.DataFrame | None = None,
    decisions: pl.DataFrame | None = None,
    settings: LinkSettings | None = None,
    registry: Registry | None = None,
    normalised: bool = False,
    kept: KeptLinkage | None = None,
) -> LinkResult:
    """Resolve person records to elders (see the module docstring for the steps).

    ``records``: the standard columns (any may be missing or empty); normalised
    here with staging's rules, so raw files work too. ``previous``: ``record_id,
    elder_key`` of an earlier run, whose keys are kept. ``decisions``:
    ``record_id_l, record_id_r, decision`` ('match' forces a link, 'no_match'
    forbids one) - steward decisions, honoured in every run. ``normalised``: the records
    already are (:func:`person_records`), so normalising them again is skipped. ``kept``: the
    previous run's :class:`KeptLinkage` (``LinkResult.kept``): its model scores the pairs of new
    profiles, its pairs stand for the others, until ``settings.retrain_share`` is exceeded.
    """
    settings = settings or LinkSettings()
    recs = (
        records.select(STANDARD_COLUMNS).cast(pl.Schema(RECORD_SCHEMA))
        if normalised
        else normalise_records(records, registry).select(STANDARD_COLUMNS)
    )
    if recs["record_id"].n_unique() != recs.height:
        raise ValueError("record_id must be unique")
    dec = _decisions(decisions)
    # (Polars, not Python sets and dicts of every record id: 17.5 M records in a district year)
    known = recs["record_id"].implode()
    dec = dec.filter(pl.col("record_id_l").is_in(known) & pl.col("record_id_r").is_in(known))
    isolate = set(dec["record_id_l"].to_list()) | set(dec["record_id_r"].to_list())
    recs, profiles = _profiles(recs, isolate)
    profiles = profiles.with_columns(weak=weak_profiles(profiles))

    scored, kept_after, scoring = _score(profiles, settings, kept)
    profiles = profiles.drop(PROFILE_ID)
    profile_of = recs.select("record_id", "profile")
    decided = (
        dec.join(
            profile_of.rename({"profile": "a"}),
            left_on="record_id_l",
            right_on="record_id",
            maintain_order="left",
        )
        .join(
            profile_of.rename({"profile": "b"}),
            left_on="record_id_r",
            right_on="record_id",
            maintain_order="left",
        )
        .select("a", "b", "decision")
    )
    constraints = Constraints(
        must=[(a, b) for a, b, d in decided.iter_rows() if d == "match"],
        cannot=[(a, b) for a, b, d in decided.iter_rows() if d == "no_match"],
    )
    clustering = Clustering(profiles, constraints)
    accepted = scored.pairs.filter(pl.col("match_probability") >= settings.threshold)
    linked_model = clustering.link(accepted, "model")
    # The source-population prior needs the whole population in the input (not a steward's CSV).
    population = (
        source_population_pairs(profiles, scored, clustering.clusters(), source_recurrence(recs))
        if scored.training in ("labels", "em")
        else pl.DataFrame(
            schema={"unique_id_l": pl.Int64, "unique_id_r": pl.Int64, "match_probability": pl.Float64}
        )
    )
    linked_population = clustering.link(
        population.filter(pl.col("match_probability") >= settings.threshold), "source_population"
    )
    clusters = clustering.clusters()

    # Identical name-only records are not evidence of one person (two meal users
    # called 刘明): a weak profile linked to nothing leaves each record on its own.
    recs = (
        recs.join(clusters, on="profile", how="left")
        .join(profiles.select("profile", "weak"), on="profile", how="left")
        .with_columns(
            cluster=pl.when(pl.col("weak") & pl.col("link_method").is_null())
            .then(profiles.height + pl.int_range(pl.len()))
            .otherwise(pl.col("cluster"))
        )
    )
    assigned = assign_keys(
        recs.select("record_id", "cluster"),
        previous,
        prefix=settings.key_prefix,
        digits=settings.key_digits,
    )
    assignments = (
        recs.join(assigned.keys, on="cluster", how="left")
        .select(
            "record_id",
            "elder_key",
            pl.col("link_probability").alias("match_probability"),
            "link_method",
        )
        .sort("record_id")
        .cast(pl.Schema(ASSIGNMENT_SCHEMA))
    )
    review = _review_pairs(scored.pairs, population, recs, profiles, settings, dec)
    stats: dict[str, int | float] = {
        "records": recs.height,
        "profiles": profiles.height,
        "profiles_without_id": int(profiles["id_number"].null_count()),
        "weak_profiles": int(profiles["weak"].sum()),
        "scored_pairs": scored.pairs.height,
        "model_links": linked_model,
        "source_population_links": linked_population,
        "elders": int(assignments["elder_key"].n_unique()),
        "review_pairs": review.height,
        "prior": scored.prior,
        **scoring,
    }
    return LinkResult(assignments, review, assigned.changes, scored.parameters, stats, kept_after)


def source_recurrence(recs: pl.DataFrame) -> dict[str, float]:
    """Per source: the share of its ID-bearing records whose elder has another record in it."""
    with_id = recs.filter(pl.col("id_number").is_not_null())
    if with_id.height == 0:
        return {}
    shares = (
        with_id.with_columns(n=pl.len().over("source", "id_number"))
        .group_by("source")
        .agg((pl.col("n") > 1).mean().alias("r"))
    )
    return {str(s): float(r) for s, r in shares.iter_rows()}


def _review_pairs(
    scored: pl.DataFrame,
    population: pl.DataFrame,
    recs: pl.DataFrame,
    profiles: pl.DataFrame,
    settings: LinkSettings,
    dec: pl.DataFrame,
) -> pl.DataFrame:
    """Pairs in the uncertain band, a representative record per side, with the evidence."""

    def in_band(frame: pl.DataFrame) -> pl.DataFrame:
        return frame.filter(
            pl.col("match_probability").is_between(settings.review_low, settings.review_high, "left")
        )

    ordered = population.select(
        pl.min_horizontal("unique_id_l", "unique_id_r").alias("unique_id_l"),
        pl.max_horizontal("unique_id_l", "unique_id_r").alias("unique_id_r"),
        "match_probability",
    )
    weak_band = (
        in_band(ordered)
        .join(scored.drop("match_probability"), on=["unique_id_l", "unique_id_r"])
        .with_columns(evidence=pl.lit("source_population"))
    )
    band = pl.concat(
        [weak_band, in_band(scored).with_columns(evidence=pl.lit("model"))], how="diagonal_relaxed"
    ).unique(["unique_id_l", "unique_id_r"], keep="first", maintain_order=True)
    cluster = recs.group_by("profile").agg(pl.col("cluster").first())
    values = profiles.select(
        "profile",
        pl.col("first_record").alias("record_id"),
        "source",
        *[c for c in PROFILE_KEY if c != "source"],
    ).join(cluster, on="profile")
    out = (
        band.join(values, left_on="unique_id_l", right_on="profile")
        .join(values, left_on="unique_id_r", right_on="profile", suffix="_r")
        .rename({c: f"{c}_l" for c in values.columns if c != "profile"})
        .with_columns(linked=pl.col("cluster_l") == pl.col("cluster_r"))
    )
    decided = dec.select(
        pl.min_horizontal("record_id_l", "record_id_r").alias("a"),
        pl.max_horizontal("record_id_l", "record_id_r").alias("b"),
    )
    out = out.with_columns(
        a=pl.min_horizontal("record_id_l", "record_id_r"), b=pl.max_horizontal("record_id_l", "record_id_r")
    ).join(decided, on=["a", "b"], how="anti")
    cols = ["record_id_l", "record_id_r", "match_probability", "evidence", "match_weight"]
    cols += [f"mw_{c}" for c in COMPARISONS]
    sides = [f"{c}_{s}" for c in PROFILE_KEY for s in ("l", "r")]
    return out.select(*cols, "linked", *sides).sort(
        ["match_probability", "record_id_l", "record_id_r"], descending=[True, False, False]
    )


def id_exact_assignments(records: pl.DataFrame, registry: Registry | None = None) -> pl.DataFrame:
    """The baseline: records linked only on validated resident IDs; every other record alone."""
    recs = normalise_records(records, registry)
    return recs.select(
        "record_id",
        pl.coalesce(pl.format("ID:{}", pl.col("id_number")), pl.format("R:{}", pl.col("record_id"))).alias(
            "elder_key"
        ),
        pl.when(pl.col("id_number").is_not_null()).then(pl.lit(1.0)).alias("match_probability"),
        pl.when(pl.col("id_number").is_not_null()).then(pl.lit("id")).alias("link_method"),
    ).cast(pl.Schema(ASSIGNMENT_SCHEMA))


def pairwise_scores(assignments: pl.DataFrame, truth: pl.DataFrame) -> dict[str, float]:
    """Pairwise precision and recall of ``assignments`` (record_id, elder_key) against
    ``truth`` (record_id, person_id), over the records in both.

    Counted per cluster intersection, never by enumerating pairs.
    """
    both = assignments.select("record_id", "elder_key").join(
        truth.select("record_id", "person_id"), on="record_id"
    )

    def pairs(col: str | list[str]) -> int:
        n = both.group_by(col).len()["len"].cast(pl.Int64)
        return int((n * (n - 1) // 2).sum())

    tp, predicted, actual = pairs(["elder_key", "person_id"]), pairs("elder_key"), pairs("person_id")
    return {
        "records": float(both.height),
        "true_pairs": float(actual),
        "predicted_pairs": float(predicted),
        "precision": tp / predicted if predicted else 1.0,
        "recall": tp / actual if actual else 1.0,
    }

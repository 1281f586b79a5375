"""The master elder index (老年人主索引) as lake tables, and the stewards' decisions.

:func:`build_mei` runs :func:`assets.library.identity.link_records` over every
person-bearing staged record with

- ``previous``: the ``library/elder_links`` of the last run, so keys are stable
  (a rerun renumbers nobody; merges and splits are appended to
  ``library/elder_key_changes``);
- ``decisions``: the stewards' match / no-match decisions from the operational
  store (:mod:`rainbow.ops`), honoured in every run;

and writes ``library/elder_links`` (one row per record), the review queue
``library/match_review_queue`` (uncertain pairs with per-field match weights;
decided pairs keep their decision and status) and the key-change history.

Stewards decide with :func:`record_decision` (dashboards, CLI); the next build
reads the decision. ``pair_id`` is stable: a hash of the two record ids.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path

import polars as pl
import pyarrow as pa

from assets.library.identity import (
    COMPARISONS,
    PROFILE_ID,
    KeptLinkage,
    LinkResult,
    LinkSettings,
    kept_fingerprint,
    link_profiles,
)
from assets.library.identity_keys import PREVIOUS_KEY
from assets.library.identity_model import WEIGHT_DECIMALS, KeptModel
from assets.library.profile_base import profile_lake_records
from rainbow.io import atomic_path
from rainbow.ops import OpsStore
from rainbow.parquet import ROW_GROUP_ROWS, file_metadata, open_writer, read_frame, write_frame
from rainbow.settings import Lake
from rainbow.workers import release_memory
from schemas.registry import Registry

DECISIONS_DDL = (
    """CREATE TABLE IF NOT EXISTS match_decisions (
        pair_id TEXT PRIMARY KEY,
        record_id_l TEXT NOT NULL,
        record_id_r TEXT NOT NULL,
        decision TEXT NOT NULL CHECK (decision IN ('match', 'no_match')),
        decided_by TEXT NOT NULL,
        decided_at TEXT NOT NULL,
        note TEXT
    )""",
)
DECISION_COLUMNS = {
    "pair_id": pl.String,
    "record_id_l": pl.String,
    "record_id_r": pl.String,
    "decision": pl.String,
    "decided_by": pl.String,
    "decided_at": pl.String,
    "note": pl.String,
}
KEY_CHANGES = "elder_key_changes"
# produced together by build_mei
MEI_TABLES = ("elder_links", "match_review_queue", KEY_CHANGES)


def table_path(lake: Lake, table: str) -> Path:
    """``<lake>/library/<table>/data.parquet`` (a single-file library table)."""
    return lake.library / table / "data.parquet"


def write_table(frame: pl.DataFrame, path: Path, lake: Lake) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        write_frame(frame, tmp, lake)


def pair_id(record_id_l: str, record_id_r: str) -> str:
    """Stable id of an unordered record pair."""
    a, b = sorted((record_id_l, record_id_r))
    return "P" + hashlib.sha256(f"{a}\x1f{b}".encode()).hexdigest()[:16]


# ------------------------------------------------------------------ decisions


def record_decision(
    lake: Lake, record_id_l: str, record_id_r: str, decision: str, steward: str, note: str | None = None
) -> str:
    """Store a steward's decision on a pair (a later decision on the same pair replaces it)."""
    decision = decision.strip().lower()
    if decision not in ("match", "no_match"):
        raise ValueError(f"decision must be 'match' or 'no_match', not {decision!r}")
    if not steward.strip():
        raise ValueError("a decision needs the steward's name")
    if record_id_l == record_id_r:
        raise ValueError("a pair needs two different records")
    a, b = sorted((record_id_l, record_id_r))
    pid = pair_id(a, b)
    store = OpsStore(lake)
    store.ensure(*DECISIONS_DDL)
    store.execute(
        "INSERT OR REPLACE INTO match_decisions VALUES (?, ?, ?, ?, ?, ?, ?)",
        (pid, a, b, decision, steward.strip(), datetime.now().isoformat(timespec="seconds"), note),
    )
    return pid


def read_decisions(lake: Lake) -> pl.DataFrame:
    store = OpsStore(lake)
    if not store.path.exists():
        return pl.DataFrame(schema=DECISION_COLUMNS)
    store.ensure(*DECISIONS_DDL)
    return store.query("SELECT * FROM match_decisions ORDER BY pair_id", schema=DECISION_COLUMNS)


# ------------------------------------------------------------------ build


@dataclass(frozen=True)
class MeiResult:
    # its assignments: record_id, elder_key, match_probability, link_method, _delivery_date
    result: LinkResult
    review: pl.DataFrame
    changes: pl.DataFrame
    stats: dict[str, int | float]

    @property
    def link_rows(self) -> int:
        """Rows written to ``elder_links`` (one per record)."""
        return self.result.assignments.height

    def link_methods(self) -> dict[str, int]:
        counts = self.result.assignments.group_by("link_method").len().iter_rows()
        return {str(method): int(n) for method, n in counts}


def read_previous_links(lake: Lake) -> pl.DataFrame | None:
    path = table_path(lake, "elder_links")
    return read_frame(path, lake, columns=["record_id", "elder_key"]) if path.exists() else None


def previous_key_of(record_ids: pl.Series, previous: pl.DataFrame) -> pl.Series:
    """Each record's key in ``previous`` (``record_id, elder_key``; null where the record is not
    there), as :data:`PREVIOUS_KEY`, in the order of ``record_ids``.

    ``previous`` is ``elder_links`` as :func:`write_links` writes it, sorted by record_id, so
    each record is found by binary search: no hash table over a district year's 16.8 M record-id
    strings (a left join held 2.8 GB more at the new day's peak; this, 0.4 GB). Unsorted input
    is sorted first. Records in record order (a run from the kept grouping of the person
    records) are found fastest: a year's 16.8 M records 2.5 s, against 3.1 s in chunk order
    and 46.8 s shuffled."""
    if previous["record_id"].null_count():
        previous = previous.filter(pl.col("record_id").is_not_null())
    if not previous["record_id"].is_sorted():
        previous = previous.sort("record_id")
    if previous.height == 0:
        return pl.Series(PREVIOUS_KEY, [None] * len(record_ids), dtype=pl.String)
    ids = previous["record_id"]
    at = ids.search_sorted(record_ids, side="left").clip(upper_bound=previous.height - 1)
    found = (ids.gather(at) == record_ids).fill_null(False)
    keys = previous["elder_key"].gather(at)
    return pl.select(pl.when(found).then(keys).alias(PREVIOUS_KEY)).to_series()


def _review_table(result: LinkResult, keys: pl.DataFrame, decisions: pl.DataFrame) -> pl.DataFrame:
    review = result.review_pairs
    weights = [f"mw_{c}" for c in COMPARISONS if f"mw_{c}" in review.columns]
    queue = review.with_columns(
        pair_id=pl.struct("record_id_l", "record_id_r").map_elements(
            lambda s: pair_id(s["record_id_l"], s["record_id_r"]), return_dtype=pl.String
        ),
        field_weights=pl.struct(weights).map_elements(
            lambda s: json.dumps(
                {k[3:]: (round(v, WEIGHT_DECIMALS) if v is not None else None) for k, v in s.items()}
            ),
            return_dtype=pl.String,
        )
        if weights
        else pl.lit(None, dtype=pl.String),
    )
    # each side's key found by binary search in the record-sorted links (a district year's 16.8 M
    # record ids are not hashed for the 0.2 M pairs)
    queue = queue.with_columns(
        previous_key_of(queue["record_id_l"], keys).alias("elder_key_l"),
        previous_key_of(queue["record_id_r"], keys).alias("elder_key_r"),
    )
    # Decided pairs stay in the queue (as DECIDED) while they are still in the band, for audit.
    queue = queue.join(
        decisions.select("pair_id", "decision", "decided_by", "decided_at"), on="pair_id", how="left"
    ).with_columns(
        status=pl.when(pl.col("decision").is_not_null()).then(pl.lit("DECIDED")).otherwise(pl.lit("OPEN")),
        decided_at=pl.col("decided_at").str.to_datetime("%Y-%m-%dT%H:%M:%S", strict=False),
    )
    sides = ["name", "sex", "birth_date", "id_number", "phone", "address"]
    return queue.select(
        "pair_id",
        "record_id_l",
        "record_id_r",
        "match_probability",
        "match_weight",
        "evidence",
        "field_weights",
        "linked",
        "elder_key_l",
        "elder_key_r",
        "source_l",
        "source_r",
        *[f"{c}_{s}" for c in sides for s in ("l", "r")],
        "status",
        "decision",
        "decided_by",
        "decided_at",
    ).sort(["status", "match_probability", "pair_id"], descending=[True, True, False])


LINKAGE_STATE = "rainbow.linkage"


def linkage_cache(lake: Lake) -> Path:
    """``library/_cache/linkage``: the kept model, the profiles scored and their pairs (encrypted)."""
    return lake.library / "_cache" / "linkage"


def read_kept(lake: Lake, fingerprint: str | None = None) -> KeptLinkage | None:
    """The linkage the last run kept, or None (missing, unreadable or half written: retrain).
    ``fingerprint``: the one a usable linkage carries (:func:`kept_fingerprint`); another is
    not read at all (a district year's pairs are 1 GB)."""
    folder = linkage_cache(lake)
    paths = {name: folder / f"{name}.parquet" for name in ("profiles", "tf_name", "pairs")}
    if not all(p.exists() for p in paths.values()):
        return None
    try:
        states = {name: json.loads(file_metadata(p, lake)[LINKAGE_STATE]) for name, p in paths.items()}
        if len({s["token"] for s in states.values()}) != 1:
            return None
        state = states["pairs"]
        if fingerprint is not None and state["fingerprint"] != fingerprint:
            return None
        return KeptLinkage(
            model=KeptModel(state["model"], read_frame(paths["tf_name"], lake), state["training"]),
            profiles=read_frame(paths["profiles"], lake)[PROFILE_ID],
            pairs=read_frame(paths["pairs"], lake),
            trained_profiles=int(state["trained_profiles"]),
            changed=int(state["changed"]),
            fingerprint=str(state["fingerprint"]),
        )
    except (OSError, ValueError, KeyError, pa.ArrowException):
        return None


def write_kept(lake: Lake, kept: KeptLinkage) -> None:
    """Three files, one token: a reader takes them only when all three carry it."""
    token = uuid.uuid4().hex
    short = json.dumps({"token": token})
    full = json.dumps(
        {
            "token": token,
            "model": kept.model.model,
            "training": kept.model.training,
            "trained_profiles": kept.trained_profiles,
            "changed": kept.changed,
            "fingerprint": kept.fingerprint,
        }
    )
    folder = linkage_cache(lake)
    folder.mkdir(parents=True, exist_ok=True)
    for name, frame, state in (
        ("profiles", kept.profiles.to_frame(PROFILE_ID), short),
        ("tf_name", kept.model.tf_name, short),
        ("pairs", kept.pairs, full),
    ):
        with atomic_path(folder / f"{name}.parquet") as tmp:
            write_frame(frame, tmp, lake, metadata={LINKAGE_STATE: state})


def build_mei(
    lake: Lake, registry: Registry, run_at: datetime, settings: LinkSettings | None = None
) -> MeiResult:
    """Link every person-bearing staged record; write elder_links, the review queue and key changes.

    The records are collapsed to profiles one kept chunk at a time (a table's delivery month:
    :func:`assets.library.record_cache.person_chunks`), so a district year's 16.8 M records are
    held as their ids and profile numbers only; the grouping of the closed months is kept
    between runs (:mod:`assets.library.profile_base`), so a new day groups its month's chunks.
    The linkage kept by the last run (:func:`read_kept`) scores only the new profiles' pairs
    until its model is due for training again (``LinkSettings.retrain_share``). Starts from a trimmed heap
    (:func:`rainbow.workers.release_memory`): its peak is the build's highest."""
    release_memory()
    decisions = read_decisions(lake)
    profiled, known, grouping = profile_lake_records(
        lake, registry, decisions.select("record_id_l", "record_id_r", "decision"), carry=("_delivery_date",)
    )
    settings = settings or LinkSettings()
    previous = read_previous_links(lake)
    previous_keys = None
    if previous is not None:  # each record's previous key, joined while little else is held
        # the keys alone, once each (assign_keys takes them unique): 0.7 M strings, not 16.8 M
        previous_keys = previous["elder_key"].drop_nulls().unique()
        records = profiled.records.with_columns(previous_key_of(profiled.records["record_id"], previous))
        profiled = replace(profiled, records=records)
        del previous, records
    fingerprint = kept_fingerprint(settings)
    result = link_profiles(
        profiled,
        previous=previous_keys,
        decisions=known,
        settings=settings,
        kept=lambda: read_kept(lake, fingerprint),  # read where scoring lets its pairs go
    )
    del profiled
    links = result.assignments
    if links["elder_key"].null_count():
        raise RuntimeError("identity resolution left records without an elder_key")
    review = _review_table(result, links.select("record_id", "elder_key"), decisions)
    changes = result.key_changes.select(
        pl.lit(run_at).cast(pl.Datetime("us")).alias("run_at"),
        "change",
        pl.col("old_key").alias("from_key"),
        pl.col("new_key").alias("to_key"),
        pl.col("records").cast(pl.Int64),
    )
    write_links(lake, links)
    write_table(review, table_path(lake, "match_review_queue"), lake)
    _append_changes(lake, changes, run_at)
    if result.kept is not None:
        write_kept(lake, result.kept)
    stats: dict[str, int | float] = {
        **result.stats,
        "review_open": int((review["status"] == "OPEN").sum()),
        "review_decided": int((review["status"] == "DECIDED").sum()),
        "decisions": decisions.height,
        "key_changes": changes.height,
        "merged_keys": int((changes["change"] == "merged").sum()),
        "grouping_kept_chunks": grouping.kept_chunks,
        "grouping_grouped_chunks": grouping.grouped_chunks,
        "grouping_grouped_records": grouping.grouped_records,
        "grouping_rewritten": int(grouping.rewritten),
    }
    return MeiResult(result, review, changes, stats)


LINK_COLUMNS: dict[str, pl.DataType] = {
    "record_id": pl.String(),
    "source_table": pl.String(),
    "source_file": pl.String(),
    "row_number": pl.Int64(),
    "delivery_date": pl.Date(),
    "elder_key": pl.String(),
    "match_probability": pl.Float64(),
    "link_method": pl.String(),
}
# rows of elder_links made and written at a time (the lineage columns are spelled out per slice;
# whole row groups)
LINK_SLICE_ROWS = 8 * ROW_GROUP_ROWS


def link_lineage(assignments: pl.DataFrame) -> pl.DataFrame:
    """Assignments (sorted by record_id, with ``_delivery_date``) -> ``elder_links`` rows: the
    source table, file and row come out of ``record_id`` (``<table>:<file>:<row>``, as
    :data:`assets.library.records.RECORD_ID_PARTS` reads it; null where it does not match).

    The row is the number after the last colon; what stands before it (a district year: 3,112
    distinct ``<table>:<file>`` for 16.8 M records) is split at its first colon once per
    distinct value and joined back: a quarter of the time of the regex's groups on every id."""
    rid = pl.col("record_id")
    frame = assignments.with_columns(__row=rid.str.extract(r"(?s):(-?\d+)$", 1))
    frame = frame.with_columns(
        __prefix=rid.str.head(rid.str.len_chars() - pl.col("__row").str.len_chars() - 1)
    )
    prefixes = frame["__prefix"].drop_nulls().unique().to_list()
    split = [p.partition(":") for p in prefixes]
    parts = pl.DataFrame(
        {
            "__prefix": prefixes,
            "source_table": [table if colon else None for table, colon, _ in split],
            "source_file": [file if colon else None for _, colon, file in split],
        },
        schema={"__prefix": pl.String(), "source_table": pl.String(), "source_file": pl.String()},
    )
    frame = frame.join(parts, on="__prefix", how="left", maintain_order="left")
    return frame.select(
        "record_id",
        "source_table",
        "source_file",
        pl.when(pl.col("source_table").is_not_null())
        .then(pl.col("__row").cast(pl.Int64))
        .alias("row_number"),
        pl.col("_delivery_date").alias("delivery_date"),
        "elder_key",
        "match_probability",
        "link_method",
    ).cast(pl.Schema(LINK_COLUMNS))


def write_links(lake: Lake, assignments: pl.DataFrame) -> None:
    """``library/elder_links`` written a slice at a time (a district year: 16.8 M rows, whose
    lineage strings are spelled out per slice rather than all at once)."""
    path = table_path(lake, "elder_links")
    path.parent.mkdir(parents=True, exist_ok=True)
    schema = pl.DataFrame(schema=LINK_COLUMNS).to_arrow().schema
    with atomic_path(path) as tmp, open_writer(tmp, schema, lake) as writer:
        for start in range(0, assignments.height, LINK_SLICE_ROWS):
            rows = link_lineage(assignments.slice(start, LINK_SLICE_ROWS))
            bad = rows.filter(pl.col("source_table").is_null() | pl.col("row_number").is_null())
            if bad.height:
                raise ValueError(f"record ids not <table>:<file>:<row>: {bad['record_id'].head(3).to_list()}")
            writer.write_table(rows.to_arrow(), row_group_size=ROW_GROUP_ROWS)
        if assignments.height == 0:
            writer.write_table(pl.DataFrame(schema=LINK_COLUMNS).to_arrow())


def _append_changes(lake: Lake, changes: pl.DataFrame, run_at: datetime) -> None:
    """One Parquet part per run that changed keys (history; a rerun with no change adds nothing)."""
    if changes.height == 0:
        return
    part = lake.library / KEY_CHANGES / f"run={run_at:%Y%m%dT%H%M%S}" / "data.parquet"
    write_table(changes, part, lake)


def read_key_changes(lake: Lake) -> pl.DataFrame:
    parts = sorted((lake.library / KEY_CHANGES).glob("run=*/data.parquet"))
    schema: dict[str, pl.DataType] = {
        "run_at": pl.Datetime("us"),
        "change": pl.String(),
        "from_key": pl.String(),
        "to_key": pl.String(),
        "records": pl.Int64(),
    }
    if not parts:
        return pl.DataFrame(schema=schema)
    return read_frame(parts, lake).cast(pl.Schema(schema))

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

import hashlib
import inspect
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import duckdb
import numpy as np
import polars as pl
from splink import __version__ as splink_version

from assets.library import identity_model
from assets.library.identity_keys import PREVIOUS_KEY, Clustering, Constraints, assign_keys
from assets.library.identity_model import (
    COMPARISONS,
    NEW,
    PAIR_SCHEMA,
    KeptModel,
    ModelSettings,
    PairFilter,
    ScoredPairs,
    _parameters,
    score_pairs,
    source_population_pairs,
    weak_profiles,
)
from assets.library.records import RECORD_SCHEMA, STANDARD_COLUMNS, normalise_records
from rainbow.frames import keys_repeat
from schemas.registry import Registry

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


@dataclass(frozen=True)
class Profiled:
    """Person records collapsed to profiles (identical attributes in one source).

    ``records``: ``record_id``, ``profile`` and the columns carried along; ``profiles``: one row
    per profile - ``profile`` (numbered in order of ``first_record``), the attributes of
    ``PROFILE_KEY``, ``first_record``, ``records`` (how many) and ``profile_key``
    (:func:`profile_keys`)."""

    records: pl.DataFrame
    profiles: pl.DataFrame


_SOLO = "__solo"


def _number_groups(groups: pl.DataFrame, rows: int) -> tuple[pl.DataFrame, np.ndarray]:
    """Number ``groups`` in their order (``__group``) and give each of the ``rows`` rows listed
    in their ``__row`` lists its group's number (the lists are dropped)."""
    numbered = groups.with_row_index("__group").with_columns(pl.col("__group").cast(pl.Int64))
    listed = numbered.select("__group", "__row").explode("__row").drop_nulls()
    numbers = np.empty(rows, dtype=np.int64)
    numbers[listed["__row"].to_numpy()] = listed["__group"].to_numpy()
    return numbered.drop("__row"), numbers


@dataclass(frozen=True)
class ProfileBase:
    """The records of some chunks grouped (:meth:`ProfileGrouper.snapshot`), to start a later
    grouping from (:meth:`ProfileGrouper.start`): ``profiles`` the groups so far (the attributes
    of ``PROFILE_KEY``, the isolating column, ``first_record``, ``records``), ``records`` the
    records' ``record_id``, carried columns and ``profile`` (a row of ``profiles``)."""

    profiles: pl.DataFrame
    records: pl.DataFrame


class ProfileGrouper:
    """Collapses normalised person records (``STANDARD_COLUMNS`` + ``carry``) to profiles, one
    chunk at a time (:func:`profile_records` tells how). Its state after some chunks can be kept
    (:meth:`snapshot`) and a later grouping started from it (:meth:`start`): the profiles come
    out as if every chunk had been added (tested), so a new day groups only its month's records.
    A snapshot is valid for the same ``isolate`` only."""

    def __init__(
        self, isolate: pl.Series | None = None, carry: Sequence[str] = (), compact_rows: int = 2_000_000
    ):
        self.isolate = (isolate if isolate is not None else pl.Series([], dtype=pl.String)).cast(pl.String)
        self._solo = self.isolate.implode()
        self.carry = tuple(carry)
        self.compact_rows = compact_rows
        self.key = [*PROFILE_KEY, _SOLO]
        self.slim: list[pl.DataFrame] = []  # record_id, carry, profile (a slot)
        self.profiles: pl.DataFrame | None = None  # the groups compacted so far
        self.pending: list[pl.DataFrame] = []  # groups of chunks since
        self.pending_rows = 0
        # every group ever made (a "slot", numbered in order of making) -> its row in
        # concat([profiles, *pending]); records hold slots
        self.position: list[np.ndarray] = []
        self.slots = 0
        self.found: list[pl.Series] = []  # isolate ids among the records

    def start(self, base: ProfileBase) -> None:
        """Continue from a :meth:`snapshot` (made with the same ``isolate`` and ``carry``)."""
        if self.slots:
            raise RuntimeError("a grouping starts from a snapshot before any chunk")
        n = base.profiles.height
        self.profiles = base.profiles.select(*self.key, "first_record", "records")
        self.position = [np.arange(n, dtype=np.int64)]
        self.slim = [base.records.select("record_id", *self.carry, pl.col("profile").cast(pl.Int64))]
        self.slots = n
        if self.isolate.len():
            self.found.append(base.profiles[_SOLO].drop_nulls())

    def add(self, chunk: pl.DataFrame) -> None:
        keyed = chunk.select(*STANDARD_COLUMNS, *self.carry).with_columns(
            pl.when(pl.col("record_id").is_in(self._solo)).then(pl.col("record_id")).alias(_SOLO)
        )
        local, numbers = _number_groups(
            keyed.with_row_index("__row")
            .group_by(self.key)
            .agg(pl.col("record_id").min().alias("first_record"), pl.len().alias("records"), pl.col("__row")),
            keyed.height,
        )
        if self.isolate.len():
            self.found.append(keyed.filter(pl.col(_SOLO).is_not_null())[_SOLO])
        held = (self.profiles.height if self.profiles is not None else 0) + self.pending_rows
        self.position.append(np.arange(held, held + local.height, dtype=np.int64))
        self.slim.append(
            keyed.select("record_id", *self.carry).with_columns(pl.Series("profile", numbers + self.slots))
        )
        self.slots += local.height
        self.pending.append(local.drop("__group"))
        self.pending_rows += local.height
        if self.pending_rows >= max(
            self.compact_rows, self.profiles.height if self.profiles is not None else 0
        ):
            self.compact()

    def compact(self) -> None:
        both = pl.concat([*([self.profiles] if self.profiles is not None else []), *self.pending])
        grouped, numbers = _number_groups(
            both.with_row_index("__row")
            .group_by(self.key)
            .agg(pl.col("first_record").min(), pl.col("records").sum().cast(pl.UInt32), pl.col("__row")),
            both.height,
        )
        self.profiles = grouped.drop("__group")
        self.position = [numbers[np.concatenate(self.position)]] if self.position else []
        self.pending, self.pending_rows = [], 0

    def snapshot(self) -> ProfileBase:
        """The grouping so far, compacted, to :meth:`start` another from; its records renumbered
        piece by piece, then put in record order (the grouper goes on from the snapshot)."""
        self.compact()
        assert self.profiles is not None
        slot_row = self.position[0]
        self.slim = [
            piece.with_columns(pl.Series("profile", slot_row[piece["profile"].to_numpy()]))
            for piece in self.slim
        ]
        self.position = [np.arange(self.profiles.height, dtype=np.int64)]
        self.slots = self.profiles.height
        records = (
            pl.concat(self.slim, rechunk=False).sort("record_id")
            if self.slim
            else pl.DataFrame(
                schema={"record_id": pl.String, **dict.fromkeys(self.carry, pl.String), "profile": pl.Int64}
            )
        )
        # in record order: a run started from it merges its new records in and keeps that order
        # (binary searches of ordered queries then find the previous keys fastest,
        # :func:`assets.library.mei.previous_key_of`)
        self.slim = [records]
        return ProfileBase(self.profiles, records)

    def _records(self) -> pl.DataFrame:
        """Every record added; in record order when the grouping started from a snapshot (kept
        in that order) - the new records sorted and merged in."""
        pieces, self.slim = self.slim, []
        first = pieces[0]
        ids = first["record_id"]
        if len(pieces) > 1 and first.height and not ids.null_count() and ids.is_sorted():
            rest = pl.concat(pieces[1:]).sort("record_id")
            return first.merge_sorted(rest.cast(first.schema), key="record_id")
        return pl.concat(pieces)

    def finish(
        self,
        keep_isolated: Callable[[pl.Series], pl.Series] | None = None,
        carry_schema: Mapping[str, pl.DataType] | None = None,
    ) -> Profiled:
        """The profiles of every record added (see :func:`profile_records`)."""
        if not self.slim:
            types = carry_schema or {}
            empty = pl.DataFrame(
                schema={**RECORD_SCHEMA, **{c: types.get(c, pl.String()) for c in self.carry}}
            )
            return profile_records([empty], carry=self.carry)
        if keep_isolated is not None and self.found:
            alone = keep_isolated(pl.concat(self.found)).cast(pl.String).implode()
            stays = pl.when(pl.col(_SOLO).is_in(alone)).then(pl.col(_SOLO)).alias(_SOLO)
            self.profiles = self.profiles.with_columns(stays) if self.profiles is not None else None
            self.pending = [frame.with_columns(stays) for frame in self.pending]
        self.compact()
        profiles = self.profiles
        assert profiles is not None
        order = profiles["first_record"].arg_sort().to_numpy()
        rank = np.empty(order.size, dtype=np.int64)
        rank[order] = np.arange(order.size, dtype=np.int64)
        final = rank[np.concatenate(self.position)]  # slot -> profile number
        numbered = profiles[order].with_row_index("profile").with_columns(pl.col("profile").cast(pl.Int64))
        records = self._records()
        records = records.with_columns(profile=pl.Series(final[records["profile"].to_numpy()]))
        return Profiled(records, numbered.with_columns(profile_keys(numbered)).drop(_SOLO))


def profile_records(
    chunks: Iterable[pl.DataFrame],
    isolate: pl.Series | None = None,
    carry: Sequence[str] = (),
    *,
    compact_rows: int = 2_000_000,
    keep_isolated: Callable[[pl.Series], pl.Series] | None = None,
    carry_schema: Mapping[str, pl.DataType] | None = None,
) -> Profiled:
    """Collapse normalised person records (``STANDARD_COLUMNS`` + ``carry``) to profiles, one
    chunk at a time. A district year is 16.8 M records but 2.1 M profiles: what is held of a
    record is its ``record_id``, its profile number and ``carry``, not its attributes. Records
    named in ``isolate`` (steward decisions) stand alone in a profile of their own.

    Each chunk is grouped on its own; its groups wait with those of the next chunks until they
    reach ``compact_rows`` rows (and the profiles so far), then all are grouped again - a year's
    monthly registry snapshots repeat most profiles twelve times, and grouping every chunk's
    groups at once peaked 2 GB higher. Groups carry their rows' numbers, scattered back (a join
    on the nine key columns took twice as long). The profiles do not depend on how the records
    are split into chunks (tested).

    ``keep_isolated``: given the ``isolate`` ids found among the records, those that are to stay
    alone (the others rejoin their identical twins: a steward decision whose other record is no
    longer delivered isolates nothing); ``carry_schema``: the carried columns' types, for no
    chunks at all."""
    grouper = ProfileGrouper(isolate, carry, compact_rows)
    for chunk in chunks:
        grouper.add(chunk)
    return grouper.finish(keep_isolated, carry_schema)


PROFILE_ID = "profile_key"


def profile_keys(profiles: pl.DataFrame) -> pl.Series:
    """A stable id of each profile across runs (profile numbers are not): the MD5 of its
    attributes (and of the record a steward decision isolates), nulls marked."""
    cols = [c for c in (*PROFILE_KEY, _SOLO) if c in profiles.columns]
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
    the keys of the profiles it numbered (:func:`profile_keys`, in profile order) and the pairs
    it kept, by those numbers. While it is kept, a run scores only the pairs that touch a
    profile new since (see :func:`link_records`); the model is trained again once the profiles
    new or gone since its training exceed ``LinkSettings.retrain_share`` of those it was
    trained on.

    Only the pairs a run can use are kept (:func:`_useful_pairs`): at or above the lower of the
    link threshold and the review band, or touching a weak profile (the source-population step
    weighs every pair of those). In a district year that is 15.3 M of 24.5 M scored pairs."""

    model: KeptModel
    profiles: pl.Series  # profile keys; position = profile number in the pairs
    pairs: pl.DataFrame  # PAIR_SCHEMA: unique_id_l < unique_id_r are positions in ``profiles``
    trained_profiles: int
    changed: int  # profiles new or gone since training
    fingerprint: str  # the model code and settings it was made with, and the pairs it keeps


# reads the kept linkage when scoring needs it (None: there is none usable)
KeptSource = Callable[[], KeptLinkage | None]


def linkage_fingerprint(settings: ModelSettings, floor: float = 0.0) -> str:
    """The model's code (features, comparisons, blocking, training), settings and splink
    version, and the probability below which pairs of strong profiles are not kept."""
    # the module's file, not the file of whatever ``score_pairs`` is bound to now: a wrapped
    # score_pairs (a profiler, a test spy) gave another fingerprint and retrained the model
    code = Path(inspect.getfile(identity_model)).read_bytes()
    made_with = [repr(settings), splink_version, hashlib.sha256(code).hexdigest(), repr(float(floor))]
    return hashlib.sha256(repr(made_with).encode()).hexdigest()[:16]


def kept_fingerprint(settings: LinkSettings) -> str:
    """The fingerprint a kept linkage must carry to be used with ``settings``."""
    return linkage_fingerprint(settings.model, min(settings.threshold, settings.review_low))


def _useful_pairs(profiles: pl.DataFrame, floor: float) -> PairFilter | None:
    """The pairs a linkage can use: probability >= ``floor`` (linked or reviewed) or a weak
    profile on either side (the source-population step weighs all of those)."""
    return PairFilter(floor, profiles.filter(pl.col("weak"))["profile"])


def _renumbered(kept: KeptLinkage, keys: pl.Series) -> tuple[pl.DataFrame, np.ndarray]:
    """The kept pairs by this run's profile numbers (pairs of profiles gone are dropped), and
    which of this run's profiles the kept linkage knew."""
    now = keys.to_frame(PROFILE_ID).with_row_index("now")
    before = kept.profiles.to_frame(PROFILE_ID).with_row_index("before")
    matched = before.join(now, on=PROFILE_ID, how="inner")
    position = np.full(kept.profiles.len(), -1, dtype=np.int64)
    position[matched["before"].to_numpy()] = matched["now"].to_numpy()
    known = np.zeros(keys.len(), dtype=bool)
    known[matched["now"].to_numpy()] = True
    pairs = kept.pairs
    if pairs.height == 0:
        return pairs, known
    a = position[pairs["unique_id_l"].to_numpy()]
    b = position[pairs["unique_id_r"].to_numpy()]
    valid = (a >= 0) & (b >= 0)
    out = pairs.with_columns(unique_id_l=pl.Series(np.minimum(a, b)), unique_id_r=pl.Series(np.maximum(a, b)))
    if not valid.all():
        out = out.filter(pl.Series(valid))
    return out, known


def _score(
    profiles: pl.DataFrame, settings: LinkSettings, kept: KeptLinkage | KeptSource | None
) -> tuple[ScoredPairs, KeptLinkage | None, dict[str, int]]:
    """Score the profile pairs: train and score every pair, or, with a usable ``kept``, score
    only the pairs touching profiles it has not seen and take the rest from it (the same scores
    a full scoring with the kept model gives, tested). Only the useful pairs are returned
    (:func:`_useful_pairs`); ``pairs_scored`` counts the pairs the model scored in this run.

    ``kept`` given as a reader (:data:`KeptSource`) is read here, and its pairs are let go once
    renumbered: a district year's 15.3 M kept pairs (0.9 GB) are then held once, not twice."""
    floor = min(settings.threshold, settings.review_low)
    fingerprint = kept_fingerprint(settings)
    useful = _useful_pairs(profiles, floor)
    model_input = profiles.drop(PROFILE_ID).rename({"profile": "unique_id"})
    keys = profiles[PROFILE_ID]
    if callable(kept):
        kept = kept()
    if kept is not None and kept.fingerprint == fingerprint:
        old, known_now = _renumbered(kept, keys)
        kept = replace(kept, pairs=kept.pairs.clear())  # the renumbered pairs stand for them
        new = int((~known_now).sum())
        gone = kept.profiles.len() - int(known_now.sum())
        changed = kept.changed + new + gone
        if changed <= settings.retrain_share * kept.trained_profiles:
            pairs = old.select(*PAIR_SCHEMA)
            fresh = None
            if new:
                flagged = model_input.with_columns(pl.Series(NEW, ~known_now))
                fresh = score_pairs(flagged, settings.model, kept=kept.model, keep=useful)
                pairs = pl.concat([pairs, fresh.pairs])
            pairs = pairs.cast(pl.Schema(PAIR_SCHEMA))
            if not _sorted_pairs(pairs):
                pairs = pairs.sort("unique_id_l", "unique_id_r")
            model = kept.model
            scored = ScoredPairs(
                pairs,
                float(model.model["probability_two_random_records_match"]),
                fresh.parameters if fresh is not None else _parameters(model.model),
                model.training,
                model,
            )
            after = KeptLinkage(model, keys, pairs, kept.trained_profiles, changed, fingerprint)
            fresh_pairs = fresh.scored if fresh is not None else 0
            return (
                scored,
                after,
                {"model_trained": 0, "new_profiles": new, "gone_profiles": gone, "pairs_scored": fresh_pairs},
            )
    scored = score_pairs(model_input, settings.model, keep=useful)
    trained = None
    if scored.kept is not None:
        trained = KeptLinkage(scored.kept, keys, scored.pairs, profiles.height, 0, fingerprint)
    counts = {"model_trained": 1, "new_profiles": profiles.height, "gone_profiles": 0}
    return scored, trained, {**counts, "pairs_scored": scored.scored}


def _sorted_pairs(pairs: pl.DataFrame) -> bool:
    """Whether the pairs are in ``unique_id_l, unique_id_r`` order (renumbering keeps the kept
    pairs' order unless a profile's first record changed, so the sort is rarely needed)."""
    left, right = pl.col("unique_id_l").diff(), pl.col("unique_id_r").diff()
    return bool(pairs.select(((left > 0) | ((left == 0) & (right > 0))).slice(1).all()).item())


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


def _known_decisions(dec: pl.DataFrame, record_ids: pl.Series) -> pl.DataFrame:
    """The decisions whose two records are both among ``record_ids``."""
    named = pl.concat([dec["record_id_l"], dec["record_id_r"]]).unique()
    present = record_ids.filter(record_ids.is_in(named.implode())).implode()
    return dec.filter(pl.col("record_id_l").is_in(present) & pl.col("record_id_r").is_in(present))


def _isolated(dec: pl.DataFrame) -> pl.Series:
    return pl.concat([dec["record_id_l"], dec["record_id_r"]]).unique().sort()


def profile_person_records(
    chunks: Iterable[pl.DataFrame],
    decisions: pl.DataFrame | None = None,
    carry: Sequence[str] = (),
    carry_schema: Mapping[str, pl.DataType] | None = None,
) -> tuple[Profiled, pl.DataFrame]:
    """(:func:`profile_records` of the chunks, the steward decisions both of whose records are
    among them). Records of those decisions stand alone; a decision naming a record that is not
    there (any more) isolates nothing, in the same pass."""

    def add_all(grouper: ProfileGrouper) -> None:
        for chunk in chunks:
            grouper.add(chunk)

    return group_person_records(add_all, decisions, carry, carry_schema)


def group_person_records(
    fill: Callable[[ProfileGrouper], None],
    decisions: pl.DataFrame | None = None,
    carry: Sequence[str] = (),
    carry_schema: Mapping[str, pl.DataType] | None = None,
) -> tuple[Profiled, pl.DataFrame]:
    """:func:`profile_person_records` with the records given by ``fill``, which adds them to a
    :class:`ProfileGrouper` isolating the decisions' records (and may start it from a kept
    snapshot: :mod:`assets.library.profile_base`)."""
    dec = _decisions(decisions)

    def known_records(present: pl.Series) -> pl.Series:
        return _isolated(_known_decisions(dec, present))

    grouper = ProfileGrouper(_isolated(dec), carry)
    fill(grouper)
    profiled = grouper.finish(keep_isolated=known_records, carry_schema=carry_schema)
    if keys_repeat(profiled.records, ["record_id"]):
        raise ValueError("record_id must be unique")
    return profiled, _known_decisions(dec, profiled.records["record_id"])


def link_records(
    records: pl.DataFrame,
    *,
    previous: pl.DataFrame | None = None,
    decisions: pl.DataFrame | None = None,
    settings: LinkSettings | None = None,
    registry: Registry | None = None,
    normalised: bool = False,
    kept: KeptLinkage | KeptSource | None = None,
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
    recs = (
        records.select(STANDARD_COLUMNS).cast(pl.Schema(RECORD_SCHEMA))
        if normalised
        else normalise_records(records, registry).select(STANDARD_COLUMNS)
    )
    profiled, dec = profile_person_records([recs], decisions)
    return link_profiles(profiled, previous=previous, decisions=dec, settings=settings, kept=kept)


def link_profiles(
    profiled: Profiled,
    *,
    previous: pl.DataFrame | pl.Series | None = None,
    decisions: pl.DataFrame | None = None,
    settings: LinkSettings | None = None,
    kept: KeptLinkage | KeptSource | None = None,
) -> LinkResult:
    """:func:`link_records` from the profiles (:func:`profile_person_records`; ``decisions``:
    the known ones it returns). Columns carried with the records come out in the assignments,
    but for ``previous_key``: with it, ``previous`` is the previous run's keys alone
    (:func:`assets.library.identity_keys.assign_keys`). ``kept`` may be a reader of the kept
    linkage (:data:`KeptSource`), so that nothing outside holds its pairs while they are renumbered."""
    settings = settings or LinkSettings()
    dec = _decisions(decisions)
    recs = profiled.records
    carried = [c for c in recs.columns if c not in ("record_id", "profile", PREVIOUS_KEY)]
    by_record = [PREVIOUS_KEY] if PREVIOUS_KEY in recs.columns else []
    if isinstance(previous, pl.Series) and not by_record:
        raise ValueError(f"previous keys alone need each record's {PREVIOUS_KEY} column")
    profiles = profiled.profiles.with_columns(weak=weak_profiles(profiled.profiles))

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
        source_population_pairs(profiles, scored, clustering.clusters(), source_recurrence(profiles))
        if scored.training in ("labels", "em")
        else pl.DataFrame(
            schema={"unique_id_l": pl.Int64, "unique_id_r": pl.Int64, "match_probability": pl.Float64}
        )
    )
    linked_population = clustering.link(
        population.filter(pl.col("match_probability") >= settings.threshold), "source_population"
    )
    # Identical name-only records are not evidence of one person (two meal users
    # called 刘明): a weak profile linked to nothing leaves each record on its own.
    clusters = clustering.clusters().join(profiles.select("profile", "weak"), on="profile", how="left")
    alone = pl.col("weak") & pl.col("link_method").is_null()
    recs = recs.join(clusters, on="profile", how="left").with_columns(
        cluster=pl.when(alone).then(profiles.height + pl.int_range(pl.len())).otherwise(pl.col("cluster"))
    )
    assigned = assign_keys(
        recs.select("record_id", "cluster", *by_record),
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
            *carried,
        )
        .sort("record_id")
        .cast(pl.Schema({**ASSIGNMENT_SCHEMA, **{c: recs.schema[c] for c in carried}}))
    )
    del recs
    # a weak profile linked to nothing: a cluster of its own in the review queue (never linked)
    profile_cluster = clusters.select(
        "profile",
        pl.when(alone).then(-1 - pl.col("profile")).otherwise(pl.col("cluster")).alias("cluster"),
    )
    review = _review_pairs(scored.pairs, population, profile_cluster, profiles, settings, dec)
    stats: dict[str, int | float] = {
        "records": assignments.height,
        "profiles": profiles.height,
        "profiles_without_id": int(profiles["id_number"].null_count()),
        "weak_profiles": int(profiles["weak"].sum()),
        "kept_pairs": scored.pairs.height,  # pairs the linkage uses and keeps (see KeptLinkage)
        "model_links": linked_model,
        "source_population_links": linked_population,
        "elders": int(assigned.keys["elder_key"].n_unique()),  # every cluster has records
        "review_pairs": review.height,
        "prior": scored.prior,
        **scoring,
    }
    return LinkResult(assignments, review, assigned.changes, scored.parameters, stats, kept_after)


def source_recurrence(profiles: pl.DataFrame) -> dict[str, float]:
    """Per source: the share of its ID-bearing records whose elder has another record in it
    (``profiles``: source, id_number and how many ``records`` each profile has)."""
    with_id = profiles.filter(pl.col("id_number").is_not_null())
    if with_id.height == 0:
        return {}
    shares = (
        with_id.group_by("source", "id_number")
        .agg(pl.col("records").sum().cast(pl.Int64).alias("n"))
        .group_by("source")
        .agg((pl.col("n").filter(pl.col("n") > 1).sum().cast(pl.Float64) / pl.col("n").sum()).alias("r"))
    )
    return {str(s): float(r) for s, r in shares.iter_rows()}


def _review_pairs(
    scored: pl.DataFrame,
    population: pl.DataFrame,
    cluster: pl.DataFrame,
    profiles: pl.DataFrame,
    settings: LinkSettings,
    dec: pl.DataFrame,
) -> pl.DataFrame:
    """Pairs in the uncertain band, a representative record per side, with the evidence
    (``cluster``: profile, cluster - whether the two sides ended up in one elder)."""

    def in_band(frame: pl.DataFrame) -> pl.DataFrame:
        return frame.filter(
            pl.col("match_probability").is_between(settings.review_low, settings.review_high, "left")
        )

    ordered = population.select(
        pl.min_horizontal("unique_id_l", "unique_id_r").alias("unique_id_l"),
        pl.max_horizontal("unique_id_l", "unique_id_r").alias("unique_id_r"),
        "match_probability",
    )
    # the few source-population pairs in the band take their weights from the scored pairs:
    # those pairs picked by one 64-bit number per pair first (profile numbers < 2^31), so no
    # hash table is built over the district year's 15 M scored pairs and their two key columns
    weak = in_band(ordered)
    pair = (pl.col("unique_id_l") * (1 << 32) + pl.col("unique_id_r")).alias("pair")
    picked = scored.filter(pair.is_in(weak.select(pair)["pair"].implode())).drop("match_probability")
    weak_band = weak.join(picked, on=["unique_id_l", "unique_id_r"], maintain_order="left").with_columns(
        evidence=pl.lit("source_population")
    )
    band = pl.concat(
        [weak_band, in_band(scored).with_columns(evidence=pl.lit("model"))], how="diagonal_relaxed"
    ).unique(["unique_id_l", "unique_id_r"], keep="first", maintain_order=True)
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

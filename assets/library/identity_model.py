"""The probabilistic half of identity resolution: features, the splink 5 model, scored pairs.

Input is one row per *profile* (a distinct combination of a source's person
attributes, see :mod:`assets.library.identity`); output is the scored profile
pairs that involve at least one profile without a validated resident ID. Pairs
of two ID-bearing profiles are never scored: equal IDs are linked exactly,
different IDs are different people.

Model (DuckDB backend, in memory, deterministic: the same input gives the same scores):
- u probabilities from random sampling with a fixed seed;
- m probabilities from the validated IDs themselves (``estimate_m_from_label_column``:
  every pair of profiles sharing an ID is a known match); with too few ID pairs,
  a fixed expectation-maximisation run (fixed blocking rules, iterations,
  convergence); each m is then mixed with 1% of its u, so a level no labelled
  match showed is a strong penalty, not a veto;
- the prior (probability that two random profiles match) counted from the ID groups;
- inputs too small to train on (a steward's CSV) use ``DEFAULT_PARAMETERS``.

Weak records (a name, perhaps a street: a meal transaction or an LTCI visit
without an ID) are then weighed against the population of their own source:
:func:`source_population_pairs`.
"""

from __future__ import annotations

import copy
import functools
import logging
import math
from dataclasses import dataclass
from typing import Any

import duckdb
import polars as pl
from pypinyin import lazy_pinyin
from splink import Linker, SettingsCreator
from splink.backends.duckdb import DuckDBAPI
from splink.blocking_rule_library import CustomRule
from splink.comparison_library import CustomComparison
from splink.internals.blocking_rule_creator import BlockingRuleCreator
from splink.internals.chunking import _blocked_pairs_cache_key

from assets.staging.normalise import CHANGHAI_ROAD, LEGACY_WUJIAOCHANG, WUJIAOCHANG
from rainbow.frames import best_per_group

# Address forms after staging: 上海市杨浦区 + road + 弄 + 号 + 室; sources abbreviate the head.
_ADDRESS_HEAD = r"^(?:上海市?)?(?:\p{Han}{1,4}区)?"
_BUILDING = r"^(\D+?(?:路|街|道|巷|村|坊|苑|镇))(\d+弄)?(\d+号)"

# The comparisons, in the order their per-field match weights are reported.
COMPARISONS = ("name", "birth_date", "sex", "phone", "address", "street", "other_id")

# Rules that admit almost no false matches: they estimate the prior when there are no IDs.
DETERMINISTIC_RULES = (
    "l.name = r.name AND l.birth_date = r.birth_date",
    "l.name = r.name AND l.phone = r.phone",
    "l.other_id = r.other_id",
)
# Every blocking rule also requires a side without a validated ID (see blocking_rules).
GUARD = "(l.id_number IS NULL OR r.id_number IS NULL)"
BLOCKING_KEYS = ("other_id", "phone", "birth_date", "name_py", "addr")


@dataclass(frozen=True)
class ModelSettings:
    """Fixed training settings: the same input always gives the same model and scores."""

    seed: int = 20261101
    u_max_pairs: float = 2e6
    # Smaller inputs (a steward's CSV) are scored with DEFAULT_PARAMETERS.
    min_profiles_to_train: int = 1_000
    # Below this many ID-labelled profile pairs, m comes from EM instead.
    min_label_pairs: int = 200
    em_max_iterations: int = 25
    em_convergence: float = 1e-4
    # Recall assumed for DETERMINISTIC_RULES when they estimate the prior (EM path).
    deterministic_recall: float = 0.7
    # m of each level mixed with this share of its u: a level no labelled match
    # showed (a birth-date typo) weighs about -6.6 bits instead of splink's -20.
    m_smoothing: float = 0.01
    # Pairs scored below this probability are dropped straight away (kept low: the
    # source-population step weighs a weak record's every plausible candidate).
    min_probability: float = 0.001
    threads: int = 2
    # Pairs are scored in chunks of about this many profiles on the left side (splink's
    # predict_chunk), each chunk's table filtered and dropped before the next: the district
    # year's 24.5 M scored pairs with every intermediate column took 13 GB in one table.
    # Chunks give the same pairs and scores (tested); one chunk below this many profiles.
    predict_chunk_profiles: int = 500_000


# ------------------------------------------------------------------ features


@functools.cache
def _char_pinyin(ch: str) -> str:
    """Tone-less pinyin of one character (itself for anything that is not Chinese)."""
    return lazy_pinyin(ch)[0]


def name_pinyin(name: str) -> str:
    """Tone-less pinyin, character by character: homophones (同音字) give the same string."""
    return " ".join(_char_pinyin(ch) for ch in name)


def _map_unique(s: pl.Series, fn: Any) -> pl.Series:
    """Apply a Python function once per distinct value (names repeat a lot)."""
    values = s.unique().drop_nulls()
    lookup = dict(zip(values.to_list(), [fn(v) for v in values.to_list()], strict=True))
    return s.replace_strict(lookup, default=None, return_dtype=pl.String)


def linkage_features(profiles: pl.DataFrame) -> pl.DataFrame:
    """The columns the model compares, derived from normalised person attributes."""
    addr = pl.col("address").str.replace(_ADDRESS_HEAD, "").str.replace_all(r"\s+", "")
    addr = pl.when(addr == "").then(None).otherwise(addr)
    out = profiles.with_columns(
        name_py=_map_unique(profiles["name"], name_pinyin),
        addr=addr,
        phone_kind=pl.when(pl.col("phone").str.starts_with("021-"))
        .then(pl.lit("landline"))
        .otherwise(pl.when(pl.col("phone").is_not_null()).then(pl.lit("mobile"))),
        other_id_kind=pl.when(pl.col("other_id").str.contains(":"))
        .then(pl.col("other_id").str.extract(r"^([^:]*):", 1))
        .otherwise(pl.when(pl.col("other_id").is_not_null()).then(pl.lit(""))),
    )
    building = pl.col("addr").str.extract_groups(_BUILDING)
    return out.with_columns(
        addr_building=pl.when(building.struct.field("3").is_not_null()).then(
            pl.concat_str(
                [
                    building.struct.field("1"),
                    building.struct.field("2").fill_null(""),
                    building.struct.field("3"),
                ]
            )
        ),
        addr_road=building.struct.field("1"),
    )


# ------------------------------------------------------------------ model


# (m, u) per comparison level for inputs too small to train on (a steward's
# CSV): the model trained on the generated 100,000-elder district sample,
# rounded, with m smoothed as in training.
DEFAULT_PARAMETERS: dict[tuple[str, str], tuple[float, float]] = {
    ("name", "exact"): (0.87, 7e-5),
    ("name", "same pinyin (homophone)"): (0.106, 4e-5),
    ("name", "one character differs (look-alike)"): (0.011, 0.0075),
    ("name", "different"): (0.0106, 0.992),
    ("birth_date", "exact"): (0.99, 1.25e-4),
    ("birth_date", "one digit or day/month swapped"): (2.5e-5, 0.0025),
    ("birth_date", "within a year"): (6.8e-4, 0.068),
    ("birth_date", "different"): (0.0093, 0.93),
    ("sex", "same"): (0.995, 0.503),
    ("sex", "different"): (0.005, 0.497),
    ("phone", "same"): (0.99, 1e-5),
    ("phone", "different"): (0.01, 0.99999),
    ("address", "same home"): (0.986, 8e-6),
    ("address", "same building (road, 弄, 号)"): (1e-5, 1e-4),
    ("address", "same road"): (2.1e-4, 0.0188),
    ("address", "different"): (0.0135, 0.981),
    ("street", "same"): (0.983, 0.089),
    ("street", "五角场镇 and its successor"): (0.0044, 4.6e-4),
    ("street", "different"): (0.0123, 0.910),
    ("other_id", "same"): (0.99, 5e-7),
    ("other_id", "different"): (0.01, 0.9999995),
}
# Prior for untrained inputs: two random records of a district are one elder.
DEFAULT_PRIOR = 1e-5


def _level(sql: str, label: str, **extra: Any) -> dict[str, Any]:
    return {"sql_condition": sql, "label_for_charts": label, **extra}


def _null(*cols: str, extra: str = "") -> dict[str, Any]:
    cond = " OR ".join(f"{c}_l IS NULL OR {c}_r IS NULL" for c in cols)
    return _level(f"{cond}{extra}", "null", is_null_level=True)


def comparison_levels() -> dict[str, list[dict[str, Any]]]:
    """Name (characters, pinyin, look-alikes), birth date, sex, phone, address, street, other ID."""
    successors = f"('{WUJIAOCHANG}', '{CHANGHAI_ROAD}')"
    return {
        "name": [
            _null("name"),
            _level("name_l = name_r", "exact", tf_adjustment_column="name"),
            _level("name_py_l = name_py_r", "same pinyin (homophone)"),
            _level(
                "length(name_l) = length(name_r) AND levenshtein(name_l, name_r) = 1",
                "one character differs (look-alike)",
            ),
            _level("ELSE", "different"),
        ],
        "birth_date": [
            _null("birth_date"),
            _level("birth_date_l = birth_date_r", "exact"),
            _level(
                "levenshtein(strftime(birth_date_l, '%Y%m%d'), strftime(birth_date_r, '%Y%m%d')) <= 1 "
                "OR (year(birth_date_l) = year(birth_date_r) AND month(birth_date_l) = day(birth_date_r) "
                "AND day(birth_date_l) = month(birth_date_r))",
                "one digit or day/month swapped",
            ),
            _level("abs(date_diff('day', birth_date_l, birth_date_r)) <= 366", "within a year"),
            _level("ELSE", "different"),
        ],
        "sex": [_null("sex"), _level("sex_l = sex_r", "same"), _level("ELSE", "different")],
        "phone": [
            # A mobile against a landline says nothing: most elders have both.
            _null("phone", extra=" OR phone_kind_l <> phone_kind_r"),
            _level("phone_l = phone_r", "same"),
            _level("ELSE", "different"),
        ],
        "address": [
            _null("addr"),
            _level("addr_l = addr_r", "same home"),
            _level("addr_building_l = addr_building_r", "same building (road, 弄, 号)"),
            _level("addr_road_l = addr_road_r", "same road"),
            _level("ELSE", "different"),
        ],
        "street": [
            _null("street"),
            _level("street_l = street_r", "same"),
            # The pre-2019 五角场镇 (unresolved without an address) is now 五角场 or 长海路.
            _level(
                f"(street_l = '{LEGACY_WUJIAOCHANG}' AND street_r IN {successors}) "
                f"OR (street_r = '{LEGACY_WUJIAOCHANG}' AND street_l IN {successors})",
                "五角场镇 and its successor",
            ),
            _level("ELSE", "different"),
        ],
        "other_id": [
            # Identifiers of different registers (senior card, platform ID) do not compare.
            _null("other_id", extra=" OR other_id_kind_l <> other_id_kind_r"),
            _level("other_id_l = other_id_r", "same"),
            _level("ELSE", "different"),
        ],
    }


def comparisons(*, trained: bool = True) -> list[CustomComparison]:
    """The model's comparisons; untrained: fixed ``DEFAULT_PARAMETERS``, no term frequencies."""
    out = []
    for name, levels in comparison_levels().items():
        if not trained:
            fixed = []
            for level in levels:
                level = {k: v for k, v in level.items() if k != "tf_adjustment_column"}
                if not level.get("is_null_level"):
                    m, u = DEFAULT_PARAMETERS[(name, level["label_for_charts"])]
                    level.update(m_probability=m, u_probability=u)
                fixed.append(level)
            levels = fixed
        out.append(CustomComparison(output_column_name=name, comparison_levels=[*levels]))
    return out


def blocking_rules() -> list[BlockingRuleCreator]:
    """The candidate pairs for prediction: an equi-join on one key per rule, plus ``GUARD``.

    Every rule also requires that at least one side has no validated ID:
    ID-bearing profiles are linked exactly and never paired with each other.
    So the pairs number (profiles without an ID) x (profiles sharing its key),
    not profiles squared, and each key keeps its blocks small:
    - other_id, phone, addr: one person or one household per value;
    - birth_date: ~27 elders per calendar day at district scale (400,000 elders
      over ~40 birth years = 14,600 days), a few profiles each;
    - name_py (full-name pinyin, so homophone typos share a block): the largest
      blocks are the commonest names, ~0.1% of profiles (297 of 264,156 for
      "li ping" at 100,000 elders).
    Measured at 100,000 elders x 30 days (264,156 profiles, 17,992 without an
    ID): 685,000 candidate pairs (other_id 7.5k, phone 8k, birth_date 159k,
    name_py 511k; addr adds 2). At 400,000 elders both the profiles without an
    ID and the birth-date and name blocks grow 4x: ~11M pairs; the whole linkage
    of 1.8M records took 50 s and 4.2 GB there.
    A name typo that changes the pinyin (look-alike character) on a record
    without birth date, phone, address or other ID is the one case no rule
    catches; it stays unlinked.
    """
    return [CustomRule(f"l.{k} = r.{k} AND {GUARD}", sql_dialect="duckdb") for k in BLOCKING_KEYS]


MODEL_COLUMNS = [
    "unique_id",
    "id_number",
    "name",
    "name_py",
    "sex",
    "birth_date",
    "phone",
    "phone_kind",
    "addr",
    "addr_building",
    "addr_road",
    "street",
    "other_id",
    "other_id_kind",
]


def _label_pairs(profiles: pl.DataFrame) -> int:
    sizes = profiles.filter(pl.col("id_number").is_not_null()).group_by("id_number").len()["len"]
    return int((sizes * (sizes - 1) // 2).sum())


def _prior(profiles: pl.DataFrame) -> float:
    """Probability that two random profiles are the same person, counted from the ID groups."""
    with_id = profiles.filter(pl.col("id_number").is_not_null())
    n = with_id.height
    matches = _label_pairs(with_id)
    if n < 2 or matches == 0:
        return 1.0 / max(profiles.height, 2)
    return min(max(matches / (n * (n - 1) / 2), 1e-9), 0.5)


@dataclass(frozen=True)
class KeptModel:
    """A trained model kept between runs: the splink settings with their m and u (smoothed) and
    the prior, and the name term frequencies it scored with. Scores depend on the two profiles
    and this, nothing else, so a pair scored once keeps its score while the model is kept."""

    model: dict[str, Any]
    tf_name: pl.DataFrame  # name, tf_name
    training: str  # labels | em


@dataclass(frozen=True)
class PairFilter:
    """Which scored pairs to return: those at or above ``floor``, and every pair of a profile in
    ``always`` (profile numbers). Applied where the pairs are scored, so the pairs left out never
    reach Python (a district year: 24.5 M scored, 11.6 M kept)."""

    floor: float
    always: pl.Series


@dataclass(frozen=True)
class ScoredPairs:
    """The model's output: scored pairs, its prior and its per-level parameters."""

    pairs: pl.DataFrame  # unique_id_l < unique_id_r, match_probability, match_weight, mw_<comparison>
    prior: float  # probability that two random profiles are the same elder
    parameters: pl.DataFrame  # comparison, level, m, u, weight (log2 m/u)
    training: str  # labels | em | defaults | none (nothing to score)
    kept: KeptModel | None = None  # the trained (or kept) model that scored them
    scored: int = 0  # pairs the model scored (before a PairFilter)

    @property
    def prior_weight(self) -> float:
        return math.log2(self.prior / (1.0 - self.prior))

    def weight(self, comparison: str, level: str) -> float:
        row = self.parameters.filter((pl.col("comparison") == comparison) & (pl.col("level") == level))
        return float(row["weight"][0]) if row.height else 0.0


# decimals of a comparison's weight kept with a pair (the review queue shows these)
WEIGHT_DECIMALS = 3
PAIR_SCHEMA: dict[str, pl.DataType] = {
    "unique_id_l": pl.Int64(),
    "unique_id_r": pl.Int64(),
    "match_probability": pl.Float64(),
    "match_weight": pl.Float64(),
    # each comparison's weight, only ever shown in the review queue to 3 decimals
    # (``field_weights``): rounded there in DuckDB and held as Float32, the year's 7 x 15.3 M
    # kept weights in 0.43 GB instead of 0.86
    **{f"mw_{c}": pl.Float32() for c in COMPARISONS},
}
PARAMETER_SCHEMA: dict[str, pl.DataType] = {
    "comparison": pl.String(),
    "level": pl.String(),
    "m": pl.Float64(),
    "u": pl.Float64(),
    "weight": pl.Float64(),
}


def _parameters(model: dict[str, Any]) -> pl.DataFrame:
    rows = []
    for comparison in model["comparisons"]:
        for level in comparison["comparison_levels"]:
            if level.get("is_null_level"):
                continue
            m, u = level.get("m_probability"), level.get("u_probability")
            weight = math.log2(m / u) if m and u else None
            rows.append(
                {
                    "comparison": comparison["output_column_name"],
                    "level": level["label_for_charts"],
                    "m": m,
                    "u": u,
                    "weight": weight,
                }
            )
    return pl.DataFrame(rows, schema=PARAMETER_SCHEMA)


def _smoothed(model: dict[str, Any], share: float, u_floor: float) -> dict[str, Any]:
    """The trained model, every level's m mixed with ``share`` of its u.

    A level the u sample never showed (two different people with one senior
    card) gets ``u_floor``, one in the number of sampled pairs.
    """
    for comparison in model["comparisons"]:
        for level in comparison["comparison_levels"]:
            if level.get("is_null_level"):
                continue
            u = level.get("u_probability")
            u = float(u) if isinstance(u, float | int) and u > 0 else u_floor
            m = level.get("m_probability")
            m = float(m) if isinstance(m, float | int) else 0.0
            level["u_probability"] = u
            level["m_probability"] = (1.0 - share) * m + share * u
    return model


def _train(linker: Linker, profiles: pl.DataFrame, settings: ModelSettings) -> str:
    """u by seeded random sampling; m from the validated IDs, or by EM without enough of them."""
    linker.training.estimate_u_using_random_sampling(max_pairs=settings.u_max_pairs, seed=settings.seed)
    if _label_pairs(profiles) >= settings.min_label_pairs:
        linker.training.estimate_m_from_label_column("id_number")
        return "labels"
    # Without ID groups to count, the prior comes from near-certain deterministic rules.
    linker.training.estimate_probability_two_random_records_match(
        [*DETERMINISTIC_RULES], recall=settings.deterministic_recall
    )
    for key in ("birth_date", "name_py"):
        linker.training.estimate_parameters_using_expectation_maximisation(
            f"l.{key} = r.{key}", fix_u_probabilities=True
        )
    return "em"


NEW = "is_new"


def new_pair_rules() -> list[dict[str, str]]:
    """The blocking rules restricted to pairs with a side flagged :data:`NEW` (each rule twice,
    the new side left or right, so DuckDB joins the few new profiles against all, not all
    against all). Their pairs are exactly the full rules' pairs that touch a new profile."""
    return [
        {"blocking_rule": f"l.{k} = r.{k} AND {GUARD} AND {side}.{NEW}", "sql_dialect": "duckdb"}
        for k in BLOCKING_KEYS
        for side in ("l", "r")
    ]


def score_pairs(
    profiles: pl.DataFrame,
    settings: ModelSettings,
    *,
    kept: KeptModel | None = None,
    keep: PairFilter | None = None,
) -> ScoredPairs:
    """Train the model on ``profiles`` and score the candidate pairs.

    ``profiles`` carries ``unique_id`` (int) and the normalised attributes;
    features are derived here. Inputs with fewer than
    ``settings.min_profiles_to_train`` profiles are scored with
    ``DEFAULT_PARAMETERS`` and ``DEFAULT_PRIOR``. Only pairs with
    ``match_probability >= settings.min_probability`` are returned,
    ``unique_id_l < unique_id_r``.

    ``kept``: score with that model and its term frequencies instead of training; with a
    boolean column :data:`NEW` in ``profiles``, only the pairs touching a new profile are
    scored (:func:`new_pair_rules`). A trained run returns its model as ``ScoredPairs.kept``.
    """
    if kept is None:
        trained = profiles.height >= settings.min_profiles_to_train
        prior = _prior(profiles) if trained else DEFAULT_PRIOR
    else:
        trained, prior = True, float(kept.model["probability_two_random_records_match"])
    empty = pl.DataFrame(schema=PAIR_SCHEMA)
    if profiles.height < 2 or profiles["id_number"].null_count() == 0:
        return ScoredPairs(empty, prior, pl.DataFrame(schema=PARAMETER_SCHEMA), "none")
    only_new = kept is not None and NEW in profiles.columns
    frame = linkage_features(profiles).select(*MODEL_COLUMNS, *([NEW] if only_new else []))
    con = duckdb.connect(":memory:")
    splink_log = logging.getLogger("splink")
    level = splink_log.level
    splink_log.setLevel(logging.ERROR)  # "level not observed" notes are expected on synthetic data
    out_kept: KeptModel | None = None
    try:
        con.execute(f"SET threads TO {settings.threads}")
        con.register("profiles_arrow", frame.to_arrow())
        con.execute("CREATE TABLE profiles AS SELECT * FROM profiles_arrow")
        con.unregister("profiles_arrow")
        db_api = DuckDBAPI(con)
        if kept is None:
            creator = SettingsCreator(
                link_type="dedupe_only",
                comparisons=[*comparisons(trained=trained)],
                blocking_rules_to_generate_predictions=[*blocking_rules()],
                probability_two_random_records_match=prior,
                em_convergence=settings.em_convergence,
                max_iterations=settings.em_max_iterations,
                retain_matching_columns=False,
                retain_intermediate_calculation_columns=True,
                unique_id_column_name="unique_id",
                linker_uid="rainbow_identity",
            )
            linker = Linker(db_api.register("profiles"), creator, log_level=None)
            training = "defaults"
            model = linker.misc.save_model_to_json()
            if trained:
                training = _train(linker, profiles, settings)
                model = _smoothed(
                    linker.misc.save_model_to_json(), settings.m_smoothing, 1.0 / settings.u_max_pairs
                )
                as_trained = copy.deepcopy(model)
                linker = Linker(db_api.register("profiles"), model, log_level=None)
                tf = linker.table_management.compute_tf_table("name")
                tf_name = con.sql(f"SELECT name, tf_name FROM {tf.physical_name} ORDER BY name").pl()
                out_kept = KeptModel(as_trained, tf_name, training)
        else:
            model = copy.deepcopy(kept.model)
            if only_new:
                model["blocking_rules_to_generate_predictions"] = new_pair_rules()
            linker = Linker(db_api.register("profiles"), model, log_level=None)
            con.register("tf_name_arrow", kept.tf_name.to_arrow())
            con.execute("CREATE TABLE kept_tf_name AS SELECT * FROM tf_name_arrow")
            con.unregister("tf_name_arrow")
            linker.table_management.register_term_frequency_lookup(db_api.register("kept_tf_name"), "name")
            training = kept.training
            out_kept = kept
        parameters = _parameters(model)
        prior = float(model["probability_two_random_records_match"])
        # only the new profiles' pairs (a new day: tens of thousands) need no chunks
        out, total = _predict(linker, con, settings, 0 if only_new else profiles.height, keep)
    finally:
        splink_log.setLevel(level)
        con.close()
    if out.height == 0:
        return ScoredPairs(empty, prior, parameters, training, out_kept, total)
    pairs = out.sort("unique_id_l", "unique_id_r").cast(pl.Schema(PAIR_SCHEMA))
    return ScoredPairs(pairs, prior, parameters, training, out_kept, total)


def _predict(
    linker: Linker,
    con: duckdb.DuckDBPyConnection,
    settings: ModelSettings,
    profiles: int,
    keep: PairFilter | None,
) -> tuple[pl.DataFrame, int]:
    """Score the candidate pairs (:func:`_predicted`): in one piece, or in chunks of the left
    side's profiles (``ModelSettings.predict_chunk_profiles``), each chunk's splink table and
    blocked pairs dropped once its pairs are selected. The chunks together are splink's
    ``predict(num_chunks_left=n)``: every pair once, the same scores."""
    chunks = max(1, math.ceil(profiles / max(1, settings.predict_chunk_profiles)))
    if chunks == 1:
        predictions = linker.inference.predict(
            threshold_match_probability=settings.min_probability, warning_mode="never"
        )
        return _predicted(con, predictions.physical_name, keep)
    parts: list[pl.DataFrame] = []
    total = 0
    cache = linker._intermediate_table_cache
    for i in range(1, chunks + 1):
        left, right = (i, chunks), (1, 1)
        chunk = linker.inference.predict_chunk(
            left_chunk=left,
            right_chunk=right,
            threshold_match_probability=settings.min_probability,
            warning_mode="never",
        )
        part, scored = _predicted(con, chunk.physical_name, keep)
        parts.append(part)
        total += scored
        chunk.drop_table_from_database_and_remove_from_cache()
        blocked = _blocked_pairs_cache_key(left, right)
        if blocked in cache:
            cache[blocked].drop_table_from_database_and_remove_from_cache()
    return pl.concat(parts), total


def _predicted(
    con: duckdb.DuckDBPyConnection, table: str, keep: PairFilter | None
) -> tuple[pl.DataFrame, int]:
    """(The scored pairs in :data:`PAIR_SCHEMA`'s columns - a comparison's weight with its term
    frequency adjustment - filtered by ``keep``, how many were scored). Selected and filtered in
    DuckDB: splink's output carries every intermediate column (a district year: 24.5 M rows)."""
    columns = set(con.sql(f"SELECT * FROM {table} LIMIT 0").columns)
    weights = []
    for c in COMPARISONS:
        mw = f"CAST(mw_{c} AS DOUBLE)"
        if f"mw_tf_adj_{c}" in columns:
            mw = f"{mw} + CAST(mw_tf_adj_{c} AS DOUBLE)"
        weights.append(f"CAST(round({mw}, {WEIGHT_DECIMALS}) AS FLOAT) AS mw_{c}")
    where = ""
    if keep is not None:
        con.register("always_arrow", keep.always.cast(pl.Int64).to_frame("unique_id").to_arrow())
        con.execute("CREATE OR REPLACE TEMP TABLE keep_always AS SELECT DISTINCT unique_id FROM always_arrow")
        con.unregister("always_arrow")
        where = (
            f"WHERE match_probability >= CAST('{float(keep.floor)!r}' AS DOUBLE) "
            "OR unique_id_l IN (SELECT unique_id FROM keep_always) "
            "OR unique_id_r IN (SELECT unique_id FROM keep_always)"
        )
    total = int(con.execute(f"SELECT count(*) FROM {table}").fetchall()[0][0])
    out = con.sql(
        f"""SELECT CAST(least(unique_id_l, unique_id_r) AS BIGINT) AS unique_id_l,
                   CAST(greatest(unique_id_l, unique_id_r) AS BIGINT) AS unique_id_r,
                   CAST(match_probability AS DOUBLE) AS match_probability,
                   CAST(match_weight AS DOUBLE) AS match_weight,
                   {", ".join(weights)}
            FROM {table} {where}"""
    ).pl()
    return out, total


# ------------------------------------------------------------------ weak records

# A profile that has none of these carries a name (perhaps a street, a sex) and nothing else.
IDENTIFYING = ("id_number", "other_id", "birth_date", "phone", "address")


def weak_profiles(profiles: pl.DataFrame) -> pl.Series:
    """Profiles carrying nothing but a name (and perhaps a street or sex)."""
    return profiles.select(
        pl.all_horizontal([pl.col(c).is_null() for c in IDENTIFYING]) & pl.col("name").is_not_null()
    ).to_series()


def source_population_pairs(
    profiles: pl.DataFrame,
    scored: ScoredPairs,
    clusters: pl.DataFrame,
    recurrence: dict[str, float],
) -> pl.DataFrame:
    """For each weak profile still without an ID-anchored elder: its best elder and the posterior.

    A meal transaction or an LTCI visit without an ID carries just a name, and a
    name alone scores low against the whole population. But such a record comes
    from a service whose users recur: with probability ``r`` (the source's
    recurrence, measured on its records with an ID) its elder is one of the
    ``n_S`` elders already known to that source, otherwise any of the ``N``
    elders. So the prior of a candidate elder ``C`` is ``(1 - r) / N + r / n_S``
    when ``C`` is known to the source and ``(1 - r) / N`` otherwise; the evidence
    is the model's Bayes factor of the best scored pair between the record and
    ``C``'s profiles, and every elder without a scored pair gets the factor of
    a different name. The posterior is normalised over all elders, so two known
    users with the same name split it and neither is linked.

    ``profiles``: profile, source, id_number, weak. ``clusters``: profile, cluster.
    Returns ``unique_id_l`` (the weak profile), ``unique_id_r`` (its best
    candidate's profile), ``match_probability`` (the posterior).
    """
    out_schema = {"unique_id_l": pl.Int64, "unique_id_r": pl.Int64, "match_probability": pl.Float64}
    prof = profiles.select("profile", "source", "id_number", "weak").join(
        clusters.select("profile", "cluster"), on="profile"
    )
    anchored = prof.filter(pl.col("id_number").is_not_null()).select("cluster").unique()
    eligible = prof.filter(pl.col("weak")).join(anchored, on="cluster", how="anti")
    if eligible.height == 0 or scored.pairs.height == 0:
        return pl.DataFrame(schema=out_schema)
    # each eligible profile's pairs with it on the left (a pair of two eligible profiles twice):
    # at 400,000 x 365, 14.3 M of the 15.3 M kept pairs touch a weak profile
    ids = eligible["profile"].implode()
    weights = scored.pairs.select("unique_id_l", "unique_id_r", "match_weight")
    both = pl.concat(
        [
            weights.filter(pl.col("unique_id_l").is_in(ids)),
            weights.filter(pl.col("unique_id_r").is_in(ids)).select(
                pl.col("unique_id_r").alias("unique_id_l"),
                pl.col("unique_id_l").alias("unique_id_r"),
                "match_weight",
            ),
        ]
    )
    del weights
    # Counts exclude the weak record's own (unanchored) elder.
    n_elders = prof["cluster"].n_unique() - 1
    known = prof.select("cluster", "source").unique()
    n_source = known.group_by("source").len().select("source", (pl.col("len") - 1).alias("n_s"))
    # the best pair per weak profile and candidate elder, with only the columns the choice needs
    # (a profile's source joined back after: a sort of the 14 M rows peaked there); a profile's
    # candidates in order of their pair's weight, so each profile's sums below add up alike
    best_pair = best_per_group(
        eligible.select(pl.col("profile").alias("unique_id_l"), pl.col("cluster").alias("own"))
        .join(both, on="unique_id_l")
        .join(prof.select(pl.col("profile").alias("unique_id_r"), "cluster"), on="unique_id_r")
        .filter(pl.col("cluster") != pl.col("own"))
        .select("unique_id_l", "cluster", "unique_id_r", lbf=pl.col("match_weight") - scored.prior_weight),
        ["unique_id_l", "cluster"],  # one source per profile
        "lbf",
        "unique_id_r",
    )
    del both
    cand = (
        best_pair.join(
            eligible.select(pl.col("profile").alias("unique_id_l"), "source"),
            on="unique_id_l",
            how="left",
            maintain_order="left",
        )
        .join(known.with_columns(in_s=pl.lit(True)), on=["cluster", "source"], how="left")
        .join(n_source, on="source", how="left")
        .with_columns(
            r=pl.col("source").replace_strict(recurrence, default=0.0, return_dtype=pl.Float64),
            in_s=pl.col("in_s").fill_null(False),
        )
        .with_columns(r=pl.when(pl.col("n_s") > 0).then(pl.col("r")).otherwise(0.0))
        .with_columns(
            prior=(1 - pl.col("r")) / n_elders
            + pl.when(pl.col("in_s")).then(pl.col("r") / pl.col("n_s")).otherwise(0.0)
        )
        .with_columns(mass=pl.col("prior") * pl.lit(2.0).pow(pl.col("lbf")))
    )
    del best_pair
    else_factor = 2.0 ** scored.weight("name", "different")
    per_record = (
        cand.group_by("unique_id_l")
        .agg(
            pl.col("mass").sum().alias("cand_mass"),
            pl.col("in_s").sum().alias("cand_in_s"),
            pl.len().alias("cand"),
            pl.col("r").first(),
            pl.col("n_s").first(),
        )
        .with_columns(
            rest=(
                (pl.col("n_s") - pl.col("cand_in_s")).clip(lower_bound=0) * pl.col("r") / pl.col("n_s")
                + (n_elders - pl.col("cand")).clip(lower_bound=0) * (1 - pl.col("r")) / n_elders
            )
            .fill_nan(0.0)
            .fill_null(0.0)
            * else_factor
        )
    )
    best = best_per_group(
        cand.join(per_record.select("unique_id_l", "cand_mass", "rest"), on="unique_id_l").select(
            "unique_id_l",
            "unique_id_r",
            match_probability=pl.col("mass") / (pl.col("cand_mass") + pl.col("rest")),
        ),
        ["unique_id_l"],
        "match_probability",
        "unique_id_r",
    )
    return best.cast(pl.Schema(out_schema)).sort("unique_id_l")

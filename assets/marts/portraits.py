"""Elder portraits (老年人服务画像): one row per elder, keyed by a pseudonym.

:func:`build_portraits` reads the library (``library.dim_elder``,
``library.fact_service_event``, ``library.fact_screening``,
``library.fact_vitals_daily``, ``library.elder_devices``) as of the build's as-of
date (the latest service, screening or vital-sign date: outputs depend on the data,
never on the wall clock) and writes three mart tables:

- ``marts/elder_portrait/data.parquet``: age band, street, living arrangement, care
  level and its validity, cognitive status and how recent the screening is,
  vital-sign summary and health signals, use of each programme over 30/90/365 days,
  the vitality segment (活力/介助/介护) with the reason, risk tag codes, recommended
  scenarios and whether the core attributes are complete;
- ``marts/elder_risk_tags/data.parquet``: one row per tag with its evidence (Chinese);
- ``marts/elder_scenarios/data.parquet``: one row per recommended scenario.

How (all rules in ``portrait_rules.yaml``): ``sql/fragments/elder_portrait_base.sql``
(a fragment, not a table of its own) computes the attributes; the rules become three
SQL layers over it (health signals, then the segment, then risk tags and core
completeness); evidence strings are filled from the row in Python; scenario
recommendations match the catalogue's target segments (:mod:`assets.marts.scenarios`).
The elder key is replaced by its pseudonym (:mod:`masking.pseudonym`); no name, ID
number, phone, address or birth date reaches the marts (names only through the
stewards' views of the library).

Column lineage: :func:`elder_portrait_sql`, :func:`elder_risk_tags_sql` and
:func:`elder_scenarios_sql` are the three published tables as one SELECT each over the
same layers (``elder_key`` standing for its pseudonym, evidence via ``concat``), read
by the catalogue with sqlglot (``catalog/python_lineage.yaml`` ``sql_generators``);
tests/marts prove they return what :func:`compute_portraits` does.
"""

from __future__ import annotations

import string
from datetime import date
from typing import Any

import duckdb
import polars as pl

from assets.marts.common import (
    data_as_of,
    ensure_mart_views,
    mart_path,
    read_sql,
    register_parameters,
    write_parquet,
)
from assets.marts.rules import PortraitRules, RiskTag, load_rules
from assets.marts.scenarios import Scenario, load_scenarios, recommend, recommendable
from masking.pseudonym import load_pseudonym_key, pseudonymise
from rainbow.settings import Lake
from schemas.registry import Registry

PORTRAIT = "elder_portrait"
RISK_TAGS = "elder_risk_tags"
SCENARIOS = "elder_scenarios"
PSEUDONYM_PURPOSE = "marts"
MISSING = "未知"

# Output columns in contract order (schemas/marts/portraits.yaml).
PROGRAMMES = ("meal_aid", "love_milk", "device_rental", "family_care_bed", "ltci_home_care", "time_bank")
WINDOWS = (30, 90, 365)
PORTRAIT_COLUMNS = [
    "elder_pseudonym",
    "sex",
    "age_band",
    "street",
    "living_arrangement",
    "status",
    "care_level",
    "care_level_valid_until",
    "care_level_valid",
    "cognitive_status",
    "last_screening_date",
    "last_screening_instrument",
    "days_since_screening",
    "screening_current",
    "has_wristband",
    "has_water_meter",
    "vitals_days_30d",
    "heart_rate_mean_30d",
    "spo2_min_30d",
    "systolic_mean_30d",
    "diastolic_mean_30d",
    "steps_mean_30d",
    "last_vitals_date",
    "health_signals",
    "health_signal_count",
    *[f"{p}_{n}d" for p in PROGRAMMES for n in WINDOWS],
    "ltci_visits_per_week",
    "ltci_entitled_28d",
    "ltci_visits_28d",
    "last_service_date",
    "vitality_segment",
    "vitality_segment_zh",
    "segment_reason",
    "risk_tags",
    "risk_tag_count",
    "recommended_scenarios",
    "core_complete",
    "missing_core",
    "as_of",
]
RISK_TAG_COLUMNS = ["elder_pseudonym", "tag", "tag_zh", "severity", "evidence", "street", "as_of"]
SCENARIO_COLUMNS = [
    "elder_pseudonym",
    "scenario_id",
    "scenario_name",
    "vitality_segment",
    "age_band",
    "street",
    "as_of",
]


def _cond(sql: str) -> str:
    return f"coalesce(({sql}), false)"


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _tag_column(tag: RiskTag) -> str:
    return f"tag__{tag.code.lower()}"


def portrait_sql(rules: PortraitRules) -> str:
    """The base query wrapped in the rules' layers (signals, segment, tags, completeness)."""
    signals = rules.health_signals
    sig_list = ", ".join(f"CASE WHEN {_cond(s.condition)} THEN {_quote(s.code)} END" for s in signals)
    sig_count = " + ".join(f"CASE WHEN {_cond(s.condition)} THEN 1 ELSE 0 END" for s in signals) or "0"
    seg_code, seg_reason = [], []
    for seg in rules.segments:
        for clause in seg.when:
            seg_code.append(f"WHEN {_cond(clause.condition)} THEN {_quote(seg.code)}")
            seg_reason.append(f"WHEN {_cond(clause.condition)} THEN {_quote(clause.reason)}")
    seg_zh = " ".join(f"WHEN {_quote(s.code)} THEN {_quote(s.zh)}" for s in rules.segments)
    tags = ",\n  ".join(
        f"coalesce(seg.status = 'ACTIVE', false) AND {_cond(t.condition)} AS {_tag_column(t)}"
        for t in rules.risk_tags
    )
    core = " AND ".join(_cond(a.condition) for a in rules.core_attributes) or "true"
    missing = ", ".join(
        f"CASE WHEN NOT {_cond(a.condition)} THEN {_quote(a.name)} END" for a in rules.core_attributes
    )
    return f"""
WITH base AS (
{read_sql("fragments/elder_portrait_base")}
),
signals AS (
  SELECT base.*,
    nullif(concat_ws(',', {sig_list}), '') AS health_signals,
    {sig_count} AS health_signal_count
  FROM base
),
seg AS (
  SELECT signals.*,
    CASE WHEN signals.status IS DISTINCT FROM 'ACTIVE' THEN NULL {" ".join(seg_code)} END AS vitality_segment,
    CASE WHEN signals.status IS DISTINCT FROM 'ACTIVE' THEN NULL {" ".join(seg_reason)} END
      AS segment_reason
  FROM signals
)
SELECT seg.*,
  CASE seg.vitality_segment {seg_zh} END AS vitality_segment_zh,
  {tags},
  {core} AS core_complete,
  nullif(concat_ws(',', {missing}), '') AS missing_core
FROM seg
ORDER BY seg.elder_key
"""


def portrait_select() -> str:
    """The full portrait SELECT under the current rules (for the catalogue's sqlglot lineage).

    It reads ``mart_params`` and ``mart_ltci_entitlement``, build parameters (not data).
    """
    return portrait_sql(load_rules())


# ------------------------------------------------------------------ the published tables as SQL
# What build_portraits writes, as one SELECT per table over portrait_sql (elder_key stands for
# its pseudonym, a keyed HMAC computed in Python): read by the catalogue for column lineage.


def _with_portrait(rules: PortraitRules) -> str:
    return f"WITH portrait AS (\n{portrait_sql(rules)}\n)\n"


def evidence_sql(tag: RiskTag, alias: str = "p") -> str:
    """The tag's evidence template as a DuckDB expression over the portrait row (missing -> 未知)."""
    parts: list[str] = []
    for literal, field, _, _ in string.Formatter().parse(tag.evidence):
        if literal:
            parts.append(_quote(literal))
        if field:
            parts.append(f"coalesce(CAST({alias}.{field} AS VARCHAR), {_quote(MISSING)})")
    return f"concat({', '.join(parts)})" if parts else "''"


def _codes_sql(pairs: list[tuple[str, str]]) -> str:
    """Comma-separated codes whose condition holds, in order; NULL when none does."""
    if not pairs:
        return "CAST(NULL AS VARCHAR)"
    cases = ", ".join(f"CASE WHEN {cond} THEN {_quote(code)} END" for cond, code in pairs)
    return f"nullif(concat_ws(',', {cases}), '')"


def _scenarios_for(registry: Registry, scenarios: list[Scenario] | None) -> list[Scenario]:
    """The recommendable scenarios (default: the catalogue, read once per registry for the
    three lineage SELECTs; ``build_portraits`` reads the file afresh every build)."""
    if scenarios is None:
        cached = _CATALOGUE.get(id(registry))
        if cached is None or cached[0] is not registry:
            cached = (registry, load_scenarios(registry, check_kpis=False))
            _CATALOGUE[id(registry)] = cached
        scenarios = cached[1]
    return recommendable(scenarios)


_CATALOGUE: dict[int, tuple[Registry, list[Scenario]]] = {}


def elder_portrait_sql(
    registry: Registry, rules: PortraitRules | None = None, scenarios: list[Scenario] | None = None
) -> str:
    """``marts.elder_portrait`` as one SELECT (``elder_pseudonym`` = ``elder_key``)."""
    rules = rules or load_rules()
    tags = [(f"p.{_tag_column(t)}", t.code) for t in rules.risk_tags]
    recs = [(s.condition("p."), s.id) for s in _scenarios_for(registry, scenarios)]
    special = {
        "elder_pseudonym": "p.elder_key",
        "risk_tags": _codes_sql(tags),
        "risk_tag_count": " + ".join(f"CASE WHEN {c} THEN 1 ELSE 0 END" for c, _ in tags) or "0",
        "recommended_scenarios": _codes_sql(recs),
    }
    columns = ",\n  ".join(f"{special.get(c, f'p.{c}')} AS {c}" for c in PORTRAIT_COLUMNS)
    return f"{_with_portrait(rules)}SELECT\n  {columns}\nFROM portrait AS p"


def _union(rules: PortraitRules, branches: list[str], columns: list[str]) -> str:
    if not branches:
        empty = ", ".join(f"CAST(NULL AS VARCHAR) AS {c}" for c in columns)
        return f"SELECT {empty} WHERE false"
    return _with_portrait(rules) + "\nUNION ALL\n".join(branches)


def elder_risk_tags_sql(registry: Registry, rules: PortraitRules | None = None) -> str:
    """``marts.elder_risk_tags`` as one SELECT: a branch per tag of the rules."""
    rules = rules or load_rules()
    branches = [
        f"SELECT p.elder_key AS elder_pseudonym, {_quote(t.code)} AS tag, {_quote(t.zh)} AS tag_zh, "
        f"{_quote(t.severity)} AS severity, {evidence_sql(t)} AS evidence, p.street AS street, "
        f"p.as_of AS as_of\nFROM portrait AS p WHERE p.{_tag_column(t)}"
        for t in rules.risk_tags
    ]
    return _union(rules, branches, RISK_TAG_COLUMNS)


def elder_scenarios_sql(
    registry: Registry, rules: PortraitRules | None = None, scenarios: list[Scenario] | None = None
) -> str:
    """``marts.elder_scenarios`` as one SELECT: the portraits joined to the recommendable
    scenarios' targets (age band codes x segment codes)."""
    rules = rules or load_rules()
    targets = ",\n    ".join(
        f"({_quote(s.id)}, {_quote(s.name)}, {_list(s.age_bands)}, {_list(s.segments)})"
        for s in _scenarios_for(registry, scenarios)
    )
    if not targets:
        return _union(rules, [], SCENARIO_COLUMNS)
    return f"""{_with_portrait(rules)}, targets AS (
  SELECT * FROM (VALUES
    {targets}
  ) AS t(scenario_id, scenario_name, age_bands, segments)
)
SELECT p.elder_key AS elder_pseudonym, t.scenario_id AS scenario_id, t.scenario_name AS scenario_name,
  p.vitality_segment AS vitality_segment, p.age_band AS age_band, p.street AS street, p.as_of AS as_of
FROM portrait AS p
JOIN targets AS t ON list_contains(t.age_bands, p.age_band) AND list_contains(t.segments, p.vitality_segment)
"""


def _list(values: frozenset[str]) -> str:
    return "[" + ", ".join(_quote(v) for v in sorted(values)) + "]"


def _fmt(value: object) -> str:
    if value is None:
        return MISSING
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def evidence_text(tag: RiskTag, row: dict[str, Any]) -> str:
    """The tag's evidence template filled from the row."""
    return tag.evidence.format(**{f: _fmt(row.get(f)) for f in tag.evidence_fields})


def risk_tag_rows(frame: pl.DataFrame, rules: PortraitRules) -> pl.DataFrame:
    """One row per (elder, tag) raised, with the evidence; in the rules' tag order."""
    rows: list[dict[str, Any]] = []
    for tag in rules.risk_tags:
        col = _tag_column(tag)
        needed = ["elder_key", "street", "as_of", *tag.evidence_fields]
        for row in frame.filter(pl.col(col)).select(needed).iter_rows(named=True):
            rows.append(
                {
                    "elder_key": row["elder_key"],
                    "tag": tag.code,
                    "tag_zh": tag.zh,
                    "severity": tag.severity,
                    "evidence": evidence_text(tag, row),
                    "street": row["street"],
                    "as_of": row["as_of"],
                }
            )
    schema = {
        "elder_key": pl.String,
        "tag": pl.String,
        "tag_zh": pl.String,
        "severity": pl.String,
        "evidence": pl.String,
        "street": pl.String,
        "as_of": pl.Date,
    }
    return pl.DataFrame(rows, schema=schema, orient="row") if rows else pl.DataFrame(schema=schema)


def compute_portraits(
    con: duckdb.DuckDBPyConnection,
    *,
    as_of: date | None = None,
    rules: PortraitRules | None = None,
    scenarios: list[Scenario] | None = None,
) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """Portraits, risk tags and recommendations keyed by ``elder_key`` (not yet pseudonymised).

    The portrait frame keeps ``elder_key`` and ``age`` for the caller; :func:`build_portraits`
    drops both.
    """
    rules = rules or load_rules()
    as_of = as_of or data_as_of(con)
    register_parameters(con, as_of, rules)
    frame = con.sql(portrait_sql(rules)).pl()
    tags = risk_tag_rows(frame, rules)
    recs = recommend(frame, scenarios or [])
    tag_lists = tags.group_by("elder_key", maintain_order=True).agg(
        pl.col("tag").str.join(",").alias("risk_tags"), pl.len().alias("risk_tag_count")
    )
    rec_lists = recs.group_by("elder_key", maintain_order=True).agg(
        pl.col("scenario_id").str.join(",").alias("recommended_scenarios")
    )
    portraits = (
        frame.drop([_tag_column(t) for t in rules.risk_tags])
        .join(tag_lists, on="elder_key", how="left")
        .join(rec_lists, on="elder_key", how="left")
        .with_columns(pl.col("risk_tag_count").fill_null(0).cast(pl.Int64))
        .sort("elder_key")
    )
    recs = recs.join(
        portraits.select("elder_key", "vitality_segment", "age_band", "street", "as_of"), on="elder_key"
    )
    return portraits, tags, recs


def _publish(frame: pl.DataFrame, pseudonyms: pl.DataFrame, columns: list[str]) -> pl.DataFrame:
    """Swap ``elder_key`` for its pseudonym (``pseudonyms``: elder_key -> elder_pseudonym)."""
    return frame.join(pseudonyms, on="elder_key", how="left").select(columns)


def build_portraits(
    lake: Lake,
    con: duckdb.DuckDBPyConnection,
    *,
    as_of: date | None = None,
    scenarios: list[Scenario] | None = None,
    rules: PortraitRules | None = None,
    key: bytes | None = None,
) -> dict[str, Any]:
    """Compute and write the portrait marts; (re)create the ``marts.*`` views; return stats.

    ``scenarios`` defaults to ``catalog/scenarios.yaml`` (validated: a broken catalogue
    raises :class:`catalog.scenarios.ScenarioError`); ``key`` to
    :func:`masking.pseudonym.load_pseudonym_key`.
    """
    if scenarios is None:
        scenarios = load_scenarios()
    rules = rules or load_rules()
    key = key or load_pseudonym_key(lake)
    portraits, tags, recs = compute_portraits(con, as_of=as_of, rules=rules, scenarios=scenarios)
    paths = {name: mart_path(lake, name) for name in (PORTRAIT, RISK_TAGS, SCENARIOS)}
    # one HMAC per elder; tags and recommendations take theirs from the portrait
    names = portraits.select(
        "elder_key", pseudonymise(portraits["elder_key"], key, PSEUDONYM_PURPOSE).alias("elder_pseudonym")
    )
    write_parquet(_publish(portraits, names, PORTRAIT_COLUMNS), paths[PORTRAIT])
    write_parquet(_publish(tags, names, RISK_TAG_COLUMNS).sort("elder_pseudonym", "tag"), paths[RISK_TAGS])
    write_parquet(
        _publish(recs, names, SCENARIO_COLUMNS).sort("elder_pseudonym", "scenario_id"), paths[SCENARIOS]
    )
    ensure_mart_views(con, lake, paths)
    living = portraits.filter(pl.col("status") == "ACTIVE")
    return {
        "as_of": portraits["as_of"][0].isoformat() if portraits.height else None,
        "elders": portraits.height,
        "living": living.height,
        "segments": dict(sorted(living["vitality_segment"].value_counts().iter_rows())),
        "risk_tags": dict(sorted(tags["tag"].value_counts().iter_rows())) if tags.height else {},
        "elders_with_risk_tags": tags["elder_key"].n_unique(),
        "recommendations": recs.height,
        "scenarios": len(scenarios),
        "core_complete_share": (
            round(float(living["core_complete"].mean()), 4)  # type: ignore[arg-type]
            if living.height
            else None
        ),
    }

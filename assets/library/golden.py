"""Survivorship of the golden elder record: which value of each attribute wins, and why.

The rules are data (``survivorship.yaml`` next to this module). From them
:func:`provenance_sql` generates one DuckDB SELECT over the staged tables and
``library.elder_links``: every linked record's value of every attribute is a
candidate; per elder and attribute the candidates are ranked by the rule and
the first wins. The result is ``library.elder_attribute_provenance`` (value,
rule, source table, record, observation time, number of competing values);
``sql/dim_elder.sql`` pivots it into one row per elder.

Candidates are first reduced to (elder, attribute, value, source) with their
count and latest observation, so a meal user's hundred transactions are one
candidate with ``n = 100``.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict

from schemas.registry import Registry

RULES_PATH = Path(__file__).with_name("survivorship.yaml")
Rule = Literal["validated_id", "trusted_source", "most_recent", "most_frequent"]
# Attributes the resident ID itself carries (staging derives them as id_<attr>).
ID_DERIVED = {"sex": "id_sex", "birth_date": "id_birth_date"}
# When a table's row was true: the record's own update time where it has one, else its delivery date.
OBSERVED_AT = {"muni_elders": "updated_at"}


class AttributeRule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    rule: Rule
    fallback: Rule | None = None
    # names: between values equally supported, prefer the one whose rarest character is written by
    # more people (a look-alike or homophone typo is usually a rarer character)
    tie_break: Literal["character_frequency"] | None = None
    sources: list[str]


class Survivorship(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    attributes: dict[str, AttributeRule]


@functools.cache
def load_rules(path: Path = RULES_PATH) -> Survivorship:
    return Survivorship.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")))


def source_column(source: str, attr: str) -> tuple[str, str]:
    """``table`` or ``table.column`` (where the table names the attribute otherwise)."""
    table, _, column = source.partition(".")
    return table, column or attr


def validate_rules(rules: Survivorship, registry: Registry) -> None:
    """Every listed source is a staged table with that column (or the ID it derives from)."""
    problems = []
    for attr, rule in rules.attributes.items():
        if rule.rule == "validated_id" and attr not in ID_DERIVED:
            problems.append(f"{attr}: validated_id applies only to {sorted(ID_DERIVED)}")
        if rule.rule == "validated_id" and rule.fallback in (None, "validated_id"):
            problems.append(f"{attr}: validated_id needs another fallback rule")
        for src in rule.sources:
            name, column = source_column(src, attr)
            try:
                table = registry.table(name)
            except KeyError:
                problems.append(f"{attr}: unknown source table {name!r}")
                continue
            if column not in table.column_names:
                problems.append(f"{attr}: table {name} has no column {column!r}")
    if problems:
        raise ValueError("survivorship rules:\n  " + "\n  ".join(problems))


def _order(rule: Rule) -> str:
    return {
        "trusted_source": "priority, observed_at DESC, freq DESC, value",
        "most_recent": "observed_at DESC, priority, freq DESC, value",
        "most_frequent": (
            "sources DESC, plausibility DESC, freq DESC, value_observed_at DESC, priority, value"
        ),
        "validated_id": "freq DESC, value_observed_at DESC, priority, value",
    }[rule]


CHAR_TABLE = "_provenance_char_people"
AFFECTED_TABLE = "_provenance_affected"
AFFECTED_LINKS_TABLE = "_provenance_affected_links"
PARTS = ("whole", "chars", "char_rows", "range", "subset")


def source_tables(rules: Survivorship | None = None) -> list[str]:
    """The staged tables any attribute takes candidates from."""
    rules = rules or load_rules()
    return sorted({source_column(src, a)[0] for a, r in rules.attributes.items() for src in r.sources})


def tie_break_attributes(rules: Survivorship | None = None) -> list[str]:
    """Attributes whose winner may depend on other elders (the district-wide character plausibility)."""
    rules = rules or load_rules()
    return [a for a, r in rules.attributes.items() if r.tie_break == "character_frequency"]


def attribute_order_sql(rules: Survivorship | None = None) -> str:
    """The rows' order within an elder: the attributes as the rules list them."""
    rules = rules or load_rules()
    whens = " ".join(f"WHEN '{a}' THEN {i}" for i, a in enumerate(rules.attributes))
    return f"CASE attribute {whens} END"


def provenance_sql(registry: Registry, rules: Survivorship | None = None, *, part: str = "whole") -> str:
    """One SELECT producing ``elder_attribute_provenance`` (contract: schemas/library/basics.yaml).

    ``part`` splits it for big districts, where the window functions over every elder do
    not fit in memory: ``"chars"`` selects only the district-wide character plausibility
    (``char_people``, the one step that looks across elders), ``"char_rows"`` the characters of
    every candidate spelling it counts (``attribute, elder_key, value, ch``); ``"range"`` is the whole
    query for the elders with ``getvariable('prov_lo') <= elder_key < getvariable('prov_hi')``
    reading that step from the temporary table :data:`CHAR_TABLE`. Ranges in key order,
    concatenated, give exactly the ``"whole"`` result. ``"subset"`` is ``"range"`` for only
    the elders whose links the temporary table :data:`AFFECTED_LINKS_TABLE` holds (``record_id,
    source_table, source_file, row_number, elder_key`` of the elders :data:`AFFECTED_TABLE`
    lists: a new day recomputes the elders whose inputs changed, as an elder's rows depend on
    its own records and on ``char_people``, nothing else).
    """
    if part not in PARTS:
        raise ValueError(f"part must be one of {', '.join(PARTS)}, not {part!r}")
    rules = rules or load_rules()
    validate_rules(rules, registry)
    typo_checked = tie_break_attributes(rules)
    by_table: dict[str, dict[str, str]] = {}  # table -> attribute -> column
    priority: dict[tuple[str, str], int] = {}
    for attr, rule in rules.attributes.items():
        if part == "char_rows" and attr not in typo_checked:
            continue  # only the tie-broken attributes' spellings are counted
        for prio, src in enumerate(rule.sources):
            table, column = source_column(src, attr)
            by_table.setdefault(table, {})[attr] = column
            priority[(table, attr)] = prio
    in_range = (
        " AND elder_key >= getvariable('prov_lo') AND elder_key < getvariable('prov_hi')"
        if part in ("range", "subset")
        else ""
    )
    # a table the planner knows the size of: a semi join with the affected elders inside each
    # table's links was applied after the join with the staged rows (15 GB at 400,000 x 365)
    links_source = AFFECTED_LINKS_TABLE if part == "subset" else "library.elder_links"
    ctes: list[str] = []
    branches: list[str] = []
    for table, attrs in by_table.items():
        cols = registry.table(table).column_names
        observed = OBSERVED_AT.get(table)
        observed_sql = f"CAST(t.{observed or '_delivery_date'} AS TIMESTAMP)"
        id_cols = [ID_DERIVED[a] for a in attrs if a in ID_DERIVED and "id_number" in cols]
        values = [
            *[f"CAST(t.{c} AS VARCHAR) AS {a}" for a, c in attrs.items()],
            *[f"CAST(t.{c} AS VARCHAR) AS {c}" for c in id_cols],
        ]
        # one row per elder and distinct combination of the table's values (a meal user's
        # hundred transactions with one spelling are one row with n = 100): the candidates'
        # count, latest observation and latest record combine over these rows as over records
        select = ", ".join(
            [
                "l.elder_key",
                *values,
                "count(*) AS n",
                f"max({observed_sql}) AS observed_at",
                # the latest record: (time, id) as the candidates order them
                f"max(struct_pack(t := {observed_sql}, r := l.record_id)) AS latest",
            ]
        )
        # each table's links read on their own (not one shared CTE of every link, which DuckDB
        # materialises whole): the join's hash table holds one table's links at a time
        links = (
            f"(SELECT record_id, source_file, row_number, elder_key FROM {links_source} "
            f"WHERE source_table = '{table}'{in_range})"
        )
        ctes.append(
            f"obs_{table} AS (SELECT {select} FROM staged.{table} AS t JOIN {links} AS l "
            "ON l.source_file = t._source_file AND l.row_number = t._row_number GROUP BY ALL)"
        )
        for attr in attrs:
            rule = rules.attributes[attr]
            prio = priority[(table, attr)]
            branches.append(
                f"SELECT elder_key, latest, observed_at, n, '{attr}' AS attribute, {attr} AS value, "
                f"'{table}' AS source_table, {prio} AS priority, FALSE AS via_id FROM obs_{table} "
                f"WHERE {attr} IS NOT NULL"
            )
            if attr in ID_DERIVED and rule.rule == "validated_id" and ID_DERIVED[attr] in id_cols:
                branches.append(
                    f"SELECT elder_key, latest, observed_at, n, '{attr}' AS attribute, "
                    f"{ID_DERIVED[attr]} AS value, "
                    f"'{table}' AS source_table, {prio} AS priority, TRUE AS via_id FROM obs_{table} "
                    f"WHERE {ID_DERIVED[attr]} IS NOT NULL"
                )
    union = "\n    UNION ALL ".join(branches) or (  # no attribute counted: none observed
        "SELECT NULL::VARCHAR AS elder_key, struct_pack(t := NULL::TIMESTAMP, r := NULL::VARCHAR) AS latest, "
        "NULL::TIMESTAMP AS observed_at, 0 AS n, "
        "NULL::VARCHAR AS attribute, NULL::VARCHAR AS value, NULL::VARCHAR AS source_table, "
        "0 AS priority, FALSE AS via_id WHERE FALSE"
    )
    ctes.append(f"observations AS (\n    {union}\n)")
    listed = ", ".join(f"'{a}'" for a in typo_checked) or "NULL"
    if part == "char_rows":
        # the distinct spellings straight from the observations: the candidates aggregate over
        # every attribute of every record (arg_max of record ids) peaked at 4.1 GB at 400,000 x 365
        # each spelling split once (not once per record or combination it was seen in)
        ctes.append(
            "chars AS (SELECT DISTINCT attribute, elder_key, value, unnest(string_split(value, '')) AS ch "
            "FROM (SELECT DISTINCT attribute, elder_key, value FROM observations "
            f"WHERE attribute IN ({listed})))"
        )
        return "WITH " + ",\n".join(ctes) + "\nSELECT attribute, elder_key, value, ch FROM chars"
    ctes.append(
        "candidates AS (SELECT elder_key, attribute, value, source_table, priority, via_id, "
        "CAST(sum(n) AS BIGINT) AS n, max(observed_at) AS observed_at, "
        "max(latest).r AS record_id "
        "FROM observations GROUP BY ALL)"
    )
    ctes.append(
        "chars AS (SELECT DISTINCT attribute, elder_key, value, unnest(string_split(value, '')) AS ch "
        f"FROM candidates WHERE attribute IN ({listed}))"
    )
    if part in ("range", "subset"):
        ctes.append(f"char_people AS (SELECT attribute, ch, people FROM {CHAR_TABLE})")
    else:
        ctes.append(
            "char_people AS (SELECT attribute, ch, count(DISTINCT elder_key) AS people "
            "FROM chars GROUP BY ALL)"
        )
    if part == "chars":
        return "WITH " + ",\n".join(ctes) + "\nSELECT attribute, ch, people FROM char_people"
    ctes.append(
        "plausible AS (SELECT c.attribute, c.elder_key, c.value, min(p.people) AS plausibility "
        "FROM chars AS c JOIN char_people AS p USING (attribute, ch) GROUP BY ALL)"
    )
    ctes.append(
        "scored AS (SELECT c.*, coalesce(p.plausibility, 0) AS plausibility, "
        "sum(n) OVER (PARTITION BY elder_key, attribute, via_id, value) AS freq, "
        "count(*) OVER (PARTITION BY elder_key, attribute, via_id, value) AS sources, "
        "max(observed_at) OVER (PARTITION BY elder_key, attribute, via_id, value) AS value_observed_at, "
        "count(DISTINCT value) OVER (PARTITION BY elder_key, attribute) AS candidates "
        "FROM candidates AS c LEFT JOIN plausible AS p USING (attribute, elder_key, value))"
    )
    cases = []
    for attr, rule in rules.attributes.items():
        if rule.rule == "validated_id":
            fallback = rule.fallback or "trusted_source"
            # via_id first (most frequent ID-derived value), then the fallback order on declared values
            order = f"via_id DESC, CASE WHEN via_id THEN -freq ELSE 0 END, {_order(fallback)}"
            label = f"CASE WHEN via_id THEN 'validated_id' ELSE '{fallback}' END"
        else:
            order = _order(rule.rule)
            label = f"'{rule.rule}'"
        cases.append((attr, order, label))
    order_sql = attribute_order_sql(rules)
    ranked_parts = []
    for attr, order, label in cases:
        ranked_parts.append(
            f"SELECT elder_key, attribute, value, {label} AS rule, source_table, record_id, observed_at, "
            f"candidates, row_number() OVER (PARTITION BY elder_key ORDER BY {order}) AS rank "
            f"FROM scored WHERE attribute = '{attr}'"
        )
    ctes.append("ranked AS (\n    " + "\n    UNION ALL ".join(ranked_parts) + "\n)")
    body = ",\n".join(ctes)
    return (
        f"WITH {body}\n"
        "SELECT elder_key, attribute, value, rule, source_table, record_id, observed_at, "
        "CAST(candidates AS BIGINT) AS candidates\n"
        f"FROM ranked WHERE rank = 1\nORDER BY elder_key, {order_sql}"
    )

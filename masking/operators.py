"""Masking operators as DuckDB SQL expression builders.

Each operator turns a column reference into one SQL expression (or ``None``: the column
is dropped), so a role view is a plain ``SELECT`` that sqlglot reads for lineage and
that runs in any DuckDB connection. The two keyed operators call functions that
:func:`masking.access.open_role_connection` registers on its own connection with the
key in a Python closure: the key is never part of any SQL text or database file.

=================  =========================================  ===========================
operator           does                                       example
=================  =========================================  ===========================
keep               the value as stored                        张三丰
mask_name          first character, ``*``, last character     张*丰, 李* (two characters)
mask_phone         mobile 3 + 4, landline area code + 4       138****1234, 021-****5678
mask_id            resident ID: area code and birth year      3101101948********
mask_tail          only the last four characters              ******1234
keyed_hash         HMAC-SHA256 (hash key), 20 hex characters  9f0c...
pseudonym          the marts' elder pseudonym of elder_key    8c266d950f1ec92c6352
age_band           5-year band as in code list ``age_band``   80-84, 100+, <60
address_to_street  the row's street (街道) name from its code 定海路街道
date_to_month      first day of the month (a DATE)            2026-11-01
drop               the column is not in the view              -
=================  =========================================  ===========================
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal, get_args

OperatorName = Literal[
    "keep",
    "mask_name",
    "mask_phone",
    "mask_id",
    "mask_tail",
    "keyed_hash",
    "pseudonym",
    "age_band",
    "address_to_street",
    "date_to_month",
    "drop",
]
OPERATORS: tuple[str, ...] = get_args(OperatorName)

# Functions registered per connection (masking.access); user SQL may not call them.
INTERNAL_PREFIX = "_rb_"
KEYED_HASH_FUNCTION = f"{INTERNAL_PREFIX}keyed_hash"
PSEUDONYM_FUNCTION = f"{INTERNAL_PREFIX}pseudonym"

DUCK_TYPES = {
    "string": "VARCHAR",
    "integer": "BIGINT",
    "decimal": "DOUBLE",
    "date": "DATE",
    "timestamp": "TIMESTAMP",
    "boolean": "BOOLEAN",
}


def quote(name: str) -> str:
    """A DuckDB identifier in double quotes."""
    return '"' + name.replace('"', '""') + '"'


def literal(value: str) -> str:
    """A DuckDB string literal."""
    return "'" + value.replace("'", "''") + "'"


@dataclass(frozen=True)
class ColumnRef:
    """What an operator needs to know about the column it masks.

    ``sql`` is the input expression (``src."phone"``, or a typed NULL when the base
    table lacks the column); ``street_sql`` the row's street code expression, if the
    table has one; ``street_names`` code -> Chinese name (code list ``street``).
    """

    sql: str
    type: str = "string"
    street_sql: str | None = None
    street_names: Mapping[str, str] = field(default_factory=dict)


def _keep(c: ColumnRef) -> str:
    return c.sql


def _mask_name(c: ColumnRef) -> str:
    v = f"trim({c.sql})"
    return (
        f"CASE WHEN {c.sql} IS NULL THEN NULL "
        f"WHEN length({v}) <= 1 THEN '*' "
        f"WHEN length({v}) = 2 THEN left({v}, 1) || '*' "
        f"ELSE left({v}, 1) || repeat('*', length({v}) - 2) || right({v}, 1) END"
    )


def _mask_phone(c: ColumnRef) -> str:
    v = c.sql
    return (
        f"CASE WHEN {v} IS NULL THEN NULL "
        f"WHEN regexp_full_match({v}, '1[0-9]{{10}}') THEN left({v}, 3) || '****' || right({v}, 4) "
        f"WHEN regexp_full_match({v}, '0[0-9]{{2,3}}-[0-9]{{7,8}}') "
        f"THEN split_part({v}, '-', 1) || '-****' || right({v}, 4) "
        f"WHEN length({v}) > 4 THEN repeat('*', length({v}) - 4) || right({v}, 4) "
        f"ELSE '****' END"
    )


def _mask_id(c: ColumnRef) -> str:
    v = c.sql
    return (
        f"CASE WHEN regexp_full_match({v}, '[0-9]{{17}}[0-9Xx]') THEN left({v}, 10) || '********' "
        f"WHEN regexp_full_match({v}, '[0-9]{{15}}') THEN left({v}, 6) || '19' || substr({v}, 7, 2) "
        f"|| '********' ELSE NULL END"
    )


def _mask_tail(c: ColumnRef) -> str:
    v = f"CAST({c.sql} AS VARCHAR)"
    return (
        f"CASE WHEN {c.sql} IS NULL THEN NULL "
        f"WHEN length({v}) > 4 THEN repeat('*', length({v}) - 4) || right({v}, 4) ELSE '****' END"
    )


def _keyed_hash(c: ColumnRef) -> str:
    return f"{KEYED_HASH_FUNCTION}(CAST({c.sql} AS VARCHAR))"


def _pseudonym(c: ColumnRef) -> str:
    return f"{PSEUDONYM_FUNCTION}(CAST({c.sql} AS VARCHAR))"


def _age_band(c: ColumnRef) -> str:
    a = f"CAST({c.sql} AS BIGINT)"
    return (
        f"CASE WHEN {c.sql} IS NULL THEN NULL WHEN {a} < 60 THEN '<60' WHEN {a} >= 100 THEN '100+' "
        f"ELSE CAST({a} // 5 * 5 AS VARCHAR) || '-' || CAST({a} // 5 * 5 + 4 AS VARCHAR) END"
    )


def _address_to_street(c: ColumnRef) -> str | None:
    if c.street_sql is None or not c.street_names:
        return None  # nothing to generalise to: the address is dropped
    whens = " ".join(f"WHEN {literal(code)} THEN {literal(name)}" for code, name in c.street_names.items())
    return f"CASE {c.street_sql} {whens} ELSE NULL END"


def _date_to_month(c: ColumnRef) -> str:
    return f"CAST(date_trunc('month', {c.sql}) AS DATE)"


def _drop(c: ColumnRef) -> None:
    return None


BUILDERS: dict[str, Callable[[ColumnRef], str | None]] = {
    "keep": _keep,
    "mask_name": _mask_name,
    "mask_phone": _mask_phone,
    "mask_id": _mask_id,
    "mask_tail": _mask_tail,
    "keyed_hash": _keyed_hash,
    "pseudonym": _pseudonym,
    "age_band": _age_band,
    "address_to_street": _address_to_street,
    "date_to_month": _date_to_month,
    "drop": _drop,
}


def build(operator: str, column: ColumnRef) -> str | None:
    """The SQL expression of ``operator`` over ``column``; None when the column is dropped."""
    try:
        builder = BUILDERS[operator]
    except KeyError:
        raise ValueError(f"unknown masking operator {operator!r}; expected one of {OPERATORS}") from None
    return builder(column)


def output_type(operator: str, input_type: str) -> str:
    """The contract type (string, date, ...) of the operator's result."""
    if operator == "keep":
        return input_type
    if operator == "date_to_month":
        return "date"
    return "string"


def suppressed(expr: str, persons: str, k: int) -> str:
    """``expr`` when ``persons`` >= k, else NULL (never the small number)."""
    return f"CASE WHEN {persons} >= {int(k)} THEN {expr} ELSE NULL END"

"""masking.operators: each operator's SQL evaluated by DuckDB on hand-picked values."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

import duckdb
import pytest
import sqlglot

from masking.operators import OPERATORS, ColumnRef, build, output_type, suppressed

STREETS = {"310110001000": "定海路街道", "310110006000": "平凉路街道"}


def run(operator: str, value: Any, type_: str = "string", street: str | None = None) -> Any:
    con = duckdb.connect()
    col = ColumnRef("t.v", type_, "t.s", STREETS)
    expr = build(operator, col)
    assert expr is not None
    sqlglot.parse_one(expr, read="duckdb")  # pure SQL that sqlglot reads
    row = con.execute(f"SELECT {expr} FROM (SELECT ? AS v, ? AS s) AS t", [value, street]).fetchone()
    assert row is not None
    return row[0]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("张三", "张*"),
        ("张三丰", "张*丰"),
        ("欧阳娜娜", "欧**娜"),
        ("王", "*"),
        (" 李四 ", "李*"),
        (None, None),
    ],
)
def test_when_name_masked_then_first_and_last_character_remain(
    value: str | None, expected: str | None
) -> None:
    assert run("mask_name", value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("13812341234", "138****1234"),
        ("021-65435678", "021-****5678"),
        ("0512-1234567", "0512-****4567"),
        ("65435678", "****5678"),
        ("123", "****"),
        (None, None),
    ],
)
def test_when_phone_masked_then_prefix_and_last_four_remain(value: str | None, expected: str | None) -> None:
    assert run("mask_phone", value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("310110194805121234", "3101101948********"),
        ("31011019480512123x", "3101101948********"),
        ("310110480512123", "3101101948********"),  # 15-digit: birth year 19yy
        ("not an id", None),
        (None, None),
    ],
)
def test_when_resident_id_masked_then_area_code_and_birth_year_remain(
    value: str | None, expected: str | None
) -> None:
    assert run("mask_id", value) == expected


@pytest.mark.parametrize(
    ("age", "band"), [(59, "<60"), (60, "60-64"), (64, "60-64"), (82, "80-84"), (99, "95-99"), (100, "100+")]
)
def test_when_age_generalised_then_band_of_code_list(age: int, band: str) -> None:
    assert run("age_band", age, "integer") == band


def test_when_date_generalised_then_first_of_month() -> None:
    assert run("date_to_month", date(1948, 5, 12), "date") == date(1948, 5, 1)
    assert run("date_to_month", datetime(2026, 11, 3, 11, 30), "timestamp") == date(2026, 11, 1)


def test_when_address_generalised_then_street_name_of_row() -> None:
    assert run("address_to_street", "上海市杨浦区控江路1000弄1号101室", street="310110001000") == "定海路街道"
    assert run("address_to_street", "某地址", street=None) is None
    # a table without a street column: nothing to generalise to, the address is dropped
    assert build("address_to_street", ColumnRef("t.v")) is None


def test_when_tail_masked_then_last_four_remain() -> None:
    assert run("mask_tail", "SC00012345") == "******2345"
    assert run("mask_tail", "123") == "****"


def test_keyed_operators_call_connection_functions_and_drop_is_none() -> None:
    assert build("keyed_hash", ColumnRef("x")) == "_rb_keyed_hash(CAST(x AS VARCHAR))"
    assert build("pseudonym", ColumnRef("x")) == "_rb_pseudonym(CAST(x AS VARCHAR))"
    assert build("drop", ColumnRef("x")) is None
    assert build("keep", ColumnRef("x")) == "x"
    with pytest.raises(ValueError, match="unknown masking operator"):
        build("blur", ColumnRef("x"))
    assert set(OPERATORS) >= {"keep", "drop", "keyed_hash"}
    assert output_type("date_to_month", "timestamp") == "date"
    assert output_type("keep", "integer") == "integer"
    assert output_type("age_band", "integer") == "string"


def test_when_fewer_than_k_then_suppressed_to_null() -> None:
    con = duckdb.connect()
    expr = suppressed("count(*)", "count(DISTINCT p)", 5)
    rows = con.sql(
        f"SELECT g, {expr} FROM (SELECT range % 2 AS g, range AS p FROM range(13)) GROUP BY g ORDER BY g"
    ).fetchall()
    assert rows == [(0, 7), (1, 6)]
    rows = con.sql(f"SELECT {expr} FROM (SELECT range AS p FROM range(4))").fetchall()
    assert rows == [(None,)]

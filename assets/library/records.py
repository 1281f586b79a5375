"""Person records for the master elder index (老年人主索引): every staged row that names an elder.

- :func:`elder_tables` and the extraction of a staged table's subject columns into the standard
  person-record columns (``STANDARD_COLUMNS``) with their lineage;
- :func:`normalise_records` - the staging normalisers (``assets.staging.normalise``)
  applied to a person-record table from anywhere (a steward's CSV, an API).

:mod:`assets.library.record_cache` reads and keeps them between runs; its kept records' version
covers this module and staging's normalisers (:func:`_normaliser_fingerprint`), so a change to
the linkage, or to how the records are kept, does not normalise them again.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
from pathlib import Path
from typing import Any

import polars as pl

from assets.staging.normalise import Rule, rule_for, with_clean_texts, with_stages
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


PERSON_RECORD_SCHEMA: dict[str, pl.DataType] = {
    **RECORD_SCHEMA,
    "_source_file": pl.String(),
    "_row_number": pl.Int64(),
    "_delivery_date": pl.Date(),
}


@functools.cache
def _normaliser_fingerprint() -> str:
    """The code of the normalisation (staging's normalisers and this module): a change to either
    file makes the kept records stale. Whole files, not ``inspect.getsource`` of the functions:
    that reads the file as it is now at the line numbers of the code as imported, so an edit
    above them gave another fingerprint for the same code (measured: a bench's new day
    normalised every record again)."""
    files = (inspect.getfile(rule_for), __file__)
    return hashlib.sha256(b"".join(Path(f).read_bytes() for f in files)).hexdigest()[:16]


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
    work = with_stages(with_clean_texts(text, STANDARD_COLUMNS), list(rules.values()))
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

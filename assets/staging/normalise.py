"""Column normalisers, one per semantic, as Polars expressions.

Each :class:`Rule` turns a raw text column into its staged value plus the
reasons (hard rules: the row goes to quarantine) and flags (soft problems: the
row is staged and flagged) that apply to it. Reason codes are the ones
``sample_data/faults.yaml`` names, so the generator's truth scores staging.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date

import polars as pl

from rainbow.ids import area_existed
from schemas.contract import Column, Table
from schemas.reference import road_to_street
from schemas.registry import Registry

# Hard reasons (quarantine).
ID_CHECKSUM = "ID_CHECKSUM"
ID_INVALID = "ID_INVALID"
BAD_DATE = "BAD_DATE"
FUTURE_DATE = "FUTURE_DATE"
BAD_NUMBER = "BAD_NUMBER"
OUT_OF_RANGE = "OUT_OF_RANGE"
UNKNOWN_CODE = "UNKNOWN_CODE"
MISSING_REQUIRED = "MISSING_REQUIRED"
DUPLICATE_KEY = "DUPLICATE_KEY"
BROKEN_LINE = "BROKEN_LINE"
# Soft flags (staged).
ID_UPGRADED_15 = "ID_UPGRADED_15"
ID_REFORMATTED = "ID_REFORMATTED"
ID_BIRTH_MISMATCH = "ID_BIRTH_MISMATCH"
ID_SEX_MISMATCH = "ID_SEX_MISMATCH"
PHONE_REFORMATTED = "PHONE_REFORMATTED"
PHONE_INVALID = "PHONE_INVALID"
NAME_SPACES = "NAME_SPACES"
ADDRESS_COMPLETED = "ADDRESS_COMPLETED"
STREET_LEGACY_RESOLVED = "STREET_LEGACY_RESOLVED"
STREET_LEGACY_UNRESOLVED = "STREET_LEGACY_UNRESOLVED"
DATE_FORM = "DATE_FORM"

HARD_REASONS = (
    ID_CHECKSUM,
    ID_INVALID,
    BAD_DATE,
    FUTURE_DATE,
    BAD_NUMBER,
    OUT_OF_RANGE,
    UNKNOWN_CODE,
    MISSING_REQUIRED,
    DUPLICATE_KEY,
    BROKEN_LINE,
)
LEGACY_WUJIAOCHANG = "310110103000"
WUJIAOCHANG = "310110019000"
CHANGHAI_ROAD = "310110021000"
EXCEL_EPOCH = date(1899, 12, 30)
ID_WEIGHTS = [pow(2, 17 - i, 11) for i in range(17)]
DATE_FORMS = ("%Y-%m-%d", "%Y/%m/%d", "%Y年%m月%d日", "%Y%m%d", "%Y.%m.%d")
TIMESTAMP_FORMS = (
    "%Y-%m-%d %H:%M:%S",
    "%Y-%m-%d %H:%M",
    "%Y/%m/%d %H:%M:%S",
    "%Y/%m/%d %H:%M",
    "%Y-%m-%dT%H:%M:%S",
    "%Y%m%d%H%M%S",
    "%Y年%m月%d日 %H:%M",
)
RAW_TYPES: dict[str, pl.DataType] = {
    "string": pl.String(),
    "integer": pl.Int64(),
    "decimal": pl.Float64(),
    "date": pl.Date(),
    "timestamp": pl.Datetime("us"),
    "boolean": pl.Boolean(),
}


@dataclass
class Rule:
    """The staged value of one column and what it says about the row.

    ``stages`` are helper columns computed before ``value`` (in order), so that
    large expressions are evaluated once instead of being inlined many times.
    ``per_value``: the one column the stages read (a cleaned text, ``__clean_<col>``), when
    they read nothing else; they are then computed once per distinct value of it and joined
    back (:func:`with_stages`).
    """

    value: pl.Expr
    reasons: list[pl.Expr] = field(default_factory=list)
    flags: list[pl.Expr] = field(default_factory=list)
    extra: dict[str, pl.Expr] = field(default_factory=dict)  # derived columns
    stages: list[dict[str, pl.Expr]] = field(default_factory=list)
    per_value: str | None = None


def _staged(frame: pl.DataFrame, stages: list[list[dict[str, pl.Expr]]]) -> pl.DataFrame:
    """``frame`` with the stage columns: the i-th stage of every list in one ``with_columns``."""
    for i in range(max((len(s) for s in stages), default=0)):
        frame = frame.with_columns([e.alias(k) for s in stages if i < len(s) for k, e in s[i].items()])
    return frame


def with_stages(frame: pl.DataFrame, rules: Sequence[Rule]) -> pl.DataFrame:
    """``frame`` (with its cleaned texts) plus every rule's stage columns, rows in order.

    The stages of a ``per_value`` rule are computed on the distinct values of its column and
    joined back (null as a value of its own) when the values repeat (fewer distinct values
    than half the rows): a month of district meal transactions holds 600,000 resident IDs in
    49,000 spellings, and the ID checks (two MOD 11-2 sums of 17 digits, a date, the area
    codes) were half of staging them (stage_frame 2.3 -> 1.3 s; a registry snapshot, one row
    per elder, stays on the rows: the join made it 5% slower)."""
    by_row: list[list[dict[str, pl.Expr]]] = []
    for rule in rules:
        if rule.per_value is None:
            by_row.append(rule.stages)
            continue
        values = frame.select(rule.per_value).unique()
        if values.height * 2 > frame.height:
            by_row.append(rule.stages)
            continue
        values = _staged(values, [rule.stages])
        frame = frame.join(values, on=rule.per_value, how="left", nulls_equal=True, maintain_order="left")
    return _staged(frame, by_row)


def _when(cond: pl.Expr, code: str) -> pl.Expr:
    return pl.when(cond).then(pl.lit(code)).otherwise(pl.lit(None, dtype=pl.String))


def with_clean_texts(frame: pl.DataFrame, columns: Sequence[str]) -> pl.DataFrame:
    """``frame`` with ``__clean_<col>``, the cleaned text of each (String) column: full-width to
    half-width (NFKC), trimmed, empty -> null.

    NFKC is applied only to the values with a character beyond ASCII (more bytes than
    characters): ASCII is NFKC-stable, and a district day's water readings are all ASCII but
    for the odd full-width digit, so normalising every value was half of staging them. Where
    a few spellings repeat (at most one in 64 values distinct: meal points, meal types, payment
    methods), each is normalised once and mapped back (a month of meals, those three columns
    0.38 -> 0.18 s; its 33,000 names of 600,000 rows were slower mapped: 0.09 -> 0.13 s)."""
    cleaned = []
    for col in columns:
        text = frame[col]
        wide = (text.str.len_bytes() != text.str.len_chars()).fill_null(False)
        if wide.any():
            at = wide.arg_true()
            values = text.gather(at)
            distinct = values.unique()
            if distinct.len() * 64 <= values.len():  # a few spellings: each normalised once
                values = values.replace_strict(
                    distinct, distinct.str.normalize("NFKC"), return_dtype=pl.String()
                )
            else:
                values = values.str.normalize("NFKC")
            text = text.scatter(at, values)
        stripped = text.str.strip_chars()
        cleaned.append(
            pl.select(pl.when(stripped == "").then(None).otherwise(stripped))
            .to_series()
            .alias(f"__clean_{col}")
        )
    return frame.with_columns(cleaned)


def C(col: str) -> pl.Expr:
    """The cleaned text of a column (computed once per stage run as ``__clean_<col>``)."""
    return pl.col(f"__clean_{col}")


def V(col: str) -> pl.Expr:
    """The staged (typed) value of a column (``__typed_<col>``)."""
    return pl.col(f"__typed_{col}")


# ------------------------------------------------------------------ identity


def _check_char(body17: pl.Expr) -> pl.Expr:
    """GB 11643 (ISO 7064 MOD 11-2) check character of a 17-digit body, vectorised."""
    total = pl.sum_horizontal(
        [body17.str.slice(i, 1).cast(pl.Int64, strict=False) * w for i, w in enumerate(ID_WEIGHTS)]
    )
    rem = (12 - total % 11) % 11
    return pl.when(rem == 10).then(pl.lit("X")).otherwise(rem.cast(pl.String))


def resident_id(col: str, birth_col: str | None, sex_col: str | None) -> Rule:
    """Normalise, upgrade 15 -> 18 digits, validate; derive birth date and sex."""
    t = f"__id_{col}_"
    c = pl.col
    stages = [
        {f"{t}s": C(col).str.replace_all(r"[\s\-]", "").str.to_uppercase()},
        {f"{t}is15": c(f"{t}s").str.contains(r"^\d{15}$").fill_null(False)},
        {
            f"{t}body": pl.when(c(f"{t}is15"))
            .then(c(f"{t}s").str.slice(0, 6) + pl.lit("19") + c(f"{t}s").str.slice(6, 9))
            .otherwise(c(f"{t}s").str.slice(0, 17))
        },
        {
            f"{t}up": pl.when(c(f"{t}is15"))
            .then(c(f"{t}body") + _check_char(c(f"{t}body")))
            .otherwise(c(f"{t}s"))
        },
        {
            f"{t}wf": c(f"{t}up").str.contains(r"^\d{17}[\dX]$").fill_null(False),
            f"{t}birth": c(f"{t}up").str.slice(6, 8).str.strptime(pl.Date, "%Y%m%d", strict=False),
            f"{t}ck": (_check_char(c(f"{t}up").str.slice(0, 17)) == c(f"{t}up").str.slice(17, 1)).fill_null(
                False
            ),
        },
        {
            f"{t}area": pl.struct(a=c(f"{t}up").str.slice(0, 6), y=c(f"{t}birth").dt.year())
            .map_batches(_area_batch, return_dtype=pl.Boolean)
            .fill_null(False)
        },
        {
            f"{t}shape_bad": c(f"{t}s").is_not_null()
            & (~c(f"{t}wf") | c(f"{t}birth").is_null() | (c(f"{t}birth").dt.year() < 1880)),
        },
        {
            f"{t}ck_bad": c(f"{t}s").is_not_null() & ~c(f"{t}shape_bad") & ~c(f"{t}ck"),
            f"{t}area_bad": c(f"{t}s").is_not_null() & ~c(f"{t}shape_bad") & c(f"{t}ck") & ~c(f"{t}area"),
        },
        {
            f"{t}ok": c(f"{t}s").is_not_null() & ~c(f"{t}shape_bad") & ~c(f"{t}ck_bad") & ~c(f"{t}area_bad"),
        },
    ]
    value = pl.when(c(f"{t}ok")).then(c(f"{t}up"))
    sex = pl.when(c(f"{t}ok")).then(
        pl.when(c(f"{t}up").str.slice(16, 1).cast(pl.Int64, strict=False) % 2 == 1)
        .then(pl.lit("1"))
        .otherwise(pl.lit("2"))
    )
    flags = [
        _when(c(f"{t}s").is_not_null() & c(f"{t}is15"), ID_UPGRADED_15),
        _when(c(f"{t}s").is_not_null() & ~c(f"{t}is15") & (c(f"{t}s") != c(col)), ID_REFORMATTED),
    ]
    extra: dict[str, pl.Expr] = {}
    if col == "id_number":
        extra = {"id_birth_date": pl.when(c(f"{t}ok")).then(c(f"{t}birth")), "id_sex": sex}
    if birth_col:
        flags.append(_when(c(f"{t}ok") & (c(f"__typed_{birth_col}") != c(f"{t}birth")), ID_BIRTH_MISMATCH))
    if sex_col:
        flags.append(_when(c(f"{t}ok") & (c(f"__typed_{sex_col}") != sex), ID_SEX_MISMATCH))
    return Rule(
        value=value,
        reasons=[
            _when(c(f"{t}ck_bad"), ID_CHECKSUM),
            _when(c(f"{t}shape_bad") | c(f"{t}area_bad"), ID_INVALID),
        ],
        flags=flags,
        extra=extra,
        stages=stages,
        per_value=f"__clean_{col}",
    )


def _area_batch(s: pl.Series) -> pl.Series:
    """Look up (area, year) pairs once each: python-stdnum's place table is slow."""
    frame = s.struct.unnest()
    pairs = frame.unique()
    known = {(a, y): area_existed(a, int(y)) for a, y in pairs.iter_rows() if a is not None and y is not None}
    return pl.Series(
        [known.get((a, y)) if a is not None and y is not None else None for a, y in frame.iter_rows()],
        dtype=pl.Boolean,
    )


def phone(col: str, mobile_only: bool) -> Rule:
    """Mobiles to 11 digits; Shanghai landlines to 021-XXXXXXXX; anything else flagged and dropped."""
    t = f"__ph_{col}_"
    digits = C(col).str.replace_all(r"[\s\-()（）]", "")
    stages = [
        {f"{t}national": digits.str.replace(r"^(\+?86|0086)(1\d{10})$", "$2")},
        {
            f"{t}land": pl.col(f"{t}national")
            .str.replace(r"^(\+?86|0086)?0?21(\d{8})$", "021-$2")
            .str.replace(r"^(\d{8})$", "021-$1")
        },
    ]
    mobile = pl.col(f"{t}national").str.contains(r"^1[3-9]\d{9}$")
    is_land = pl.col(f"{t}land").str.contains(r"^021-\d{8}$")
    value = (
        pl.when(mobile)
        .then(pl.col(f"{t}national"))
        .when(is_land & pl.lit(not mobile_only))
        .then(pl.col(f"{t}land"))
        .otherwise(None)
    )
    return Rule(
        value=value,
        flags=[
            _when(C(col).is_not_null() & V(col).is_null(), PHONE_INVALID),
            _when(V(col).is_not_null() & (V(col) != pl.col(col)), PHONE_REFORMATTED),
        ],
        stages=stages,
    )


def person_name(col: str) -> Rule:
    return Rule(value=C(col).str.replace_all(r"\s+", ""), flags=[_when(C(col) != V(col), NAME_SPACES)])


def address(col: str) -> Rule:
    s = C(col)
    full = (
        pl.when(s.str.starts_with("上海"))
        .then(s)
        .when(s.str.starts_with("杨浦区"))
        .then(pl.lit("上海市") + s)
        .otherwise(pl.lit("上海市杨浦区") + s)
    )
    return Rule(value=full, flags=[_when(s.is_not_null() & (V(col) != s), ADDRESS_COMPLETED)])


def code(col: Column, registry: Registry) -> Rule:
    assert col.codelist
    lookup = registry.codelist(col.codelist).lookup()
    value = C(col.name).replace_strict(lookup, default=None, return_dtype=pl.String)
    return Rule(value=value, reasons=[_when(C(col.name).is_not_null() & V(col.name).is_null(), UNKNOWN_CODE)])


def street(col: Column, registry: Registry, address_col: str | None) -> Rule:
    """Street labels/aliases to codes; the pre-2019 五角场镇 resolved by the road in the address."""
    assert col.codelist
    lookup = registry.codelist(col.codelist).lookup()
    t = f"__st_{col.name}_"
    stages: list[dict[str, pl.Expr]] = [
        {f"{t}code": C(col.name).replace_strict(lookup, default=None, return_dtype=pl.String)}
    ]
    if address_col is None:
        stages.append({f"{t}resolved": pl.lit(None, dtype=pl.String)})
    else:
        roads = sorted(road_to_street(), key=len, reverse=True)
        road = C(address_col).str.extract("(" + "|".join(roads) + ")", 1)
        resolved = road.replace_strict(road_to_street(), default=None, return_dtype=pl.String)
        stages.append({f"{t}resolved": pl.when(resolved.is_in([WUJIAOCHANG, CHANGHAI_ROAD])).then(resolved)})
    legacy = pl.col(f"{t}code") == LEGACY_WUJIAOCHANG
    resolved_col = pl.col(f"{t}resolved")
    value = pl.when(legacy & resolved_col.is_not_null()).then(resolved_col).otherwise(pl.col(f"{t}code"))
    return Rule(
        value=value,
        reasons=[_when(C(col.name).is_not_null() & pl.col(f"{t}code").is_null(), UNKNOWN_CODE)],
        flags=[
            _when(legacy & resolved_col.is_not_null(), STREET_LEGACY_RESOLVED),
            _when(legacy & resolved_col.is_null(), STREET_LEGACY_UNRESOLVED),
        ],
        stages=stages,
    )


def _parse_with_fallback(
    s: pl.Series, dtype: pl.Date | pl.Datetime, primary: str, forms: tuple[str, ...]
) -> pl.Series:
    """Parse with the system's usual form; try the other forms only on what it missed."""
    out = s.str.strptime(dtype, primary, strict=False)
    missed = (out.is_null() & s.is_not_null()).arg_true()
    if missed.len() == 0:
        return out
    rest = s.gather(missed)
    tries = [rest.str.strptime(dtype, f, strict=False) for f in forms if f != primary]
    if dtype == pl.Date:
        # Excel serials: 4 digits before 1927-05-18 (elders' birth dates), 5 after.
        serial = rest.str.extract(r"^(\d{4,5})(?:\.0+)?$", 1).cast(pl.Int64, strict=False)
        ok = serial.is_between(1, 73050)
        tries.append(
            pl.select(pl.when(pl.lit(ok)).then(pl.lit(EXCEL_EPOCH) + pl.duration(days=pl.lit(serial))))
            .to_series()
            .cast(pl.Date)
        )
    else:
        with_tz = rest.str.strptime(pl.Datetime("us", "UTC"), "%Y-%m-%dT%H:%M:%S%z", strict=False)
        tries.insert(0, with_tz.dt.convert_time_zone("Asia/Shanghai").dt.replace_time_zone(None).cast(dtype))
    filled = pl.select(pl.coalesce([pl.lit(t) for t in tries])).to_series() if tries else rest.cast(dtype)
    return out.scatter(missed, filled)


def temporal(col: Column, table: Table, delivery_end: pl.Expr) -> Rule:
    d = table.delivery
    if col.type == "date":
        dtype: pl.Date | pl.Datetime = pl.Date()
        primary = d.date_forms[0].replace("%-", "%") if d.date_forms[0] != "excel_serial" else DATE_FORMS[0]
        forms: tuple[str, ...] = DATE_FORMS
    else:
        dtype = pl.Datetime("us")
        primary = d.timestamp_form.replace("%-", "%")
        forms = TIMESTAMP_FORMS
    if primary.endswith("%z") or "+08:00" in primary:
        primary = TIMESTAMP_FORMS[4]  # ISO with offset: handled by the fallback's offset parser
    t = f"__tm_{col.name}_"
    parsed = C(col.name).map_batches(
        lambda s: _parse_with_fallback(s, dtype, primary, forms), return_dtype=dtype
    )
    stages = [{f"{t}p": parsed}]
    value = pl.when(pl.col(f"{t}p").dt.year().is_between(1880, 2200)).then(pl.col(f"{t}p"))
    reasons = [_when(C(col.name).is_not_null() & V(col.name).is_null(), BAD_DATE)]
    if col.name in table.event_time_columns:
        moment = V(col.name).cast(pl.Datetime("us")) if col.type == "date" else V(col.name)
        reasons.append(_when(moment >= delivery_end, FUTURE_DATE))
    flags = []
    if col.type == "date":
        first = C(col.name).str.strptime(pl.Date, primary, strict=False)
        flags.append(_when(V(col.name).is_not_null() & first.is_null(), DATE_FORM))
    return Rule(value=value, reasons=reasons, flags=flags, stages=stages)


def number(col: Column) -> Rule:
    s = C(col.name).str.replace_all(",", "")
    as_float = s.cast(pl.Float64, strict=False)
    if col.type == "integer":
        value = pl.when(as_float == as_float.round(0)).then(as_float).cast(pl.Int64)
    else:
        value = as_float
    reasons = [_when(C(col.name).is_not_null() & V(col.name).is_null(), BAD_NUMBER)]
    if col.range:
        lo, hi = col.range
        reasons.append(
            _when(V(col.name).is_not_null() & ~V(col.name).cast(pl.Float64).is_between(lo, hi), OUT_OF_RANGE)
        )
    return Rule(value=value, reasons=reasons)


def rule_for(col: Column, table: Table, registry: Registry, delivery_end: pl.Expr) -> Rule:
    """The normaliser of one contract column."""
    names = set(table.column_names)
    if col.semantic == "resident_id":
        birth = "birth_date" if "birth_date" in names else None
        sex = "sex" if "sex" in names and table.column("sex").codelist == "sex" else None
        rule = resident_id(col.name, birth, sex)
    elif col.semantic in ("mobile_phone", "phone"):
        rule = phone(col.name, mobile_only=col.semantic == "mobile_phone")
    elif col.semantic == "person_name":
        rule = person_name(col.name)
    elif col.semantic == "address":
        rule = address(col.name)
    elif col.semantic == "street":
        addr = next((c.name for c in table.columns if c.semantic == "address"), None)
        rule = street(col, registry, addr)
    elif col.codelist:
        rule = code(col, registry)
    elif col.type in ("date", "timestamp"):
        rule = temporal(col, table, delivery_end)
    elif col.type in ("integer", "decimal"):
        rule = number(col)
    else:
        rule = Rule(value=C(col.name))
    if not col.nullable:
        rule.reasons.append(_when(C(col.name).is_null(), MISSING_REQUIRED))
    return rule

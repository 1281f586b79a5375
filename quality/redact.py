"""Masking of example values shown in check metadata and the quality report.

Examples of failing rows help a steward find the row; they must not carry raw
identifiers. Each value is masked by its contract column (semantic and PII
class): ``3101**********1234``, ``138****5678``, ``021-****5678``, ``张*``,
addresses cut after six characters, free text withheld. :func:`scrub` is the
safety net over any text leaving the quality package: whatever 15/18-digit ID
or mobile number slipped through is masked too.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Any

from schemas.contract import Column, DerivedTable, Table

_ID18 = re.compile(r"(?<!\d)(\d{17}[\dXx])(?!\d)")
# A 15-digit (pre-1999) ID: area, YYMMDD, sequence; not a run of digits inside a record number.
_ID15 = re.compile(
    r"(?<![0-9A-Za-z])(\d{6}\d{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])\d{3})(?![0-9A-Za-z])"
)
_MOBILE = re.compile(r"(?<!\d)(?:\+?86[\s-]?)?(1[3-9]\d)[\s-]?(\d{4})[\s-]?(\d{4})(?!\d)")
_LANDLINE = re.compile(r"(?<!\d)(021)-?(\d{4})(\d{4})(?!\d)")
BIRTH_COLUMNS = frozenset({"birth_date", "id_birth_date"})


def mask_id_number(value: str) -> str:
    """Resident ID: area prefix and last four kept (``3101**********1234``)."""
    if len(value) <= 8:
        return "*" * len(value)
    return value[:4] + "*" * (len(value) - 8) + value[-4:]


def mask_phone(value: str) -> str:
    """Mobile ``138****5678``; Shanghai landline ``021-****5678``; anything else: last four kept."""
    digits = re.sub(r"\D", "", value)
    if re.fullmatch(r"(86)?1[3-9]\d{9}", digits):
        return digits[-11:-8] + "****" + digits[-4:]
    if value.startswith("021"):
        return "021-****" + digits[-4:]
    return "*" * max(len(value) - 4, 0) + value[-4:]


def mask_name(value: str) -> str:
    """Chinese name: first character kept (``张三`` -> ``张*``, ``欧阳娜`` -> ``欧**``)."""
    value = value.strip()
    return value[:1] + "*" * max(len(value) - 1, 1) if value else value


def mask_address(value: str) -> str:
    return value[:6] + "***" if len(value) > 6 else "***"


def mask_code(value: str) -> str:
    """System identifiers that single out a person (IMEI, card and certificate numbers): ends kept."""
    if len(value) <= 4:
        return "*" * len(value)
    keep = 2 if len(value) < 10 else 3
    return value[:keep] + "*" * (len(value) - 2 * keep) + value[-keep:]


def scrub(text: str) -> str:
    """Mask any resident ID (18 or 15 digits) or phone number found in a text."""
    text = _ID18.sub(lambda m: mask_id_number(m.group(1)), text)
    text = _ID15.sub(lambda m: mask_id_number(m.group(1)), text)
    text = _MOBILE.sub(lambda m: f"{m.group(1)}****{m.group(3)}", text)
    return _LANDLINE.sub(lambda m: f"{m.group(1)}-****{m.group(3)}", text)


def _text(value: Any) -> str:
    if isinstance(value, datetime):
        return value.isoformat(sep=" ", timespec="minutes" if value.second == 0 else "seconds")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    return str(value)


def mask_value(column: Column | None, name: str, value: Any) -> str | None:
    """One cell as it may be shown: masked by its contract column (``None`` stays ``None``)."""
    if value is None:
        return None
    if name in BIRTH_COLUMNS and isinstance(value, date):
        return f"{value.year:04d}-{value.month:02d}-**"
    text = _text(value)
    if column is not None:
        semantic = column.semantic
        if semantic == "resident_id":
            return mask_id_number(text)
        if semantic in ("mobile_phone", "phone"):
            return mask_phone(text)
        if semantic == "person_name":
            return mask_name(text)
        if semantic == "address":
            return mask_address(text)
        if semantic == "free_text":
            return f"[{len(text)} 字已隐去]"
        if semantic in ("latitude", "longitude") and isinstance(value, float):
            return f"{value:.2f}"
        if column.pii == "direct_identifier" or (
            column.pii == "quasi_identifier" and semantic in ("identifier", "senior_card", "certificate_no")
        ):
            return mask_code(text)
    return scrub(text)


def mask_row(table: Table | DerivedTable, row: dict[str, Any]) -> dict[str, str | None]:
    """A whole example row, every value masked by its column."""
    columns = {c.name: c for c in table.columns}
    out: dict[str, str | None] = {}
    for name, value in row.items():
        masked = mask_value(columns.get(name), name, value)
        out[name] = None if masked is None else scrub(masked)
    return out

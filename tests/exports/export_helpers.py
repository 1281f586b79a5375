"""Shared constants of the export tests: dates, the master key, agreements as dicts."""

from __future__ import annotations

import copy
from datetime import date, datetime
from pathlib import Path
from typing import Any

from masking.agreement import Agreement, parse_agreement

AGREEMENTS = Path(__file__).resolve().parents[2] / "masking" / "agreements"
TODAY = date(2026, 12, 10)
CREATED = datetime(2026, 12, 10, 9, 30)
MASTER_KEY = bytes(range(32))

BASE: dict[str, Any] = {
    "id": "TEST-2026-001",
    "recipient": {"id": "uni_a", "name_zh": "甲大学", "name_en": "University A"},
    "purpose": "测试 / test",
    "legal_basis": "数据共享协议 / data-sharing agreement",
    "signed_by": "杨浦区民政局",
    "signed_on": "2026-10-01",
    "expires_on": "2027-09-30",
    "period": {"from": "2026-11-01", "to": "2026-12-31"},
    "k": 5,
    "datasets": [],
}
SERVICE_EVENTS: dict[str, Any] = {
    "name": "fact_service_event",
    "output": "service_events",
    "columns": ["elder_key", "programme", "service_date", "amount", "street"],
    "elder_attributes": ["sex", "age"],
    "date_column": "service_date",
}
SERVICE_AGGREGATE: dict[str, Any] = {
    "name": "fact_service_event",
    "output": "service_use",
    "columns": ["programme", "service_date", "street", "amount"],
    "elder_attributes": ["sex", "age_band"],
    "date_column": "service_date",
    "generalise": {"service_date": "month"},
    "aggregate": {
        "group_by": ["street", "sex", "age_band", "programme"],
        "measures": [
            {"name": "elders", "op": "persons"},
            {"name": "events", "op": "count"},
            {"name": "amount_total", "op": "sum", "column": "amount"},
        ],
    },
}
SCREENINGS: dict[str, Any] = {
    "name": "screenings",
    "columns": ["id_number", "sex", "birth_date", "screening_date", "instrument", "score", "notes"],
    "pseudonymise": ["id_number"],
    "date_column": "screening_date",
}


def make_agreement(*datasets: dict[str, Any], **overrides: Any) -> Agreement:
    data = copy.deepcopy(BASE)
    data["datasets"] = [copy.deepcopy(d) for d in datasets]
    for key, value in overrides.items():
        data[key] = value
    return parse_agreement(data)


def least(value: object) -> int:
    """A Series' minimum as the int it is (Polars types it as any Python literal)."""
    assert isinstance(value, int), value
    return value

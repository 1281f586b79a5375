"""schemas/kpis.yaml: the KPI registry loads, and a malformed KPI is rejected."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from schemas.kpi import KpiRegistry, load_kpis

# The ids other work (the scenario catalogue, dashboards) refers to.
REQUIRED = {
    "wristband_high_age_elders",
    "alone_high_age_monitored_share",
    "cognitive_screening_coverage",
    "family_care_beds_active",
    "facility_data_freshness",
    "portrait_completeness",
    "meal_aid_sites",
    "meal_aid_meals_per_day",
    "meal_aid_users_30d",
    "day_care_centres",
    "ltci_home_care_elders",
    "ltci_visit_fulfilment",
    "love_milk_deliveries",
    "device_rentals_active",
    "timebank_volunteer_hours",
    "reconciliation_open_issues",
}

GOOD_FORMULA = (
    "SELECT a.area AS area, m.month AS month, count(*) AS value FROM kpi_months AS m "
    "JOIN library.dim_elder AS d ON true JOIN kpi_areas AS a ON a.street = d.street GROUP BY a.area, m.month"
)


def _kpi(**over: Any) -> dict[str, Any]:
    base = {
        "id": "x",
        "name_zh": "测试",
        "name_en": "test",
        "definition": "测试",
        "formula": GOOD_FORMULA,
        "unit": "人",
        "target_type": "absolute",
        "target": 1,
        "direction": "up",
        "owner_department": "区民政局",
        "source": "plan",
    }
    return {**base, **over}


def test_registry_loads_with_the_plan_targets() -> None:
    kpis = {k.id: k for k in load_kpis()}
    assert set(kpis) >= REQUIRED
    w = kpis["wristband_high_age_elders"]
    assert (w.target, w.direction, w.target_scope) == (1000, "up", "district")
    assert (kpis["cognitive_screening_coverage"].target, kpis["cognitive_screening_coverage"].unit) == (
        100,
        "%",
    )
    assert kpis["family_care_beds_active"].target_type == "growth"
    assert kpis["facility_data_freshness"].target == 100
    assert kpis["reconciliation_open_issues"].direction == "down"
    for k in kpis.values():
        assert k.direction in ("up", "down")
        assert k.reads and all(t.split(".")[0] in ("library", "staged", "marts") for t in k.reads)
    assert kpis["device_rentals_active"].reads == [
        "library.fact_service_event",
        "staged.device_rentals",
        "staged.device_returns",
    ]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"direction": "sideways"}, "direction"),
        ({"formula": "SELECT FROM WHERE ((("}, "does not parse"),
        ({"formula": "SELECT 1 AS area, 2 AS month"}, "exactly"),
        ({"formula": GOOD_FORMULA.replace("library.dim_elder", "dim_elder")}, "use library"),
        ({"target": None}, "needs a target"),
        ({"target_type": "growth"}, "takes no target"),
    ],
)
def test_when_kpi_malformed_then_rejected(change: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        KpiRegistry.model_validate({"kpis": [_kpi(**change)]})


def test_when_ids_repeat_then_rejected() -> None:
    with pytest.raises(ValidationError, match="duplicate KPI ids"):
        KpiRegistry.model_validate({"kpis": [_kpi(), _kpi()]})

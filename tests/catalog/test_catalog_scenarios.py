"""The scenario catalogue (场景库): the real one is sound; a broken reference fails the build."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from catalog.graph import load_kpi_formulas
from catalog.roles import load_roles
from catalog.scenarios import SCENARIOS_PATH, ScenarioError, expand_age_bands, load_scenarios
from schemas import load_registry

REG = load_registry()


def _data() -> dict[str, Any]:
    return yaml.safe_load(SCENARIOS_PATH.read_text(encoding="utf-8"))


def _write(tmp_path: Path, data: dict[str, Any]) -> Path:
    path = tmp_path / "scenarios.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path


def test_the_scenario_catalogue_covers_the_annex_and_validates() -> None:
    catalogue = load_scenarios(REG)
    annex = sorted(s.annex for s in catalogue.scenarios if s.annex is not None)
    assert annex == list(range(1, 19))
    assert len(catalogue.scenarios) > 18
    assert {s.class_ for s in catalogue.scenarios} == {"基础类", "提质类"}
    for s in catalogue.scenarios:
        assert s.datasets and s.legal_basis and s.segment.vitality, s.id
    # the portrait rules define the segments; the catalogue only names them
    assert {v for s in catalogue.scenarios for v in s.segment.vitality} == {"VITAL", "ASSISTED", "CARE"}
    assert "vitality" not in _data()


def test_when_a_scenario_names_an_unknown_dataset_then_loading_fails(tmp_path: Path) -> None:
    data = _data()
    data["scenarios"][0]["datasets"].append("dim_eldr")
    with pytest.raises(ScenarioError, match=r"YP-01 .*dataset 'dim_eldr' is not a declared table.*dim_elder"):
        load_scenarios(REG, _write(tmp_path, data))


def test_when_a_scenario_names_an_unknown_kpi_then_loading_fails(tmp_path: Path) -> None:
    data = _data()
    data["scenarios"][2]["kpis"] = ["no_such_kpi"]
    with pytest.raises(ScenarioError, match=r"YP-03 .*KPI 'no_such_kpi' is not in schemas/kpis.yaml"):
        load_scenarios(REG, _write(tmp_path, data), kpi_ids={"cognitive_screening_coverage"})


def test_kpis_are_checked_against_the_kpi_registry_once_it_exists(tmp_path: Path) -> None:
    if load_kpi_formulas() is None:
        pytest.skip("schemas/kpis.yaml does not exist yet")
    data = _data()
    data["scenarios"][0]["kpis"] = ["wristband_elders_typo"]
    with pytest.raises(ScenarioError, match="wristband_elders_typo"):
        load_scenarios(REG, _write(tmp_path, data))


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("pilot_streets", ["310110103000"], "not a current street code"),  # 五角场镇, split in 2019
        ("lead_department", "区民政局（不存在科）", "not listed in catalog/roles.yaml"),
        ("segment", {"age_bands": ["62+"], "vitality": ["VITAL"]}, "band boundary"),
        # segments are the portrait rules' codes (assets/marts/portrait_rules.yaml), not names
        ("segment", {"age_bands": ["80+"], "vitality": ["活力"]}, "'活力' is not a segment code"),
    ],
)
def test_when_a_reference_is_malformed_then_loading_fails(
    tmp_path: Path, field: str, value: object, message: str
) -> None:
    data = _data()
    data["scenarios"][4][field] = value
    with pytest.raises(ScenarioError, match=message):
        load_scenarios(REG, _write(tmp_path, data), kpi_ids=None, check_kpis=False)


def test_when_an_annex_row_is_missing_then_loading_fails(tmp_path: Path) -> None:
    data = _data()
    data["scenarios"] = [s for s in data["scenarios"] if s.get("annex") != 7]
    with pytest.raises(ScenarioError, match=r"annex rows without a scenario: \[7\]"):
        load_scenarios(REG, _write(tmp_path, data), check_kpis=False)


def test_when_a_field_is_unknown_then_parsing_fails(tmp_path: Path) -> None:
    data = _data()
    data["scenarios"][0]["owner"] = "x"
    with pytest.raises(ScenarioError, match="Extra inputs"):
        load_scenarios(REG, _write(tmp_path, data), check_kpis=False)


def test_age_band_ranges_expand_to_the_code_list() -> None:
    codes = [v.code for v in REG.codelist("age_band").values]
    assert expand_age_bands(["80+"], codes) == ["80-84", "85-89", "90-94", "95-99", "100+"]
    assert expand_age_bands(["60-69", "75-79"], codes) == ["60-64", "65-69", "75-79"]


def test_every_department_has_an_ascii_team_name() -> None:
    departments = {s.table_owner(t) for s, t in REG.tables()} | {
        d.table_owner(t) for d, t in REG.derived_tables()
    }
    for s in load_scenarios(REG, check_kpis=False).scenarios:
        departments |= {s.lead_department, *s.partner_departments}
    departments |= {k.owner_department for k in load_kpi_formulas() or [] if k.owner_department}
    missing = sorted(departments - set(load_roles().departments))
    assert missing == [], f"add these departments to catalog/roles.yaml: {missing}"

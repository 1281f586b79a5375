"""The contracts are the single declaration of every source table: they must be consistent."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import get_args

import pytest
import yaml

from schemas import load_registry
from schemas.contract import PiiClass
from schemas.registry import SCHEMA_DIR, ContractError

# The source systems DOMAIN.md names, by contract name.
EXPECTED_SYSTEMS = {
    "municipal_platform",
    "district_platform",
    "meal_aid",
    "love_milk",
    "device_rental",
    "wristband",
    "smart_meter",
    "family_care_beds",
    "cognitive_screening",
    "time_bank",
    "facilities",
    "caregivers",
}
PII_CLASSES = {"direct_identifier", "quasi_identifier", "sensitive", "none"}


def test_every_source_system_of_the_domain_has_a_contract() -> None:
    reg = load_registry()
    assert {s.name for s in reg.systems} == EXPECTED_SYSTEMS
    assert all(s.tables for s in reg.systems)


def test_the_pii_classes_are_the_four_of_the_de_identification_guide() -> None:
    # Column.pii is a Literal: pydantic rejects anything else when a contract loads (tested below).
    assert set(get_args(PiiClass)) == PII_CLASSES


def test_identifiers_are_classified_as_direct_identifiers() -> None:
    reg = load_registry()
    for _, table in reg.tables():
        for col in table.columns:
            if col.semantic in ("resident_id", "mobile_phone", "senior_card", "free_text"):
                assert col.pii in ("direct_identifier", "sensitive"), (table.name, col.name)
            if col.semantic == "resident_id":
                assert col.pii == "direct_identifier", (table.name, col.name)


def test_every_table_declares_owner_and_names() -> None:
    reg = load_registry()
    for system, table in reg.tables():
        assert system.table_owner(table)
        assert table.zh and table.en and table.description


def test_street_code_list_has_the_twelve_streets_and_the_old_town() -> None:
    streets = load_registry().codelist("street")
    current = [v for v in streets.values if v.valid_until is None]
    assert len(current) == 12
    assert all(v.code.startswith("310110") and v.code.endswith("000") for v in streets.values)
    old = [v for v in streets.values if v.zh == "五角场镇"]
    assert len(old) == 1 and old[0].valid_until is not None


def test_code_list_lookup_maps_labels_and_aliases_to_codes() -> None:
    sex = load_registry().codelist("sex").lookup()
    assert sex["男"] == "1" and sex["女性"] == "2" and sex["F"] == "2"


def _copy_schemas(tmp_path: Path) -> Path:
    target = tmp_path / "schemas"
    shutil.copytree(SCHEMA_DIR, target, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    return target


def test_a_column_naming_an_unknown_code_list_fails_loading(tmp_path: Path) -> None:
    target = _copy_schemas(tmp_path)
    f = target / "contracts" / "meal_aid.yaml"
    data = yaml.safe_load(f.read_text(encoding="utf-8"))
    data["tables"][0]["columns"][7]["codelist"] = "no_such_list"
    f.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    with pytest.raises(ContractError, match="unknown code list 'no_such_list'"):
        load_registry(target)


def test_a_primary_key_naming_an_undeclared_column_fails_loading(tmp_path: Path) -> None:
    target = _copy_schemas(tmp_path)
    f = target / "contracts" / "time_bank.yaml"
    data = yaml.safe_load(f.read_text(encoding="utf-8"))
    data["tables"][0]["primary_key"] = ["no_such_column"]
    f.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    with pytest.raises(ContractError, match="primary key"):
        load_registry(target)


def test_a_column_without_pii_class_fails_loading(tmp_path: Path) -> None:
    target = _copy_schemas(tmp_path)
    f = target / "contracts" / "facilities.yaml"
    data = yaml.safe_load(f.read_text(encoding="utf-8"))
    del data["tables"][0]["columns"][0]["pii"]
    f.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    with pytest.raises(ContractError, match="pii"):
        load_registry(target)

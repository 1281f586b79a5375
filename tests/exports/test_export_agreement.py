"""Agreements: shape validation and refusals, in Chinese and English."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from masking.agreement import AgreementError, check_agreement, load_agreement, parse_agreement
from schemas import load_registry
from tests.exports.export_helpers import (
    AGREEMENTS,
    BASE,
    SCREENINGS,
    SERVICE_AGGREGATE,
    SERVICE_EVENTS,
    TODAY,
    make_agreement,
)

REGISTRY = load_registry()


def codes(exc: pytest.ExceptionInfo[AgreementError]) -> set[str]:
    return {p.code for p in exc.value.problems}


@pytest.mark.parametrize("name", ["fudan_service_use_2026", "facility_map_open"])
def test_when_example_agreement_is_in_force_then_it_passes(name: str) -> None:
    agreement = load_agreement(AGREEMENTS / f"{name}.yaml")
    check_agreement(agreement, REGISTRY, TODAY)


def test_when_agreement_has_expired_then_refused_in_both_languages() -> None:
    agreement = load_agreement(AGREEMENTS / "expired_example.yaml")
    with pytest.raises(AgreementError) as exc:
        check_agreement(agreement, REGISTRY, TODAY)
    assert codes(exc) == {"EXPIRED"}
    text = str(exc.value)
    assert "协议已于 2025-12-31 到期" in text
    assert "expired on 2025-12-31" in text


def test_when_expiry_is_today_then_still_in_force() -> None:
    check_agreement(make_agreement(SERVICE_EVENTS, expires_on="2026-12-10"), REGISTRY, date(2026, 12, 10))
    with pytest.raises(AgreementError):
        check_agreement(make_agreement(SERVICE_EVENTS, expires_on="2026-12-10"), REGISTRY, date(2026, 12, 11))


def test_when_signed_in_the_future_then_not_in_force() -> None:
    with pytest.raises(AgreementError) as exc:
        check_agreement(make_agreement(SERVICE_EVENTS, signed_on="2027-01-01"), REGISTRY, TODAY)
    assert codes(exc) == {"NOT_IN_FORCE"}


@pytest.mark.parametrize("table", ["dim_elder", "fact_screening", "elder_portrait", "district_hotline"])
def test_when_dataset_is_non_open_then_refused(table: str) -> None:
    columns = [
        c.name
        for c in (
            REGISTRY.derived(table).columns if table != "district_hotline" else REGISTRY.table(table).columns
        )
        if c.pii != "direct_identifier"
    ][:2]
    with pytest.raises(AgreementError) as exc:
        check_agreement(make_agreement({"name": table, "columns": columns}), REGISTRY, TODAY)
    assert "NON_OPEN" in codes(exc)
    assert "不予开放" in str(exc.value) and "non-open" in str(exc.value)


def test_when_dataset_or_column_unknown_then_refused() -> None:
    with pytest.raises(AgreementError) as exc:
        check_agreement(make_agreement({"name": "no_such_table", "columns": ["x"]}), REGISTRY, TODAY)
    assert codes(exc) == {"UNKNOWN_DATASET"}
    bad = {**SERVICE_EVENTS, "columns": ["programme", "nonexistent"]}
    with pytest.raises(AgreementError) as exc:
        check_agreement(make_agreement(bad), REGISTRY, TODAY)
    assert codes(exc) == {"UNKNOWN_COLUMN"}
    assert "nonexistent" in str(exc.value)


def test_when_direct_identifier_requested_in_clear_then_refused_unless_pseudonymised() -> None:
    clear = {**SCREENINGS, "columns": ["name", "id_number", "sex"], "pseudonymise": ["id_number"]}
    with pytest.raises(AgreementError) as exc:
        check_agreement(make_agreement(clear), REGISTRY, TODAY)
    assert codes(exc) == {"DIRECT_IDENTIFIER"}
    assert "name" in str(exc.value) and "直接标识符" in str(exc.value)
    check_agreement(make_agreement(SCREENINGS), REGISTRY, TODAY)  # id_number pseudonymised: allowed


def test_when_elder_attribute_is_not_a_quasi_identifier_then_refused() -> None:
    for attr in ("name", "care_level", "id_number"):
        bad = {**SERVICE_EVENTS, "elder_attributes": [attr]}
        with pytest.raises(AgreementError) as exc:
            check_agreement(make_agreement(bad), REGISTRY, TODAY)
        assert codes(exc) == {"ELDER_ATTRIBUTE"}


def test_when_generalisation_level_unknown_then_refused_with_the_choices() -> None:
    bad = {**SERVICE_EVENTS, "generalise": {"service_date": "week"}}
    with pytest.raises(AgreementError) as exc:
        check_agreement(make_agreement(bad), REGISTRY, TODAY)
    assert codes(exc) == {"GENERALISE"}
    assert "month" in str(exc.value)


def test_when_aggregate_uses_unreleased_columns_then_refused() -> None:
    agg = {**SERVICE_AGGREGATE, "aggregate": {**SERVICE_AGGREGATE["aggregate"], "group_by": ["provider_id"]}}
    with pytest.raises(AgreementError) as exc:
        check_agreement(make_agreement(agg), REGISTRY, TODAY)
    assert codes(exc) == {"AGGREGATE"}


def test_when_agreement_is_malformed_then_every_field_is_named_in_both_languages() -> None:
    data = {**BASE, "datasets": [SERVICE_EVENTS], "k": 1, "expires_on": "next year", "extra": 1}
    del data["recipient"]
    with pytest.raises(AgreementError) as exc:
        parse_agreement(data)
    text = str(exc.value)
    assert codes(exc) == {"MALFORMED"}
    for field in ("recipient", "expires_on", "k", "extra"):
        assert field in text
    assert "缺少必填字段" in text and "日期应写作 YYYY-MM-DD" in text and "不认识的字段" in text


def test_when_file_missing_or_not_yaml_then_refused(tmp_path: Path) -> None:
    with pytest.raises(AgreementError) as exc:
        load_agreement(tmp_path / "missing.yaml")
    assert codes(exc) == {"NOT_FOUND"}
    bad = tmp_path / "bad.yaml"
    bad.write_text("id: [unclosed", encoding="utf-8")
    with pytest.raises(AgreementError) as exc:
        load_agreement(bad)
    assert codes(exc) == {"MALFORMED"}


def test_when_several_problems_then_all_reported() -> None:
    bad = {"name": "dim_elder", "columns": ["name", "nope"]}
    with pytest.raises(AgreementError) as exc:
        check_agreement(make_agreement(bad, expires_on="2026-01-01"), REGISTRY, TODAY)
    assert codes(exc) == {"EXPIRED", "NON_OPEN", "UNKNOWN_COLUMN", "DIRECT_IDENTIFIER"}


def test_when_output_name_is_reserved_or_repeated_then_refused() -> None:
    with pytest.raises(AgreementError) as exc:
        check_agreement(make_agreement({**SERVICE_EVENTS, "output": "manifest"}), REGISTRY, TODAY)
    assert codes(exc) == {"RESERVED_NAME"}
    with pytest.raises(AgreementError) as exc:
        check_agreement(make_agreement(SERVICE_EVENTS, SERVICE_EVENTS), REGISTRY, TODAY)
    assert codes(exc) == {"DUPLICATE_DATASET"}

"""masking.policy: the policy file is valid, consistent with the contracts and the catalogue."""

from __future__ import annotations

from typing import Any

import pytest
import sqlglot
import yaml
from pydantic import ValidationError

from catalog.roles import load_roles
from masking.policy import POLICY_PATH, ROLE_NAMES, Policy, check_policy, load_policy, visible_tables
from masking.role_views import expected_columns, plan_role_views
from schemas import load_registry


def _raw() -> dict[str, Any]:
    data = yaml.safe_load(POLICY_PATH.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def test_policy_file_is_valid_and_matches_the_contracts() -> None:
    policy = load_policy()
    check_policy(policy, load_registry())
    assert set(policy.roles) == set(ROLE_NAMES)
    assert policy.settings.k == 5


def test_the_catalogue_shows_the_policys_roles_and_access_kinds() -> None:
    """catalog/roles.yaml only labels them (tests/catalog/test_catalog_roles.py: the grants)."""
    policy, roles = load_policy(), load_roles()
    assert list(roles.roles) == list(policy.roles)
    for name, rp in policy.roles.items():
        assert (roles.roles[name].zh, roles.roles[name].access) == (rp.zh, rp.access), name
        assert rp.access in roles.access, name
    assert set(roles.access) == {rp.access for rp in policy.roles.values()}


def test_when_complementary_suppression_names_unknown_columns_then_check_fails() -> None:
    data = _raw()
    suppression = data["roles"]["leadership"]["suppress_small_counts"][0]
    suppression["complementary"] = {"line": ["kpi_id", "quarter"], "cells": "tier = 'street'"}
    with pytest.raises(ValueError) as err:
        check_policy(Policy.model_validate(data), load_registry())
    assert "'quarter'" in str(err.value) and "'tier'" in str(err.value)


def test_every_view_is_sql_sqlglot_reads() -> None:
    policy, registry = load_policy(), load_registry()
    for role in ROLE_NAMES:
        for plan in plan_role_views(policy, registry, role, street="310110001000"):
            tree = sqlglot.parse_one(plan.sql, read="duckdb")
            assert isinstance(tree, sqlglot.exp.Select), plan.name


def test_third_party_reads_nothing_and_leadership_no_row_level_person_table() -> None:
    policy, registry = load_policy(), load_registry()
    assert plan_role_views(policy, registry, "third_party") == []
    # KPIs and the public facility list (the map): no row-level table about persons
    leadership = visible_tables(policy, registry, "leadership")
    assert leadership == [("marts", "kpi_values"), ("library", "dim_facility")]
    cols = expected_columns(policy, registry, "leadership")
    assert all("elder_key" not in c and "elder_pseudonym" not in c for c in cols.values())


def test_when_rules_lack_a_catch_all_then_rejected() -> None:
    data = _raw()
    data["roles"]["analyst"]["operators"] = data["roles"]["analyst"]["operators"][:-1]
    with pytest.raises(ValidationError, match="catch-all"):
        Policy.model_validate(data)


def test_when_catch_all_is_not_last_then_rejected() -> None:
    data = _raw()
    data["roles"]["analyst"]["operators"].insert(0, {"operator": "keep"})
    with pytest.raises(ValidationError, match="never apply"):
        Policy.model_validate(data)


def test_when_policy_names_unknown_columns_or_tables_then_check_fails() -> None:
    data = _raw()
    agg = data["roles"]["leadership"]["aggregates"][0]
    agg["group_by"] = ["street", "shoe_size"]
    data["roles"]["analyst"]["reads"].append({"zone": "library", "tables": ["no_such_table"]})
    data["roles"]["street_staff"]["operators"].insert(0, {"table": "dim_elderly", "operator": "keep"})
    with pytest.raises(ValueError) as err:
        check_policy(Policy.model_validate(data), load_registry())
    for name in ("shoe_size", "no_such_table", "dim_elderly"):
        assert name in str(err.value)


def test_when_condition_has_a_subquery_then_check_fails() -> None:
    data = _raw()
    data["roles"]["leadership"]["aggregates"][0]["where"] = "elder_key IN (SELECT 1)"
    with pytest.raises(ValueError, match="subquery"):
        check_policy(Policy.model_validate(data), load_registry())


def test_when_role_unknown_or_street_missing_then_error() -> None:
    policy, registry = load_policy(), load_registry()
    with pytest.raises(ValueError, match="unknown role"):
        policy.role("janitor")
    with pytest.raises(ValueError, match="street"):
        plan_role_views(policy, registry, "street_staff")
    with pytest.raises(ValueError, match="unknown street"):
        plan_role_views(policy, registry, "street_staff", street="外滩")
    with pytest.raises(ValueError, match="at least 2"):
        plan_role_views(policy, registry, "leadership", k=1)

"""The catalogue's roles are the masking policy's: what it states per dataset is what the
generated role views give (and the zones the policy lets a role read as files), nothing else."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from catalog.build import Catalog, build_catalog
from catalog.roles import ROLES_PATH, RoleLabels, RolesConfig, load_labels, load_roles
from masking.policy import POLICY_PATH, Policy, load_policy
from masking.role_views import plan_role_views
from rainbow.settings import Lake
from schemas import load_registry

REG = load_registry()
POLICY = load_policy()
STREET = next(v.code for v in REG.codelist("street").values)


@pytest.fixture(scope="module")
def catalog(tmp_path_factory: pytest.TempPathFactory) -> Catalog:
    """The catalogue of a lake with nothing built but an undeclared marts folder and a package."""
    lake = Lake(tmp_path_factory.mktemp("roles") / "lake")
    (lake.root / "marts" / "quality_history").mkdir(parents=True)
    (lake.root / "exports" / "fudan_university").mkdir(parents=True)
    return build_catalog(lake, REG)


def _view_reads() -> dict[str, dict[str, set[str]]]:
    """Dataset id -> role -> the names of the role's generated views that read it."""
    out: dict[str, dict[str, set[str]]] = {}
    for role in POLICY.roles:
        for plan in plan_role_views(POLICY, REG, role, street=STREET):
            # a row-level view reads its base (a row filter's elder lookup is not access to
            # dim_elder); an aggregate view reads its source, in aggregate
            read = plan.sources[:1] if plan.kind == "table" else plan.sources
            for source in read:
                out.setdefault(source, {}).setdefault(role, set()).add(plan.name)
    return out


def test_catalogue_states_exactly_the_access_the_generated_role_views_give(catalog: Catalog) -> None:
    views = _view_reads()
    ids = {d.id for d in catalog.datasets}
    assert set(views) <= ids, "every dataset a role view reads is catalogued"
    for d in catalog.datasets:
        expected: dict[str, tuple[str, str, str, list[str]]] = {}
        for role, rp in POLICY.roles.items():
            seen = sorted(views.get(d.id, {}).get(role, set()))
            if seen or d.zone in rp.file_zones:
                expected[role] = (rp.zh, rp.access, load_labels().access[rp.access].zh, seen)
        stated = {r.role: (r.role_zh, r.access, r.access_zh, sorted(r.views)) for r in d.roles}
        assert stated == expected, d.id
    # the disagreements roles.yaml used to carry, now resolved in the policy's favour
    assert {r.role for r in catalog.dataset("marts.elder_portrait").roles} == {
        "steward",
        "street_staff",
        "analyst",
    }
    assert "street_staff" not in {r.role for r in catalog.dataset("library.elder_links").roles}
    leadership = next(r for r in catalog.dataset("library.dim_elder").roles if r.role == "leadership")
    assert leadership.access == "aggregate" and all(v.startswith("agg_") for v in leadership.views)
    assert catalog.dataset("landing.muni_elders").roles == []
    assert [r.role for r in catalog.dataset("marts.quality_history").roles] == ["steward"]
    assert [r.role for r in catalog.dataset("exports.fudan_university").roles] == ["steward", "third_party"]
    assert catalog.roles == {name: rp.zh for name, rp in POLICY.roles.items()}


def _policy(edit: Any) -> Policy:
    data = yaml.safe_load(POLICY_PATH.read_text(encoding="utf-8"))
    edit(data["roles"])
    return Policy.model_validate(data)


def test_catalogue_follows_a_changed_policy_with_no_other_file_touched() -> None:
    def edit(roles: dict[str, Any]) -> None:
        roles["leadership"]["reads"].append({"zone": "marts", "tables": ["elder_portrait"]})
        roles["analyst"]["reads"] = [r for r in roles["analyst"]["reads"] if r["zone"] != "library"]
        roles["third_party"]["file_zones"] = []

    config = load_roles(policy=_policy(edit), registry=REG)
    portrait = REG.derived("elder_portrait")
    stated = config.roles_for("marts", portrait.sensitivity, portrait.kind, portrait.columns)
    assert ("leadership", ["elder_portrait"]) in [(r.role, r.views) for r in stated]
    elder = REG.derived("dim_elder")
    assert "analyst" not in {r.role for r in config.roles_for("library", "restricted", None, elder.columns)}
    assert [r.role for r in config.roles_for("exports", "internal", None, [])] == ["steward"]


def test_every_contract_table_is_found_by_its_columns() -> None:
    """build.py passes a table's columns, not its name: each resolves to its own table."""
    roles = load_roles()
    for _, t in REG.tables():
        for zone in ("landing", "raw", "staged", "quarantine"):
            by_columns = roles.roles_for(zone, t.sensitivity, None, t.columns)
            assert by_columns == roles.roles_for(zone, t.sensitivity, None, t.columns, table=t.name), t.name
    for zone in ("library", "marts"):
        for _, dt in REG.derived_tables(zone):
            by_columns = roles.roles_for(zone, dt.sensitivity, dt.kind, dt.columns)
            assert by_columns == roles.roles_for(zone, dt.sensitivity, dt.kind, [], table=dt.name), dt.name
            assert by_columns, dt.name  # the steward at least


def test_roles_yaml_holds_labels_only_and_exactly_the_policys_roles() -> None:
    data = yaml.safe_load(ROLES_PATH.read_text(encoding="utf-8"))
    assert set(data) == {"roles", "access", "departments"}
    grants: list[dict[str, Any]] = [
        {"grants": {"marts": [{"role": "leadership", "access": "aggregate"}]}},
        {"sensitivity_order": []},
    ]
    for extra in grants:
        with pytest.raises(ValidationError):
            RoleLabels.model_validate({**data, **extra})
    with pytest.raises(ValidationError):  # the Chinese name is the policy's
        RoleLabels.model_validate(
            {**data, "roles": {**data["roles"], "steward": {"zh": "管理员", "en": "x"}}}
        )
    missing = {**data, "roles": {k: v for k, v in data["roles"].items() if k != "analyst"}}
    stale = {**data, "access": {**data["access"], "everything": {"zh": "全部", "en": "all"}}}
    for bad, message in ((missing, "'analyst' has no labels"), (stale, "unused access kind 'everything'")):
        with pytest.raises(ValueError, match=message):
            RolesConfig(POLICY, REG, RoleLabels.model_validate(bad))

"""Roles that may see a dataset, as the catalogue states them, and ASCII team names of departments.

Who reads what is the masking policy's (``masking/policies.yaml``, the policy the governed
role views are generated from): :class:`RolesConfig` asks :mod:`masking.policy` for every
dataset's readers (:func:`masking.policy.dataset_readers`: the role views over it, the zones a
role reads as files) and never states a grant of its own. ``roles.yaml`` holds only what the
policy does not: the roles' English names and descriptions, the labels of the access kinds,
and the departments' ASCII team names.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from masking.policy import ROLE_ZONES, Policy, dataset_readers, load_policy, role_datasets
from schemas.contract import Column
from schemas.registry import Registry, load_registry

ROLES_PATH = Path(__file__).with_name("roles.yaml")
CATALOG_ZONES = ("landing", "raw", "staged", "quarantine", "library", "marts", "exports")
_SLUG = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
# Catalogue zones of the source tables: their contract is the staged one.
_SOURCE_ZONES = ("landing", "raw", "staged", "quarantine")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RoleLabel(_Strict):
    """A role's display text the policy does not hold (its Chinese name is the policy's)."""

    en: str
    description: str = ""


class Access(_Strict):
    zh: str
    en: str


class RoleLabels(_Strict):
    """``roles.yaml``: display labels and team names only - no grant."""

    roles: dict[str, RoleLabel]
    access: dict[str, Access]
    departments: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _slugs(self) -> RoleLabels:
        problems = [
            f"department {d}: team name {s!r} is not [a-z0-9-]"
            for d, s in self.departments.items()
            if not _SLUG.match(s)
        ]
        if problems:
            raise ValueError("; ".join(problems))
        return self


class Role(_Strict):
    """A role as the catalogue shows it."""

    zh: str
    en: str
    description: str
    access: str


class RoleGrant(_Strict):
    """One role's access to one dataset, as the catalogue shows it."""

    role: str
    role_zh: str
    access: str
    access_zh: str
    # the role views through which the role reads the dataset (none: it reads the files)
    views: list[str] = Field(default_factory=list)


class RolesConfig:
    """The roles of the masking policy with their labels, and who reads each dataset."""

    def __init__(self, policy: Policy, registry: Registry, labels: RoleLabels) -> None:
        problems = [f"role {r!r} has no labels in roles.yaml" for r in policy.roles if r not in labels.roles]
        problems += [f"roles.yaml labels unknown role {r!r}" for r in labels.roles if r not in policy.roles]
        kinds = {rp.access for rp in policy.roles.values()}
        problems += [
            f"access kind {a!r} has no labels in roles.yaml" for a in sorted(kinds - set(labels.access))
        ]
        problems += [
            f"roles.yaml labels unused access kind {a!r}" for a in sorted(set(labels.access) - kinds)
        ]
        if problems:
            raise ValueError("; ".join(problems))
        self.policy = policy
        self.registry = registry
        self.access = dict(labels.access)
        self.departments = dict(labels.departments)
        self.roles = {
            name: Role(
                zh=rp.zh,
                en=labels.roles[name].en,
                description=labels.roles[name].description,
                access=rp.access,
            )
            for name, rp in policy.roles.items()
        }

    @functools.cached_property
    def _views(self) -> dict[str, dict[tuple[str, str], tuple[str, ...]]]:
        return {role: role_datasets(self.policy, self.registry, role) for role in self.policy.roles}

    @functools.cached_property
    def _tables_by_columns(self) -> dict[tuple[str, tuple[str, ...]], str]:
        out = {("staged", tuple(c.name for c in t.columns)): t.name for _, t in self.registry.tables()}
        for zone in ("library", "marts"):
            out |= {
                (zone, tuple(c.name for c in t.columns)): t.name
                for _, t in self.registry.derived_tables(zone)
            }
        return out

    def roles_for(
        self,
        zone: str,
        sensitivity: str,
        kind: str | None,
        columns: Iterable[Column],
        table: str | None = None,
    ) -> list[RoleGrant]:
        """The roles that read the dataset ``table`` of ``zone``, by the masking policy.

        Without ``table`` the contract table is the one of ``zone`` with exactly these
        ``columns`` (none: a dataset no contract declares, which only file access reaches).
        ``sensitivity`` and ``kind`` are the table's own; the policy applies them itself.
        """
        del sensitivity, kind  # the policy's reads judge the table's contract
        if zone not in CATALOG_ZONES:
            raise ValueError(f"unknown zone {zone!r}")
        if table is None:
            names = tuple(c.name for c in columns)
            contract_zone = "staged" if zone in _SOURCE_ZONES else zone
            table = self._tables_by_columns.get((contract_zone, names)) if names else None
        views = self._views if zone in ROLE_ZONES else {r: {} for r in self.policy.roles}
        return [
            RoleGrant(
                role=r.role,
                role_zh=self.roles[r.role].zh,
                access=r.access,
                access_zh=self.access[r.access].zh,
                views=list(r.views),
            )
            for r in dataset_readers(self.policy, self.registry, zone, table, views=views)
        ]


def load_roles(
    path: Path | None = None, *, policy: Policy | None = None, registry: Registry | None = None
) -> RolesConfig:
    """The catalogue's roles: ``policy`` (default: the masking policy) with the labels of ``path``."""
    if policy is None and registry is None:
        return _load(str(path or ROLES_PATH))
    return RolesConfig(policy or load_policy(), registry or load_registry(), load_labels(path))


def load_labels(path: Path | None = None) -> RoleLabels:
    return RoleLabels.model_validate(yaml.safe_load((path or ROLES_PATH).read_text(encoding="utf-8")))


@functools.cache
def _load(path: str) -> RolesConfig:
    return RolesConfig(load_policy(), load_registry(), load_labels(Path(path)))


def pinyin_slug(text: str) -> str:
    """An ASCII slug of Chinese text (pinyin, tone-less), for departments not listed."""
    from pypinyin import lazy_pinyin

    words = [re.sub(r"[^a-z0-9]+", "-", w.lower()).strip("-") for w in lazy_pinyin(text)]
    return "-".join(w for w in words if w)[:63].strip("-") or "unknown"


def department_slug(department: str, config: RolesConfig | None = None) -> str:
    """``区民政局（养老服务科）`` -> ``yp-mca-elder-services`` (listed) or a pinyin slug."""
    config = config or load_roles()
    return config.departments.get(department) or pinyin_slug(department)

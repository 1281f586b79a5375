"""Roles that may see a dataset, and ASCII team names of departments (``roles.yaml``)."""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from schemas.contract import Column

ROLES_PATH = Path(__file__).with_name("roles.yaml")
CATALOG_ZONES = ("landing", "raw", "staged", "quarantine", "library", "marts", "exports")
_SLUG = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Role(_Strict):
    zh: str
    en: str
    description: str = ""


class Access(_Strict):
    zh: str
    en: str


class Grant(_Strict):
    role: str
    access: str
    max_sensitivity: str | None = None
    kinds: list[str] | None = None
    no_direct_identifiers: bool = False


class RoleGrant(_Strict):
    """One role's access to one dataset, as the catalogue shows it."""

    role: str
    role_zh: str
    access: str
    access_zh: str


class RolesConfig(_Strict):
    roles: dict[str, Role]
    access: dict[str, Access]
    sensitivity_order: list[str]
    grants: dict[str, list[Grant]]
    departments: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _consistent(self) -> RolesConfig:
        problems = [f"grants for unknown zone {z!r}" for z in self.grants if z not in CATALOG_ZONES]
        problems += [f"no grants listed for zone {z!r}" for z in CATALOG_ZONES if z not in self.grants]
        for zone, grants in self.grants.items():
            for g in grants:
                if g.role not in self.roles:
                    problems.append(f"{zone}: unknown role {g.role!r}")
                if g.access not in self.access:
                    problems.append(f"{zone}: unknown access {g.access!r}")
                if g.max_sensitivity and g.max_sensitivity not in self.sensitivity_order:
                    problems.append(f"{zone}: unknown sensitivity {g.max_sensitivity!r}")
        problems += [
            f"department {d}: team name {s!r} is not [a-z0-9-]"
            for d, s in self.departments.items()
            if not _SLUG.match(s)
        ]
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def roles_for(
        self, zone: str, sensitivity: str, kind: str | None, columns: Iterable[Column]
    ) -> list[RoleGrant]:
        """The grants of ``zone`` whose conditions the dataset meets."""
        rank = self.sensitivity_order.index(sensitivity) if sensitivity in self.sensitivity_order else 99
        direct = any(c.pii == "direct_identifier" for c in columns)
        out = []
        for g in self.grants.get(zone, []):
            if g.max_sensitivity and rank > self.sensitivity_order.index(g.max_sensitivity):
                continue
            if g.kinds is not None and kind not in g.kinds:
                continue
            if g.no_direct_identifiers and direct:
                continue
            out.append(
                RoleGrant(
                    role=g.role,
                    role_zh=self.roles[g.role].zh,
                    access=g.access,
                    access_zh=self.access[g.access].zh,
                )
            )
        return out


def load_roles(path: Path | None = None) -> RolesConfig:
    return _load(str(path or ROLES_PATH))


@functools.cache
def _load(path: str) -> RolesConfig:
    return RolesConfig.model_validate(yaml.safe_load(Path(path).read_text(encoding="utf-8")))


def pinyin_slug(text: str) -> str:
    """An ASCII slug of Chinese text (pinyin, tone-less), for departments not listed."""
    from pypinyin import lazy_pinyin

    words = [re.sub(r"[^a-z0-9]+", "-", w.lower()).strip("-") for w in lazy_pinyin(text)]
    return "-".join(w for w in words if w)[:63].strip("-") or "unknown"


def department_slug(department: str, config: RolesConfig | None = None) -> str:
    """``区民政局（养老服务科）`` -> ``yp-mca-elder-services`` (listed) or a pinyin slug."""
    config = config or load_roles()
    return config.departments.get(department) or pinyin_slug(department)

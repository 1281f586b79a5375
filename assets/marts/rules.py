"""The portrait rules (``portrait_rules.yaml``) as typed, validated models."""

from __future__ import annotations

import functools
import string
from pathlib import Path
from typing import Literal

import sqlglot
import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

RULES_PATH = Path(__file__).resolve().parent / "portrait_rules.yaml"


def _check_condition(sql: str) -> str:
    try:
        sqlglot.parse_one(sql, read="duckdb")
    except sqlglot.errors.ParseError as exc:
        raise ValueError(f"condition does not parse: {sql!r}: {exc}") from exc
    return sql.strip()


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class HealthSignal(_Strict):
    code: str = Field(pattern=r"^[A-Z][A-Z0-9_]*$")
    zh: str
    condition: str

    _cond = field_validator("condition")(_check_condition)


class Clause(_Strict):
    reason: str
    condition: str

    _cond = field_validator("condition")(_check_condition)


class Segment(_Strict):
    code: str = Field(pattern=r"^[A-Z][A-Z0-9_]*$")
    zh: str
    en: str
    when: list[Clause]


class CoreAttribute(_Strict):
    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    zh: str
    condition: str

    _cond = field_validator("condition")(_check_condition)


class RiskTag(_Strict):
    code: str = Field(pattern=r"^[A-Z][A-Z0-9_]*$")
    zh: str
    severity: Literal["high", "medium", "low"]
    condition: str
    evidence: str

    _cond = field_validator("condition")(_check_condition)

    @property
    def evidence_fields(self) -> list[str]:
        return [f for _, f, _, _ in string.Formatter().parse(self.evidence) if f]


class PortraitRules(_Strict):
    ltci_visits_per_week: dict[str, int]
    health_signals: list[HealthSignal]
    segments: list[Segment]
    core_attributes: list[CoreAttribute]
    risk_tags: list[RiskTag]

    @model_validator(mode="after")
    def _consistent(self) -> PortraitRules:
        for kind, codes in (
            ("health signal", [s.code for s in self.health_signals]),
            ("segment", [s.code for s in self.segments]),
            ("risk tag", [t.code for t in self.risk_tags]),
        ):
            if len(set(codes)) != len(codes):
                raise ValueError(f"duplicate {kind} codes: {codes}")
        if not self.segments or self.segments[-1].when[-1].condition.lower() != "true":
            raise ValueError("the last segment must end with a catch-all clause (condition: true)")
        bad = sorted(set(self.ltci_visits_per_week) - {"0", "1", "2", "3", "4", "5", "6"})
        if bad:
            raise ValueError(f"ltci_visits_per_week: unknown care levels {bad}")
        return self

    def segment_zh(self) -> dict[str, str]:
        return {s.code: s.zh for s in self.segments}


def load_rules(path: Path | None = None) -> PortraitRules:
    return _load_cached(str(path or RULES_PATH))


@functools.cache
def _load_cached(path: str) -> PortraitRules:
    return PortraitRules.model_validate(yaml.safe_load(Path(path).read_text(encoding="utf-8")))

"""The scenario catalogue (场景库) as data: ``scenarios.yaml``, validated against the contracts.

:func:`load_scenarios` parses the file and checks every reference: a dataset
that is not a declared table (staged, library or marts zone), a KPI id that
``schemas/kpis.yaml`` does not define, a street that is not a current code of
the ``street`` code list, an age band, a vitality segment that is not a segment
code of the portrait rules (``assets/marts/portrait_rules.yaml``, the one
definition of 活力/介助/介护) or a department nobody knows - each is a
:class:`ScenarioError` naming the scenario and the bad value, and the catalogue
build fails on it.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from catalog.roles import load_roles
from schemas.registry import Registry

SCENARIOS_PATH = Path(__file__).with_name("scenarios.yaml")
ScenarioClass = Literal["基础类", "提质类"]
ALL_STREETS = "all"
_RANGE = re.compile(r"^(\d{2,3})(?:\+|-(\d{2,3}))$")


class ScenarioError(ValueError):
    """The scenario catalogue names something that does not exist, or is malformed."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Segment(_Strict):
    """Who a scenario serves: age bands x vitality segments (codes of the portrait rules)."""

    age_bands: list[str] = Field(min_length=1)
    vitality: list[str] = Field(min_length=1)

    @field_validator("vitality")
    @classmethod
    def _no_duplicates(cls, values: list[str]) -> list[str]:
        dup = sorted({v for v in values if values.count(v) > 1})
        if dup:
            raise ValueError(f"listed twice: {dup}")
        return values


class Scenario(_Strict):
    id: str = Field(pattern=r"^YP-\d{2}$")
    annex: int | None = Field(default=None, ge=1, le=18)  # row of the plan's annex (1..18)
    name: str
    en: str
    class_: ScenarioClass = Field(alias="class")
    description: str
    segment: Segment
    datasets: list[str] = Field(min_length=1)
    kpis: list[str] = Field(default_factory=list)
    lead_department: str
    partner_departments: list[str] = Field(default_factory=list)
    pilot_streets: list[str] = Field(min_length=1)
    legal_basis: list[str] = Field(min_length=1)

    @field_validator("datasets", "kpis", "pilot_streets")
    @classmethod
    def _no_duplicates(cls, values: list[str]) -> list[str]:
        dup = sorted({v for v in values if values.count(v) > 1})
        if dup:
            raise ValueError(f"listed twice: {dup}")
        return values


class ScenarioCatalogue(_Strict):
    scenarios: list[Scenario]

    def by_id(self) -> dict[str, Scenario]:
        return {s.id: s for s in self.scenarios}

    def using_dataset(self, name: str) -> list[str]:
        return [s.id for s in self.scenarios if name in s.datasets]

    def using_kpi(self, kpi: str) -> list[str]:
        return [s.id for s in self.scenarios if kpi in s.kpis]


def expand_age_bands(bands: Iterable[str], codes: list[str]) -> list[str]:
    """``80+`` / ``60-79`` / a band code -> the 5-year band codes of the ``age_band`` code list."""
    out: list[str] = []
    numeric = [(c, int(c.split("-")[0].rstrip("+"))) for c in codes if c[0].isdigit()]
    for band in bands:
        if band in codes:
            found = [band]
        else:
            m = _RANGE.match(band)
            if not m:
                raise ValueError(
                    f"age band {band!r} is neither a code of 'age_band' nor a range like 80+ / 60-79"
                )
            low, high = int(m.group(1)), int(m.group(2)) if m.group(2) else 10_000
            if low not in {start for _, start in numeric}:
                raise ValueError(f"age band {band!r} does not start at a band boundary of 'age_band'")
            found = [c for c, start in numeric if low <= start <= high]
            if not found:
                raise ValueError(f"age band {band!r} covers no code of 'age_band'")
        out += [c for c in found if c not in out]
    return out


def _suggest(name: str, known: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(known), n=3)
    return f" (did you mean {', '.join(close)}?)" if close else ""


def segment_names() -> dict[str, str]:
    """Vitality segment code -> Chinese name (活力/介助/介护), from the portrait rules: the one
    place that defines the segments and the rule assigning elders to them."""
    from assets.marts.rules import load_rules

    return load_rules().segment_zh()


def known_kpi_ids() -> set[str] | None:
    """KPI ids of ``schemas/kpis.yaml``, or None while the KPI registry does not exist yet."""
    from catalog.graph import load_kpi_formulas

    formulas = load_kpi_formulas()
    return None if formulas is None else {k.id for k in formulas}


def validate_scenarios(
    catalogue: ScenarioCatalogue,
    registry: Registry,
    kpi_ids: set[str] | None,
    segments: Mapping[str, str] | None = None,
) -> list[str]:
    """Every reference problem of ``catalogue`` (empty when it is sound). ``segments``: the
    vitality segment codes (default: :func:`segment_names`)."""
    segments = segments if segments is not None else segment_names()
    tables = {t.name for _, t in registry.tables()} | {t.name for _, t in registry.derived_tables()}
    streets = registry.codelist("street")
    current = {v.code for v in streets.values if v.valid_until is None}
    band_codes = [v.code for v in registry.codelist("age_band").values]
    departments = set(load_roles().departments)
    problems: list[str] = []
    seen: set[str] = set()
    annex: dict[int, str] = {}
    for s in catalogue.scenarios:
        where = f"scenario {s.id} {s.name}"
        if s.id in seen:
            problems.append(f"{where}: id used twice")
        seen.add(s.id)
        if s.annex is not None:
            if s.annex in annex:
                problems.append(f"{where}: annex row {s.annex} is already {annex[s.annex]}")
            annex[s.annex] = s.id
        for d in s.datasets:
            if d not in tables:
                problems.append(f"{where}: dataset {d!r} is not a declared table{_suggest(d, tables)}")
        if kpi_ids is not None:
            for k in s.kpis:
                if k not in kpi_ids:
                    problems.append(f"{where}: KPI {k!r} is not in schemas/kpis.yaml{_suggest(k, kpi_ids)}")
        for street in s.pilot_streets:
            if street != ALL_STREETS and street not in current:
                problems.append(f"{where}: pilot street {street!r} is not a current street code")
        try:
            expand_age_bands(s.segment.age_bands, band_codes)
        except ValueError as exc:
            problems.append(f"{where}: {exc}")
        for code in s.segment.vitality:
            if code not in segments:
                known = ", ".join(f"{c} {zh}" for c, zh in segments.items())
                problems.append(
                    f"{where}: vitality segment {code!r} is not a segment code of "
                    f"assets/marts/portrait_rules.yaml ({known})"
                )
        for dept in (s.lead_department, *s.partner_departments):
            if dept not in departments:
                hint = _suggest(dept, departments)
                problems.append(f"{where}: department {dept!r} is not listed in catalog/roles.yaml{hint}")
    missing_rows = sorted(set(range(1, 19)) - set(annex))
    if missing_rows:
        problems.append(f"annex rows without a scenario: {missing_rows}")
    return problems


def parse_scenarios(data: object, source: str = "scenarios.yaml") -> ScenarioCatalogue:
    try:
        return ScenarioCatalogue.model_validate(data)
    except ValidationError as exc:
        raise ScenarioError(f"{source}: {exc}") from exc


def load_scenarios(
    registry: Registry,
    path: Path | None = None,
    kpi_ids: set[str] | None = None,
    *,
    check_kpis: bool = True,
) -> ScenarioCatalogue:
    """The scenario catalogue, every reference checked; raises :class:`ScenarioError`.

    KPI ids are checked against ``kpi_ids`` or, by default, ``schemas/kpis.yaml``
    (skipped only while that registry does not exist).
    """
    path = path or SCENARIOS_PATH
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    catalogue = parse_scenarios(data, path.name)
    ids = kpi_ids if kpi_ids is not None else (known_kpi_ids() if check_kpis else None)
    problems = validate_scenarios(catalogue, registry, ids)
    if problems:
        raise ScenarioError(f"{path.name}: {len(problems)} problem(s):\n  " + "\n  ".join(problems))
    return catalogue


def expanded_streets(scenario: Scenario, registry: Registry) -> list[str]:
    """Pilot street codes, ``all`` expanded to every current street."""
    current = [v.code for v in registry.codelist("street").values if v.valid_until is None]
    return current if ALL_STREETS in scenario.pilot_streets else list(scenario.pilot_streets)

"""The KPI registry (评价指标体系) as data: ``schemas/kpis.yaml``, validated here.

Each KPI's ``formula`` is one SQL query in DuckDB's dialect returning exactly the
columns ``area``, ``month``, ``value``, one row per area and month at most:

- ``month`` comes from ``kpi_months`` (``month`` = first day of the month,
  ``month_start``, ``month_end`` = the month's last day or the build's as-of date
  for the current month, ``is_current``, ``as_of``): flow measures count events
  between ``month_start`` and ``month_end``, stock measures take the state at
  ``month_end``; a snapshot-only source (no history) restricts itself to
  ``is_current``.
- ``area`` comes from ``kpi_areas`` (``area``, ``street``): each street code
  maps to itself and every street code (and NULL, an unknown street) also to the
  district ``310110000000``, so one ``JOIN kpi_areas a ON a.street IS NOT
  DISTINCT FROM x.street ... GROUP BY a.area, m.month`` yields street and district
  rows with correct distinct counts and ratios.
- ``mart_ltci_entitlement`` (``care_level``, ``visits_per_week``) carries the
  LTCI entitlement from ``assets/marts/portrait_rules.yaml``.

No row (or a NULL value) for an area and month means *no data* (暂无数据), never 0:
a formula emits 0 only where a zero is a measured fact. Data is read from
``library.<table>``, ``staged.<table>`` and ``marts.<table>`` only.

Targets: ``absolute`` (``target`` value, met when value >= target for direction
``up``, <= for ``down``), ``growth`` (the target is the same area's value in the
previous month; met when strictly better) or ``none``. ``target_scope: district``
applies the target to the district row only (e.g. 1,000 wristbands district-wide).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Literal

import sqlglot
import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator
from sqlglot import exp

KPI_FILE = Path(__file__).resolve().parent / "kpis.yaml"
FORMULA_COLUMNS = ("area", "month", "value")
# Relations the KPI engine provides to every formula (build parameters, not data).
ENGINE_RELATIONS = frozenset({"kpi_months", "kpi_areas", "mart_ltci_entitlement"})
DATA_SCHEMAS = frozenset({"library", "staged", "marts"})


class KpiError(ValueError):
    """The KPI registry is inconsistent."""


class Kpi(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    name_zh: str
    name_en: str
    definition: str  # what it measures, in Chinese (with the rule's details)
    formula: str  # SQL: (area, month, value) rows, see the module docstring
    unit: str
    target_type: Literal["absolute", "growth", "none"]
    target: float | None = None
    target_scope: Literal["district", "all"] = "all"
    direction: Literal["up", "down"]
    owner_department: str
    frequency: Literal["monthly"] = "monthly"
    source: Literal["plan", "city_report", "platform"]  # where the KPI comes from
    note: str = ""

    @model_validator(mode="after")
    def _target_matches_type(self) -> Kpi:
        if self.target_type == "absolute" and self.target is None:
            raise ValueError(f"KPI {self.id}: an absolute target needs a target value")
        if self.target_type != "absolute" and self.target is not None:
            raise ValueError(f"KPI {self.id}: target_type {self.target_type} takes no target value")
        parsed = _parse(self.id, self.formula)
        if tuple(parsed.named_selects) != FORMULA_COLUMNS:
            raise ValueError(
                f"KPI {self.id}: the formula must select exactly {FORMULA_COLUMNS}, "
                f"not {tuple(parsed.named_selects)}"
            )
        bad = sorted(
            t for t in _tables(parsed) if t not in ENGINE_RELATIONS and t.split(".")[0] not in DATA_SCHEMAS
        )
        if bad:
            raise ValueError(f"KPI {self.id}: the formula reads {bad}; use library./staged./marts. tables")
        return self

    @property
    def reads(self) -> list[str]:
        """Data tables the formula reads (``schema.table``), for the catalogue's lineage."""
        return sorted(t for t in _tables(_parse(self.id, self.formula)) if t not in ENGINE_RELATIONS)


def _parse(kpi_id: str, sql: str) -> exp.Query:
    try:
        parsed = sqlglot.parse_one(sql, read="duckdb")
    except sqlglot.errors.ParseError as exc:
        raise ValueError(f"KPI {kpi_id}: the formula does not parse: {exc}") from exc
    if not isinstance(parsed, exp.Query):
        raise ValueError(f"KPI {kpi_id}: the formula must be a query (SELECT)")
    return parsed


def _tables(parsed: exp.Query) -> set[str]:
    ctes = {c.alias_or_name for c in parsed.find_all(exp.CTE)}
    out = set()
    for t in parsed.find_all(exp.Table):
        if not t.db and t.name in ctes:
            continue
        out.add(f"{t.db}.{t.name}" if t.db else t.name)
    return out


class KpiRegistry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    kpis: list[Kpi]

    @model_validator(mode="after")
    def _unique_ids(self) -> KpiRegistry:
        ids = [k.id for k in self.kpis]
        dup = sorted({i for i in ids if ids.count(i) > 1})
        if dup:
            raise ValueError(f"duplicate KPI ids: {dup}")
        return self


def load_kpis(path: Path | None = None) -> list[Kpi]:
    """Every KPI of ``schemas/kpis.yaml`` (or ``path``), validated."""
    return list(_load_cached(str(path or KPI_FILE)))


@functools.cache
def _load_cached(path: str) -> tuple[Kpi, ...]:
    data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    try:
        return tuple(KpiRegistry.model_validate(data).kpis)
    except Exception as exc:
        raise KpiError(f"{Path(path).name}: {exc}") from exc

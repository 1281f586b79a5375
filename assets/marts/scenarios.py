"""Scenario recommendations for portraits, from the scenario catalogue (场景库).

The catalogue (``catalog/scenarios.yaml``) is read and validated by
:func:`catalog.scenarios.load_scenarios`: every scenario targets a segment, age
bands (``80+``, ``60-69`` or codes of the ``age_band`` code list) x vitality
segments (codes of ``assets/marts/portrait_rules.yaml``, the one definition of
活力/介助/介护). A scenario is recommended to a living elder whose ``age_band`` is
one of its bands and whose ``vitality_segment`` is one of its segments. A scenario
whose segment takes in every elder (every band from 60, every segment: the portrait
itself, the dashboard, facility supervision, ...) is district-wide, not something
to recommend to one elder, and is never recommended.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import polars as pl

from assets.marts.rules import PortraitRules, load_rules
from schemas.registry import Registry, load_registry

if TYPE_CHECKING:
    from catalog.scenarios import ScenarioCatalogue

ELDER_AGE = 60


def elder_bands(band_codes: Iterable[str]) -> frozenset[str]:
    """The ``age_band`` codes of elders (60 and over): ``60-64`` ... ``100+``."""
    return frozenset(
        c for c in band_codes if c[:1].isdigit() and int(c.split("-")[0].rstrip("+")) >= ELDER_AGE
    )


@dataclass(frozen=True)
class Scenario:
    """A scenario as the portrait uses it: who it targets, in codes."""

    id: str
    name: str
    age_bands: frozenset[str]  # codes of the age_band code list
    segments: frozenset[str]  # vitality segment codes (portrait_rules.yaml)
    recommendable: bool  # targets some elders but not every one

    @classmethod
    def targeting(
        cls,
        id: str,
        name: str,
        age_bands: Iterable[str],
        segments: Iterable[str],
        registry: Registry | None = None,
        rules: PortraitRules | None = None,
    ) -> Scenario:
        """A scenario for ``age_bands`` (``80+``, ``60-69``, band codes) x ``segments`` (codes)."""
        from catalog.scenarios import expand_age_bands

        registry = registry or load_registry()
        rules = rules or load_rules()
        codes = [v.code for v in registry.codelist("age_band").values]
        bands = frozenset(expand_age_bands(age_bands, codes))
        segs = frozenset(segments)
        unknown = sorted(segs - {s.code for s in rules.segments})
        if unknown:
            raise ValueError(f"scenario {id}: unknown vitality segments {unknown}")
        universal = bands >= elder_bands(codes) and segs >= {s.code for s in rules.segments}
        return cls(id, name, bands, segs, not universal)

    def condition(self, prefix: str = "") -> str:
        """The target as a DuckDB condition over ``age_band`` and ``vitality_segment``."""
        bands = ", ".join(f"'{b}'" for b in sorted(self.age_bands))
        segs = ", ".join(f"'{s}'" for s in sorted(self.segments))
        return f"{prefix}age_band IN ({bands}) AND {prefix}vitality_segment IN ({segs})"


def from_catalogue(
    catalogue: ScenarioCatalogue, registry: Registry | None = None, rules: PortraitRules | None = None
) -> list[Scenario]:
    return [
        Scenario.targeting(s.id, s.name, s.segment.age_bands, s.segment.vitality, registry, rules)
        for s in catalogue.scenarios
    ]


def load_scenarios(
    registry: Registry | None = None, path: Path | None = None, *, check_kpis: bool = True
) -> list[Scenario]:
    """The scenarios of the catalogue, validated (raises :class:`catalog.scenarios.ScenarioError`);
    ``check_kpis=False`` skips checking the KPI ids against ``schemas/kpis.yaml``."""
    from catalog.scenarios import load_scenarios as load_catalogue

    registry = registry or load_registry()
    return from_catalogue(load_catalogue(registry, path, check_kpis=check_kpis), registry)


def recommendable(scenarios: Iterable[Scenario]) -> list[Scenario]:
    return [s for s in scenarios if s.recommendable]


def recommend(portraits: pl.DataFrame, scenarios: list[Scenario]) -> pl.DataFrame:
    """(elder_key, scenario_id, scenario_name) for every living elder a scenario targets.

    ``portraits`` needs ``elder_key``, ``age_band``, ``vitality_segment`` (null = not a
    living elder in the district: nothing recommended).
    """
    schema = pl.Schema({"elder_key": pl.String(), "scenario_id": pl.String(), "scenario_name": pl.String()})
    eligible = portraits.filter(pl.col("vitality_segment").is_not_null() & pl.col("age_band").is_not_null())
    parts = [
        eligible.filter(
            pl.col("age_band").is_in(sorted(s.age_bands))
            & pl.col("vitality_segment").is_in(sorted(s.segments))
        ).select("elder_key", pl.lit(s.id).alias("scenario_id"), pl.lit(s.name).alias("scenario_name"))
        for s in recommendable(scenarios)
    ]
    if not parts:
        return pl.DataFrame(schema=schema)
    return pl.concat(parts).cast(schema)

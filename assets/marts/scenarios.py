"""Scenario recommendations for portraits, from the scenario catalogue (场景库).

The catalogue (``catalog/scenarios.yaml``, written by the catalogue work) lists
scenarios with a target segment: age band(s) x vitality segment(s). A scenario is
recommended to a living elder whose age falls in one of its age bands and whose
vitality segment is one of its segments; a missing or empty side matches everyone
(aged 60+). A scenario without a target segment, or whose segment takes in every
elder (60+, all three segments: the portrait itself, the dashboard, facility
supervision, ...), is district-wide, not something to recommend to one elder, and is
never recommended.

The reader is lenient about the catalogue's spelling: the target under
``target_segment`` / ``target_segments`` / ``target`` / ``segment`` (a mapping, or a
list of mappings = alternatives), ages under ``age_bands`` / ``age_band`` / ``ages``
(``"80+"``, ``"60-69"``, ``"80-84岁"``, ``"100岁及以上"``, ``"全部"``), segments under
``vitality`` / ``vitality_segments`` / ``segments`` (``活力``/``介助``/``介护``, the
codes, or English words). A scenario it cannot read is skipped and reported.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl
import yaml

log = logging.getLogger(__name__)

CATALOG_SCENARIOS = Path(__file__).resolve().parents[2] / "catalog" / "scenarios.yaml"
ELDER_AGE, MAX_AGE = 60, 120
ALL = ("all", "any", "*", "全部", "所有", "不限")
SEGMENT_WORDS = {
    "VITAL": ("vital", "active", "活力", "活力老人", "independent"),
    "ASSISTED": ("assisted", "介助", "介助老人", "semi", "semi-dependent", "help"),
    "CARE": ("care", "介护", "介护老人", "nursing", "dependent"),
}
_SEGMENT_LOOKUP = {w.lower(): code for code, words in SEGMENT_WORDS.items() for w in (code, *words)}
_RANGE = re.compile(r"^\s*(\d+)\s*(?:-|~|–|至|到)\s*(\d+)\s*(?:岁|周岁)?\s*$")
_OPEN = re.compile(r"^\s*(\d+)\s*(?:\+|岁及以上|周岁及以上|岁以上|周岁以上|及以上)\s*$")
_BELOW = re.compile(r"^\s*(?:<|未满)\s*(\d+)\s*(?:岁|周岁)?\s*$")
_TARGET_KEYS = ("target_segment", "target_segments", "target", "segment")
_AGE_KEYS = ("age_bands", "age_band", "ages", "age")
_SEGMENT_KEYS = ("vitality", "vitality_segments", "vitality_segment", "segments")


@dataclass(frozen=True)
class Target:
    ages: tuple[tuple[int, int], ...] | None  # inclusive ranges; None = any age
    segments: frozenset[str] | None  # None = any segment

    @property
    def universal(self) -> bool:
        """Every elder (60+, any segment) falls in it."""
        any_age = self.ages is None or any(lo <= ELDER_AGE and hi >= MAX_AGE for lo, hi in self.ages)
        return any_age and (self.segments is None or self.segments >= set(SEGMENT_WORDS))


@dataclass(frozen=True)
class Scenario:
    id: str
    name: str
    targets: tuple[Target, ...] = field(default_factory=tuple)

    @property
    def recommendable(self) -> bool:
        """Targets some elders but not all: a universal segment marks a district-wide scenario."""
        return bool(self.targets) and not any(t.universal for t in self.targets)


def parse_age(text: object) -> tuple[int, int] | None:
    """``"80+"`` -> (80, 200), ``"60-69"`` -> (60, 69), ``"<60"`` -> (0, 59); None for 'all'."""
    s = str(text).strip()
    if s.lower() in ALL:
        return None
    if m := _RANGE.match(s):
        return int(m[1]), int(m[2])
    if m := _OPEN.match(s):
        return int(m[1]), 200
    if m := _BELOW.match(s):
        return 0, int(m[1]) - 1
    raise ValueError(f"unreadable age band {text!r}")


def parse_segment(text: object) -> str | None:
    s = str(text).strip()
    if s.lower() in ALL:
        return None
    code = _SEGMENT_LOOKUP.get(s.lower())
    if code is None:
        raise ValueError(f"unknown vitality segment {text!r}")
    return code


def _as_list(value: object) -> list[object]:
    if value is None:
        return []
    if isinstance(value, str):
        return [v for v in re.split(r"[,，、/;；]", value) if v.strip()]
    if isinstance(value, Iterable):
        return list(value)
    return [value]


def _first(row: Mapping[str, Any], keys: tuple[str, ...]) -> object:
    for k in keys:
        if k in row and row[k] is not None:
            return row[k]
    return None


def _target(spec: Mapping[str, Any]) -> Target:
    ages_raw = _as_list(_first(spec, _AGE_KEYS))
    segs_raw = _as_list(_first(spec, _SEGMENT_KEYS))
    ages = [parse_age(a) for a in ages_raw]
    segs = [parse_segment(s) for s in segs_raw]
    return Target(
        ages=None if not ages or any(a is None for a in ages) else tuple(a for a in ages if a is not None),
        segments=None if not segs or any(s is None for s in segs) else frozenset(s for s in segs if s),
    )


def parse_scenario(row: Mapping[str, Any]) -> Scenario:
    sid = str(row["id"])
    name = str(_first(row, ("name_zh", "name", "zh", "name_en", "en")) or sid)
    spec = _first(row, _TARGET_KEYS)
    if spec is None and any(k in row for k in _AGE_KEYS + _SEGMENT_KEYS):
        spec = row  # age bands / segments written on the scenario itself
    if spec is None:
        return Scenario(sid, name, ())
    specs = spec if isinstance(spec, list) else [spec]
    targets = []
    for s in specs:
        if not isinstance(s, Mapping):
            raise ValueError(f"scenario {sid}: target segment {s!r} is not a mapping")
        t = _target(s)
        targets.append(t)
    return Scenario(sid, name, tuple(targets))


def load_scenarios(path: Path = CATALOG_SCENARIOS) -> tuple[list[Scenario], list[str]]:
    """Scenarios of the catalogue (empty when it does not exist yet) and problems skipped."""
    if not path.exists():
        return [], [f"{path} does not exist: no scenario recommendations"]
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    rows = data.get("scenarios", data) if isinstance(data, Mapping) else data
    return parse_scenarios(rows or [])


def parse_scenarios(rows: Iterable[Mapping[str, Any]]) -> tuple[list[Scenario], list[str]]:
    out: list[Scenario] = []
    problems: list[str] = []
    for row in rows:
        try:
            out.append(parse_scenario(row))
        except (KeyError, ValueError) as exc:
            problems.append(f"scenario {row.get('id', '?')!s}: {exc}")
    for p in problems:
        log.warning("scenario catalogue: %s (skipped)", p)
    return out, problems


def _target_mask(t: Target) -> pl.Expr:
    mask = pl.lit(True)
    if t.ages is not None:
        mask = mask & pl.any_horizontal([pl.col("age").is_between(lo, hi) for lo, hi in t.ages])
    if t.segments is not None:
        mask = mask & pl.col("vitality_segment").is_in(sorted(t.segments))
    return mask


def recommend(portraits: pl.DataFrame, scenarios: list[Scenario]) -> pl.DataFrame:
    """(elder_key, scenario_id, scenario_name) for every living elder a scenario targets.

    ``portraits`` needs ``elder_key``, ``age``, ``vitality_segment`` (null = not a
    living elder in the district: nothing recommended).
    """
    schema = pl.Schema({"elder_key": pl.String(), "scenario_id": pl.String(), "scenario_name": pl.String()})
    parts = []
    eligible = portraits.filter(pl.col("vitality_segment").is_not_null() & pl.col("age").is_not_null())
    for s in scenarios:
        if not s.recommendable:
            continue
        mask = pl.any_horizontal([_target_mask(t) for t in s.targets])
        parts.append(
            eligible.filter(mask).select(
                "elder_key", pl.lit(s.id).alias("scenario_id"), pl.lit(s.name).alias("scenario_name")
            )
        )
    if not parts:
        return pl.DataFrame(schema=schema)
    return pl.concat(parts).cast(schema)

"""Generator settings and fault rates (``faults.yaml``)."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Literal

import yaml

Severity = Literal["hard", "soft"]


@dataclass(frozen=True)
class FaultSpec:
    kind: str
    severity: Severity
    rate: float
    unit: str
    applies: str
    reason: str | None


@functools.cache
def load_fault_specs(path: str | None = None) -> dict[str, FaultSpec]:
    p = Path(path) if path else Path(__file__).with_name("faults.yaml")
    data = yaml.safe_load(p.read_text(encoding="utf-8"))
    return {k: FaultSpec(kind=k, **v) for k, v in data.items()}


@dataclass(frozen=True)
class GeneratorConfig:
    elders: int = 2_000
    days: int = 30
    seed: int = 20261101
    start: date = date(2026, 11, 1)
    # Vital signs sampling interval of the wristbands.
    vitals_interval_minutes: int = 10
    # Overrides of faults.yaml rates (kind -> rate); 0 turns a fault off.
    fault_rates: dict[str, float] = field(default_factory=dict)
    # Wristbands: the plan's 1,000 devices at district scale (400,000 elders).
    wristband_share: float = 1_000 / 400_000
    min_wristbands: int = 20
    # Love milk eligibility (the programme's rules were not found: configurable).
    milk_min_age: int = 80
    # Count, per fault kind, the cells that could have carried it (truth/fault_exposure);
    # costs a Python pass over every cell, so only tests turn it on.
    record_exposure: bool = False

    @property
    def end(self) -> date:
        """Last day of the period (inclusive)."""
        return self.start + timedelta(days=self.days - 1)

    def period(self) -> list[date]:
        return [self.start + timedelta(days=i) for i in range(self.days)]

    def rate(self, kind: str) -> float:
        if kind in self.fault_rates:
            return self.fault_rates[kind]
        return load_fault_specs()[kind].rate

    def month_starts(self) -> list[date]:
        """Delivery dates of monthly files: the first day, then each 1st of a month."""
        out = [self.start]
        out += [d for d in self.period()[1:] if d.day == 1]
        return out

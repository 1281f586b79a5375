"""Safety alert rules as configuration (``alert_rules.yaml``), validated by pydantic.

Every threshold of :mod:`assets.marts.alerts` comes from here; ``load_rules()``
reads the YAML next to this module (or another file), ``rules.version_hash``
fingerprints the settings so each mart row says which rules raised it.
"""

from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

RULES_PATH = Path(__file__).with_name("alert_rules.yaml")

Severity = Literal["CRITICAL", "HIGH", "MEDIUM"]
SEVERITY_RANK: dict[str, int] = {"MEDIUM": 1, "HIGH": 2, "CRITICAL": 3}

# alert types (code list ``alert_type`` in schemas/codelists.yaml)
WATER_INACTIVITY = "WATER_INACTIVITY"
SOS = "SOS"
FALL = "FALL"
HEART_RATE_HIGH = "HEART_RATE_HIGH"
HEART_RATE_LOW = "HEART_RATE_LOW"
LOW_SPO2 = "LOW_SPO2"
GEOFENCE_EXIT = "GEOFENCE_EXIT"
ALERT_TYPES = (WATER_INACTIVITY, SOS, FALL, HEART_RATE_HIGH, HEART_RATE_LOW, LOW_SPO2, GEOFENCE_EXIT)


class _Rule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = True
    severity: Severity
    dedup_minutes: int = Field(ge=0)
    lookback_hours: int = Field(ge=0, le=72)


class _Sustained(_Rule):
    """At least ``min_readings`` consecutive readings spanning ``min_duration_minutes``."""

    min_duration_minutes: int = Field(ge=0)
    min_readings: int = Field(ge=1)
    max_gap_minutes: int = Field(gt=0)


class WaterRule(_Rule):
    window_hours: int = Field(gt=0, le=72)
    min_use_m3: float = Field(gt=0)
    max_gap_hours: int = Field(ge=0)
    lives_alone_only: bool = True
    unknown_lives_alone_alerts: bool = True
    critical_after_hours: int | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _lookback_covers_window(self) -> WaterRule:
        if self.lookback_hours < self.window_hours + self.max_gap_hours:
            raise ValueError("water_inactivity.lookback_hours must cover window_hours + max_gap_hours")
        return self


class HeartRateRule(_Sustained):
    high_bpm: int = Field(gt=0)
    low_bpm: int = Field(gt=0)

    @model_validator(mode="after")
    def _bounds(self) -> HeartRateRule:
        if self.low_bpm >= self.high_bpm:
            raise ValueError("heart_rate.low_bpm must be below high_bpm")
        return self


class Spo2Rule(_Sustained):
    below_pct: float = Field(gt=0, le=100)
    critical_below_pct: float | None = Field(default=None, gt=0, le=100)


class SosRule(_Rule):
    pass


class FallRule(_Rule):
    no_movement_minutes: int | None = Field(default=None, gt=0)
    no_movement_severity: Severity = "CRITICAL"


class GeofenceRule(_Rule):
    dwell_minutes: int = Field(ge=0)
    margin_m: float = Field(default=0, ge=0)
    max_gap_minutes: int = Field(gt=0)
    use_device_events: bool = True


class AlertRules(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    version: int
    auto_close_after_hours: int | None = Field(default=None, gt=0)
    rescue_quarantined_events: bool = True
    water_inactivity: WaterRule
    heart_rate: HeartRateRule
    spo2: Spo2Rule
    sos: SosRule
    fall: FallRule
    geofence_exit: GeofenceRule

    def dedup_minutes(self, alert_type: str) -> int:
        return self.rule_for(alert_type).dedup_minutes

    def rule_for(self, alert_type: str) -> _Rule:
        return {
            WATER_INACTIVITY: self.water_inactivity,
            SOS: self.sos,
            FALL: self.fall,
            HEART_RATE_HIGH: self.heart_rate,
            HEART_RATE_LOW: self.heart_rate,
            LOW_SPO2: self.spo2,
            GEOFENCE_EXIT: self.geofence_exit,
        }[alert_type]

    @property
    def version_hash(self) -> str:
        """A short fingerprint of every setting (written on each mart row)."""
        text = json.dumps(self.model_dump(mode="json"), sort_keys=True)
        return f"v{self.version}-{hashlib.sha256(text.encode()).hexdigest()[:8]}"

    @property
    def vitals_lookback_hours(self) -> int:
        return max(
            self.heart_rate.lookback_hours, self.spo2.lookback_hours, self.geofence_exit.lookback_hours
        )

    @property
    def max_lookback_hours(self) -> int:
        return max(
            self.vitals_lookback_hours,
            self.water_inactivity.lookback_hours,
            self.sos.lookback_hours,
            self.fall.lookback_hours,
        )

    @property
    def max_dedup_minutes(self) -> int:
        return max(self.dedup_minutes(t) for t in ALERT_TYPES)

    def with_changes(self, **changes: dict[str, object]) -> AlertRules:
        """A copy with some rules' settings changed: ``rules.with_changes(spo2={"below_pct": 85})``."""
        data = self.model_dump()
        for rule, values in changes.items():
            data[rule] = {**data[rule], **values}
        return AlertRules.model_validate(data)


def load_rules(path: Path | str | None = None) -> AlertRules:
    """The rules in ``path`` (default: ``assets/marts/alert_rules.yaml``), validated."""
    return _load(str(Path(path) if path else RULES_PATH))


@functools.cache
def _load(path: str) -> AlertRules:
    data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    return AlertRules.model_validate(data)

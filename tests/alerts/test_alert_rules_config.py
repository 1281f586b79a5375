"""Alert thresholds are configuration: the YAML loads, is validated, and every rule reads it."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from assets.marts.alert_rules import ALERT_TYPES, RULES_PATH, load_rules
from schemas import load_registry


def test_the_shipped_rules_hold_the_documented_defaults() -> None:
    r = load_rules()
    assert (r.water_inactivity.window_hours, r.water_inactivity.min_use_m3) == (12, 0.01)
    assert (r.heart_rate.high_bpm, r.heart_rate.low_bpm, r.heart_rate.min_duration_minutes) == (120, 45, 10)
    assert r.spo2.below_pct == 90
    assert r.geofence_exit.dwell_minutes == 10
    assert r.version_hash.startswith(f"v{r.version}-")


def test_every_alert_type_is_in_the_code_list_and_has_a_rule() -> None:
    r = load_rules()
    assert set(ALERT_TYPES) == load_registry().codelist("alert_type").codes()
    for t in ALERT_TYPES:
        assert r.dedup_minutes(t) >= 0


@pytest.mark.parametrize(
    ("rule", "change", "message"),
    [
        ("heart_rate", {"low_bpm": 130}, "low_bpm must be below high_bpm"),
        ("water_inactivity", {"lookback_hours": 6}, "lookback_hours must cover"),
        ("sos", {"severity": "URGENT"}, "severity"),
        ("spo2", {"threshold": 90}, "Extra inputs are not permitted"),
    ],
)
def test_when_a_setting_is_invalid_then_loading_fails_with_its_name(
    tmp_path: Path, rule: str, change: dict[str, object], message: str
) -> None:
    data = yaml.safe_load(RULES_PATH.read_text(encoding="utf-8"))
    data[rule].update(change)
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    with pytest.raises(ValidationError, match=message):
        load_rules(path)


def test_a_changed_file_gives_changed_rules_and_version(tmp_path: Path) -> None:
    data = yaml.safe_load(RULES_PATH.read_text(encoding="utf-8"))
    data["water_inactivity"]["min_use_m3"] = 0.02
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    changed = load_rules(path)
    assert changed.water_inactivity.min_use_m3 == 0.02
    assert changed.version_hash != load_rules().version_hash

"""Fixtures of the alert tests (helpers in alert_support.py)."""

from __future__ import annotations

import pytest

from tests.alerts.alert_support import AlertLake, build_alert_lake


@pytest.fixture(scope="session")
def alert_lake(tmp_path_factory: pytest.TempPathFactory) -> AlertLake:
    """3,000 elders x 14 days, 150 wristbands; monitoring tables staged; every hour's alerts run."""
    return build_alert_lake(tmp_path_factory.mktemp("alerts") / "lake")

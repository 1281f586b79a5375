"""Schedules."""

from __future__ import annotations

import dagster as dg

from pipelines.jobs import nightly_build

NIGHTLY_CRON = "0 2 * * *"
TIMEZONE = "Asia/Shanghai"

# Stopped by default: turn it on in the UI (or set default_status) where the
# daemon should run the nightly build.
nightly_schedule = dg.ScheduleDefinition(
    name="nightly_build_schedule",
    job=nightly_build,
    cron_schedule=NIGHTLY_CRON,
    execution_timezone=TIMEZONE,
    description="每日 02:00（北京时间）运行 nightly_build。Daily at 02:00 Asia/Shanghai.",
)

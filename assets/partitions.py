"""The one partitioning of the lake: event tables by delivery date (Asia/Shanghai days).

A table whose contract says ``delivery.partitioned: true`` is partitioned by
the date in its delivered file names (``{date:%Y%m%d}``), in every zone that
carries it table by table (raw, staged). Everything else is unpartitioned.

:func:`daily_partitions` reads ``$RAINBOW_PARTITION_START`` when it is called
(when the definitions are built), never at import. Build it once per code
location and hand the same object to every asset factory, job and sensor
(two ``DailyPartitionsDefinition`` with equal arguments also compare equal).
"""

from __future__ import annotations

import os
import re
from datetime import date

import dagster as dg

from schemas.contract import Table

PARTITION_START_ENV = "RAINBOW_PARTITION_START"
DEFAULT_PARTITION_START = "2024-01-01"
PARTITION_TIMEZONE = "Asia/Shanghai"
PARTITION_FORMAT = "%Y-%m-%d"  # Dagster's default for daily partitions: keys are ISO dates


def daily_partitions(start: str | None = None) -> dg.DailyPartitionsDefinition:
    """Daily partitions from ``start`` (default ``$RAINBOW_PARTITION_START`` or 2024-01-01).

    ``end_offset=1``: today's partition (Shanghai time) exists already, so a
    delivery arriving during the day can be ingested the same day.
    """
    first = start or os.environ.get(PARTITION_START_ENV) or DEFAULT_PARTITION_START
    date.fromisoformat(first)  # fail early, with a clear message, on a malformed setting
    return dg.DailyPartitionsDefinition(
        start_date=first, timezone=PARTITION_TIMEZONE, end_offset=1, fmt=PARTITION_FORMAT
    )


def is_partitioned(table: Table) -> bool:
    """Partitioned by delivery date: the contract says so (and its template names the day)."""
    if not table.delivery.partitioned:
        return False
    if not re.search(r"\{date:[^}]*%d[^}]*\}", table.delivery.path):
        raise ValueError(
            f"table {table.name} is partitioned but its path template {table.delivery.path!r} "
            "has no {date:...%d...} placeholder: its files cannot be assigned to a day"
        )
    return True


def partitions_for(table: Table, daily: dg.PartitionsDefinition) -> dg.PartitionsDefinition | None:
    """``daily`` for a partitioned table, None otherwise: the rule every zone's factory follows."""
    return daily if is_partitioned(table) else None


def partition_key(day: date) -> str:
    return day.strftime(PARTITION_FORMAT)


def partition_date(key: str) -> date:
    return date.fromisoformat(key)

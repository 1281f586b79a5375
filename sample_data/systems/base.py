"""What every system shares: the context, the world and the delivery calendar."""

from __future__ import annotations

from datetime import date, datetime

import numpy as np

from sample_data.deliver import GenContext, stable_rng
from sample_data.world import World
from schemas.contract import Table


class System:
    """A source system: delivers its tables' files for each day of the period."""

    name: str = ""

    def __init__(self, ctx: GenContext, world: World) -> None:
        self.ctx = ctx
        self.world = world
        self.cfg = ctx.cfg

    def table(self, name: str) -> Table:
        return self.ctx.registry.table(name)

    def rng(self, *parts: object) -> np.random.Generator:
        return stable_rng(self.cfg, self.name, *parts)

    def is_month_delivery(self, day: date) -> bool:
        return day in self.cfg.month_starts()

    def on_day(self, day: date) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def finish(self) -> None:
        """Called after the last day (incidents still open, ...)."""


def record_incident(
    ctx: GenContext,
    iid: str,
    kind: str,
    person: str | None,
    device: str | None,
    start: datetime,
    end: datetime,
    detail: str,
) -> None:
    """Write one planted incident to the truth (what the safety alerts must find)."""
    ctx.truth.add(
        "incidents",
        [
            {
                "incident_id": iid,
                "kind": kind,
                "person_id": person,
                "device_id": device,
                "start": start,
                "end": end,
                "detail": detail,
            }
        ],
    )

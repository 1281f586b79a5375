"""What every system shares: the context, the world and the delivery calendar."""

from __future__ import annotations

from datetime import date

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

"""Facilities registry and caregivers: monthly Excel lists."""

from __future__ import annotations

from datetime import date

import polars as pl

from sample_data.deliver import deliver
from sample_data.systems.base import System


class Facilities(System):
    name = "facilities"

    def on_day(self, day: date) -> None:
        if not self.is_month_delivery(day):
            return
        f = self.world.facilities
        closed = pl.col("closed_on").is_not_null() & (pl.col("closed_on") <= day)
        frame = f.with_columns(
            status=pl.when(closed).then(pl.lit("CLOSED")).otherwise(pl.col("status")),
            closed_on=pl.when(closed).then(pl.col("closed_on")).otherwise(None),
        )
        deliver(
            self.ctx, self.table("facilities"), frame, day, title=f"杨浦区养老服务设施名录（{day:%Y年%m月}）"
        )


class Caregivers(System):
    name = "caregivers"

    def on_day(self, day: date) -> None:
        if not self.is_month_delivery(day):
            return
        left = pl.col("leaves_on").is_not_null() & (pl.col("leaves_on") <= day)
        frame = self.world.caregivers.with_columns(
            phone=pl.col("mobile"),
            employment_status=pl.when(left).then(pl.lit("LEFT")).otherwise(pl.lit("ACTIVE")),
        )
        deliver(self.ctx, self.table("caregivers"), frame, day)

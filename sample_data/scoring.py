"""Score the pipeline against the generator's truth (tests and benchmarks only).

The pipeline never imports this module: it reads ``truth/``.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from rainbow.settings import Lake
from sample_data.truth import read_truth


@dataclass(frozen=True)
class QuarantineScore:
    hard_faults: int  # hard faults planted in files that were ingested
    caught: int  # ... whose row is quarantined with the fault's reason code
    caught_other_reason: int  # ... quarantined, but not with that reason
    missed: int  # ... staged as if clean
    quarantined_rows: int
    clean_rows_quarantined: int  # quarantined rows with no hard fault planted in them
    by_kind: pl.DataFrame

    @property
    def recall(self) -> float:
        return self.caught / self.hard_faults if self.hard_faults else 1.0


def score_quarantine(lake: Lake) -> QuarantineScore:
    faults = read_truth(lake.truth, "faults").filter(
        (pl.col("severity") == "hard") & pl.col("row_number").is_not_null()
    )
    parts = sorted((lake.staged / "_quarantine").rglob("*.parquet"))
    q = pl.concat(
        [
            pl.read_parquet(p, columns=["_source_file", "_row_number", "_reasons"]).rename(
                {"_source_file": "source_file", "_row_number": "row_number"}
            )
            for p in parts
        ]
    )
    # Tables keep their own quarantine folders; the file path identifies the table.
    joined = faults.join(q, on=["source_file", "row_number"], how="left").with_columns(
        caught=pl.col("_reasons").list.contains(pl.col("reason")).fill_null(False),
        quarantined=pl.col("_reasons").is_not_null(),
    )
    by_kind = (
        joined.group_by("kind", "reason")
        .agg(pl.len().alias("planted"), pl.col("caught").sum(), pl.col("quarantined").sum())
        .sort("kind")
    )
    faulty_rows = faults.select("source_file", "row_number").unique()
    clean_q = q.join(faulty_rows, on=["source_file", "row_number"], how="anti")
    return QuarantineScore(
        hard_faults=joined.height,
        caught=int(joined["caught"].sum()),
        caught_other_reason=int((joined["quarantined"] & ~joined["caught"]).sum()),
        missed=int((~joined["quarantined"]).sum()),
        quarantined_rows=q.height,
        clean_rows_quarantined=clean_q.height,
        by_kind=by_kind,
    )

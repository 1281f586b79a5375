"""Score the pipeline against the generator's truth (tests and benchmarks only).

The pipeline never imports this module: it reads ``truth/``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import polars as pl

from rainbow.parquet import read_frame
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
            read_frame(p, lake, columns=["_source_file", "_row_number", "_reasons"]).rename(
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


# ------------------------------------------------------------------ golden record

GOLDEN_ATTRIBUTES = ("name", "sex", "birth_date", "id_number", "street", "living_arrangement", "status")


def golden_truth(lake: Lake, as_of: date) -> pl.DataFrame:
    """Per elder_key: the generator's person it stands for (the majority of its linked records)
    and that person's true attributes on ``as_of``."""
    links = read_frame(lake.library / "elder_links" / "data.parquet", lake)
    truth_links = read_truth(lake.truth, "links").filter(pl.col("role") == "subject")
    owner = (
        links.join(
            truth_links.select(
                pl.col("table").alias("source_table"),
                pl.col("source_file"),
                pl.col("row_number").cast(pl.Int64),
                "person_id",
            ),
            on=["source_table", "source_file", "row_number"],
        )
        .group_by("elder_key", "person_id")
        .len()
        .sort(["elder_key", "len", "person_id"], descending=[False, True, False])
        .group_by("elder_key", maintain_order=True)
        .first()
    )
    persons = read_truth(lake.truth, "persons").select(
        "person_id",
        "name",
        "sex",
        "birth_date",
        "id_number",
        pl.when(pl.col("moved_on").is_not_null() & (pl.col("moved_on") <= as_of))
        .then(pl.col("new_street_code"))
        .otherwise(pl.col("street_code"))
        .alias("street"),
        "living_arrangement",
        pl.when(pl.col("death_date").is_not_null() & (pl.col("death_date") <= as_of))
        .then(pl.lit("DECEASED"))
        .when(pl.col("move_out_date").is_not_null() & (pl.col("move_out_date") <= as_of))
        .then(pl.lit("MOVED_OUT"))
        .otherwise(pl.lit("ACTIVE"))
        .alias("status"),
    )
    return owner.select("elder_key", "person_id").join(persons, on="person_id")


def score_golden(lake: Lake, as_of: date) -> dict[str, float]:
    """Share of golden records whose attribute equals the truth, per attribute (over records with a
    value); plus ``filled_<attr>``: the share of golden records with a value at all."""
    golden = read_frame(lake.library / "dim_elder" / "data.parquet", lake)
    both = golden.join(golden_truth(lake, as_of), on="elder_key", suffix="_true")
    out: dict[str, float] = {"elders": float(both.height)}
    for attr in GOLDEN_ATTRIBUTES:
        have = both.filter(pl.col(attr).is_not_null())
        same = int((have[attr] == have[f"{attr}_true"]).sum())
        out[attr] = same / have.height if have.height else 0.0
        out[f"filled_{attr}"] = have.height / both.height if both.height else 0.0
    return out

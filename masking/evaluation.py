"""Scoring the recognizers against labelled notes: the generator's planted PII spans.

Used by the tests and ``benchmarks/pii.py`` (never by the pipeline: the truth exists
only for generated lakes). Matching is entity-level: a finding and a planted span of
the same entity type in the same note match exactly (same start and end) or, with
``overlap=True``, when they overlap. Our CN_MOBILE_PHONE and CN_LANDLINE_PHONE are
the truth's PHONE_NUMBER.
"""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl

from rainbow.settings import Lake

# Our entity -> the truth's entity type.
TRUTH_ENTITY = {"CN_MOBILE_PHONE": "PHONE_NUMBER", "CN_LANDLINE_PHONE": "PHONE_NUMBER"}
NOTE_KEY = ["source_file", "row_number", "column"]


def labelled_notes(lake: Lake) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(notes, spans): every non-null free-text value delivered, and the PII planted in them.

    notes: table, source_file, row_number, column, text. spans: the truth's
    ``pii_in_notes`` (source_file, row_number, column, entity_type, start, end, value),
    each checked against the delivered text.
    """
    from assets.ingest.readers import ROW_NUMBER, read_delivery
    from sample_data.truth import read_truth
    from schemas import load_registry

    reg = load_registry()
    free_text = {
        t.name: [c.name for c in t.columns if c.semantic == "free_text"]
        for _, t in reg.tables()
        if any(c.semantic == "free_text" for c in t.columns)
    }
    files = read_truth(lake.truth, "files").filter(
        pl.col("table").is_in(list(free_text)) & pl.col("duplicate_of").is_null()
    )
    parts = []
    for table, src in files.select("table", "source_file").sort("source_file").iter_rows():
        rows = read_delivery(lake.landing / src, reg.table(table)).rows
        for column in free_text[table]:
            parts.append(
                rows.select(
                    table=pl.lit(table),
                    source_file=pl.lit(src),
                    row_number=pl.col(ROW_NUMBER).cast(pl.Int64),
                    column=pl.lit(column),
                    text=pl.col(column),
                ).filter(pl.col("text").is_not_null())
            )
    notes = pl.concat(parts)
    planted = read_truth(lake.truth, "pii_in_notes")
    # Rows delivered twice (fault duplicate_row) carry their original's notes and spans.
    copies = (
        read_truth(lake.truth, "faults")
        .filter(pl.col("kind") == "duplicate_row")
        .select("source_file", "row_number", original=pl.col("original").cast(pl.Int64))
    )
    planted = pl.concat(
        [
            planted,
            planted.join(copies, left_on=["source_file", "row_number"], right_on=["source_file", "original"])
            .drop("row_number")
            .rename({"row_number_right": "row_number"})
            .select(planted.columns),
        ]
    )
    spans = planted.join(notes.select(*NOTE_KEY, "text"), on=NOTE_KEY, how="left")
    bad = spans.filter(
        pl.col("text").is_null()
        | (pl.col("text").str.slice(pl.col("start"), pl.col("end") - pl.col("start")) != pl.col("value"))
    )
    if bad.height:
        raise ValueError(f"{bad.height} planted spans do not match the delivered text, e.g. {bad.row(0)}")
    return notes, spans.drop("text")


def findings_frame(notes: pl.DataFrame, findings: Sequence[Sequence[tuple[str, int, int]]]) -> pl.DataFrame:
    """One row per finding: the note's key, entity_type (in the truth's names), start, end."""
    rows = [
        (i, TRUTH_ENTITY.get(entity, entity), start, end)
        for i, found in enumerate(findings)
        for entity, start, end in found
    ]
    found = pl.DataFrame(
        rows,
        schema={"i": pl.Int64, "entity_type": pl.String, "start": pl.Int64, "end": pl.Int64},
        orient="row",
    )
    keys = notes.select(NOTE_KEY).with_row_index("i").with_columns(pl.col("i").cast(pl.Int64))
    return found.join(keys, on="i").drop("i")


def score_entities(
    found: pl.DataFrame, spans: pl.DataFrame, overlap: bool = False
) -> dict[str, dict[str, float]]:
    """Per entity type: found, planted, true positives (found side), precision, recall, F1."""
    on = [*NOTE_KEY, "entity_type"]
    pairs = found.with_row_index("f").join(spans.with_row_index("t"), on=on, suffix="_t")
    if overlap:
        pairs = pairs.filter((pl.col("start") < pl.col("end_t")) & (pl.col("start_t") < pl.col("end")))
    else:
        pairs = pairs.filter((pl.col("start") == pl.col("start_t")) & (pl.col("end") == pl.col("end_t")))
    out: dict[str, dict[str, float]] = {}
    for entity in sorted(set(found["entity_type"]) | set(spans["entity_type"])):
        n_found = found.filter(pl.col("entity_type") == entity).height
        n_planted = spans.filter(pl.col("entity_type") == entity).height
        hits = pairs.filter(pl.col("entity_type") == entity)
        tp_found = hits["f"].n_unique()
        tp_planted = hits["t"].n_unique()
        p = tp_found / n_found if n_found else float("nan")
        r = tp_planted / n_planted if n_planted else float("nan")
        f1 = 2 * p * r / (p + r) if n_found and n_planted and p + r else float("nan")
        out[entity] = {
            "found": n_found,
            "planted": n_planted,
            "tp": tp_found,
            "precision": p,
            "recall": r,
            "f1": f1,
        }
    return out

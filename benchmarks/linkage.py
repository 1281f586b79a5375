"""Linkage benchmark: the master elder index's identity resolution against the generator's truth.

    python -m benchmarks.linkage --elders 100000 --days 30

Generates (once, cached under ``.bench/``) a lake, ingests and stages its
elder-bearing tables, extracts the person records, then links them in a fresh
process twice: our linkage (:func:`assets.library.identity.link_records`) and
the in-run baseline, linking only on validated resident IDs. Prints pairwise
precision and recall (pairs of records of one true person vs pairs sharing an
elder_key), records, clusters, seconds and peak memory of each.
"""

from __future__ import annotations

import argparse
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl

from benchmarks.common import cached_landing, console, measure, print_table
from rainbow.settings import Lake
from sample_data.config import GeneratorConfig
from sample_data.truth import read_truth
from schemas import load_registry


def staged_records(cache: Path, cfg: GeneratorConfig) -> tuple[Path, Path]:
    """Person records and their true person ids, staged once per config and cached."""
    from assets.library.record_cache import person_records
    from assets.library.records import elder_tables
    from assets.staging.stage import ingest_and_stage

    landing = cached_landing(cache, cfg)
    work = Lake(cache / f"linkage-{cfg.elders}x{cfg.days}-s{cfg.seed}")
    records, truth = work.root / "records.parquet", work.root / "truth.parquet"
    if records.exists() and truth.exists():
        return records, truth
    work.root.mkdir(parents=True, exist_ok=True)
    if not work.landing.exists():
        work.landing.symlink_to(landing.landing)
    reg = load_registry()
    t0 = time.perf_counter()
    ingest_and_stage(work, reg, datetime(2026, 12, 1, 2, tzinfo=UTC), elder_tables(reg))
    recs = person_records(work, reg)
    links = read_truth(landing.truth, "links")
    true = recs.join(
        links,
        left_on=["source", "_source_file", "_row_number"],
        right_on=["table", "source_file", "row_number"],
        how="inner",
    ).select("record_id", "person_id")
    recs.drop("_source_file", "_row_number").write_parquet(records)
    true.write_parquet(truth)
    console.print(f"  staged {recs.height:,} person records in {time.perf_counter() - t0:.1f} s (cached)")
    return records, truth


def run_link(records: str, out: str) -> dict[str, Any]:
    from assets.library.identity import link_records

    result = link_records(pl.read_parquet(records))
    result.assignments.write_parquet(out)
    methods = result.assignments.group_by("link_method").len()
    return {**result.stats, "methods": {str(m): int(n) for m, n in methods.iter_rows()}}


def run_baseline(records: str, out: str) -> dict[str, Any]:
    from assets.library.identity import id_exact_assignments

    id_exact_assignments(pl.read_parquet(records)).write_parquet(out)
    return {}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--elders", type=int, default=100_000)
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--seed", type=int, default=20261101)
    ap.add_argument("--cache", type=Path, default=Path(".bench"))
    args = ap.parse_args()
    from assets.library.identity import pairwise_scores

    cfg = GeneratorConfig(elders=args.elders, days=args.days, seed=args.seed)
    records, truth_path = staged_records(args.cache.resolve(), cfg)
    truth = pl.read_parquet(truth_path)
    rows = []
    stats: dict[str, Any] = {}
    for label, fn in (("ID-exact baseline", run_baseline), ("link_records", run_link)):
        out = records.with_name(f"assignments-{fn.__name__}.parquet")
        m = measure(fn, str(records), str(out))
        assignments = pl.read_parquet(out)
        score = pairwise_scores(assignments, truth)
        if fn is run_link:
            stats = m.result
        rows.append(
            [
                label,
                f"{assignments.height:,}",
                f"{assignments['elder_key'].n_unique():,}",
                f"{truth['person_id'].n_unique():,}",
                f"{score['precision']:.5f}",
                f"{score['recall']:.5f}",
                f"{m.seconds:.1f}",
                f"{m.peak_mb:,.0f}",
            ]
        )
    print_table(
        f"identity resolution at {cfg.elders:,} elders x {cfg.days} days (pairwise, against the truth)",
        ["method", "records", "clusters", "true persons", "precision", "recall", "seconds", "peak MB"],
        rows,
    )
    methods = stats.pop("methods", {})
    print_table(
        "link_records internals",
        ["measure", "value"],
        [[k, f"{v:,.6g}" if isinstance(v, float) else f"{v:,}"] for k, v in stats.items()]
        + [[f"records linked by {k}", f"{v:,}"] for k, v in sorted(methods.items())],
    )


if __name__ == "__main__":
    main()

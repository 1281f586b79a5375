"""Library benchmark: staged -> library (master elder index, golden record, every library table).

    python -m benchmarks.library --elders 100000 --days 30

Generates (once, cached under ``.bench/``) a lake and stages every table
(cached too), then builds the library in a fresh process: wall time and peak
memory of the whole build, rows and seconds per table, rows/s over the staged
rows read; pairwise precision/recall of the index and golden-record accuracy
against the generator's truth. The in-run floor is DuckDB alone reading every
staged Parquet file once (``count(*)`` over each table): the ratio says how
much the library costs beyond touching its input.
"""

from __future__ import annotations

import argparse
import shutil
import time
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import polars as pl

from benchmarks.common import cached_landing, console, measure, print_table
from rainbow.parquet import read_frame, row_count
from rainbow.settings import Lake
from sample_data.config import GeneratorConfig
from schemas import load_registry


def staged_lake(cache: Path, cfg: GeneratorConfig) -> Lake:
    """Every table ingested and staged once per config (cached; the library is rebuilt each run)."""
    from assets.staging.stage import ingest_and_stage

    landing = cached_landing(cache, cfg)
    work = Lake(cache / f"library-{cfg.elders}x{cfg.days}-s{cfg.seed}")
    stamp = work.root / "staged.ok"
    if not stamp.exists():
        shutil.rmtree(work.root, ignore_errors=True)
        work.root.mkdir(parents=True)
        work.landing.symlink_to(landing.landing.resolve())
        work.truth.symlink_to(landing.truth.resolve())
        t0 = time.perf_counter()
        ingest_and_stage(work, load_registry(), datetime(2026, 12, 1, 2, tzinfo=UTC))
        console.print(f"  ingested and staged every table in {time.perf_counter() - t0:.1f} s (cached)")
        stamp.write_text("ok")
    shutil.rmtree(work.library, ignore_errors=True)
    return work


def run_floor(root: str) -> int:
    lake = Lake(Path(root))
    reg = load_registry()
    total = 0
    for _, t in reg.tables():
        total += sum(row_count(p, lake) for p in sorted((lake.staged / t.name).rglob("*.parquet")))
    return total


def run_build(root: str) -> dict[str, tuple[int, float]]:
    from assets.library.build import build_library

    return build_library(Lake(Path(root)), load_registry(), datetime(2026, 12, 1, 2, 0))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--elders", type=int, default=100_000)
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--seed", type=int, default=20261101)
    ap.add_argument("--cache", type=Path, default=Path(".bench"))
    args = ap.parse_args()
    cfg = GeneratorConfig(elders=args.elders, days=args.days, seed=args.seed)
    lake = staged_lake(args.cache, cfg)

    floor = measure(run_floor, str(lake.root))
    built = measure(run_build, str(lake.root))
    staged_rows = int(floor.result)
    tables: dict[str, Any] = built.result
    rows = [[name, f"{n:,}", f"{s:.2f}"] for name, (n, s) in tables.items()]
    title = f"library tables ({cfg.elders:,} elders x {cfg.days} days)"
    print_table(title, ["table", "rows", "seconds"], rows)

    from assets.library.build import as_of_date
    from assets.library.identity import pairwise_scores
    from sample_data.scoring import golden_truth, score_golden

    as_of = date.fromisoformat(as_of_date(lake, load_registry()) or "2026-12-01")
    links = read_frame(lake.library / "elder_links" / "data.parquet", lake)
    truth = golden_truth(lake, as_of)  # elder_key -> majority person (for golden accuracy)
    from sample_data.truth import read_truth

    true_links = read_truth(lake.truth, "links").select(
        pl.format("{}:{}:{}", "table", "source_file", "row_number").alias("record_id"), "person_id"
    )
    pr = pairwise_scores(links, true_links)
    golden = score_golden(lake, as_of)
    print_table(
        "whole build vs floor (DuckDB reading every staged Parquet once)",
        ["measure", "seconds", "peak MB", "staged rows/s", "ratio"],
        [
            ["floor: count(*) over staged", f"{floor.seconds:.1f}", f"{floor.peak_mb:,.0f}",
             f"{staged_rows / floor.seconds:,.0f}", "1.00"],
            ["library build", f"{built.seconds:.1f}", f"{built.peak_mb:,.0f}",
             f"{staged_rows / built.seconds:,.0f}", f"{built.seconds / floor.seconds:.1f}"],
        ],
    )  # fmt: skip
    print_table(
        "quality against the generator's truth",
        ["measure", "value"],
        [
            ["records linked", f"{int(pr['records']):,}"],
            ["pairwise precision", f"{pr['precision']:.5f}"],
            ["pairwise recall", f"{pr['recall']:.5f}"],
            ["elders (golden records)", f"{len(truth):,}"],
            *[[f"golden {k}", f"{v:.4f}"] for k, v in golden.items() if k != "elders"],
        ],
    )


if __name__ == "__main__":
    main()

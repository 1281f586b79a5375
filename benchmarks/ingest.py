"""Ingest benchmark: landing -> raw -> staged against DuckDB's own readers as the floor.

    python -m benchmarks.ingest --elders 100000 --days 7

The floor is DuckDB alone reading each landing file it can read natively
(UTF-8 CSV, JSON dumps, JSON lines) straight into Parquet. DuckDB cannot read
GBK CSV without downloading its encodings extension, nor XLSX without the excel
extension, so the ratio is taken over the tables whose every file the floor
reads; the other tables are timed and listed beside it.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import polars as pl

from benchmarks.common import cached_landing, console, measure, print_table
from rainbow.settings import Lake
from sample_data.config import GeneratorConfig
from sample_data.truth import read_truth
from schemas import load_registry


def floor_tables(lake: Lake) -> set[str]:
    """Tables whose every delivered file DuckDB reads without extensions."""
    files = read_truth(lake.truth, "files")
    ok = files.group_by("table").agg(
        (
            pl.col("format").is_in(["json_dump", "jsonl"])
            | (pl.col("encoding") != "gbk") & (pl.col("format") == "csv")
        )
        .all()
        .alias("ok")
    )
    return set(ok.filter(pl.col("ok"))["table"])


def run_floor(lake_root: str, out_dir: str, tables: list[str]) -> dict[str, int]:
    """DuckDB reads each file of ``tables`` to Parquet; returns rows per table."""
    lake = Lake(Path(lake_root))
    reg = load_registry()
    con = duckdb.connect()
    out = Path(out_dir)
    rows: dict[str, int] = {}
    for name in tables:
        table = reg.table(name)
        fmt = table.delivery.format
        folder = lake.landing / table.delivery.path.split("/")[0]
        stem = table.delivery.path.split("/")[1].split("{")[0]
        for i, f in enumerate(sorted(folder.glob(f"{stem}*"))):
            target = out / f"{name}-{i}.parquet"
            if fmt == "csv":
                src = f"read_csv('{f}', all_varchar=true, header=true)"
            elif fmt == "jsonl":
                src = f"read_json('{f}', format='newline_delimited', ignore_errors=true)"
            else:
                src = (
                    "(select unnest(data.records, recursive := true) "
                    f"from read_json('{f}', maximum_object_size=1073741824))"
                )
            con.execute(f"copy (select * from {src}) to '{target}' (format parquet)")
            rows[name] = rows.get(name, 0) + int(con.sql(f"select count(*) from '{target}'").fetchall()[0][0])
    return rows


def run_ours(lake_root: str, tables: list[str], stage: bool) -> dict[str, tuple[int, float, float]]:
    """Our ingest (and staging): rows, raw seconds and staged seconds per table."""
    from assets.ingest.raw import ingest_table
    from assets.staging.stage import stage_table

    lake = Lake(Path(lake_root))
    reg = load_registry()
    now = datetime(2026, 12, 1, 2, tzinfo=UTC)
    out: dict[str, tuple[int, float, float]] = {}
    for name in tables:
        table = reg.table(name)
        t0 = time.perf_counter()
        report = ingest_table(lake, table, now)
        t1 = time.perf_counter()
        if stage:
            stage_table(lake, table, reg)
        t2 = time.perf_counter()
        rows = sum(f.raw_rows + f.broken_rows for f in report.files)
        out[name] = (rows, t1 - t0, t2 - t1)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--elders", type=int, default=100_000)
    ap.add_argument("--days", type=int, default=7)
    ap.add_argument("--seed", type=int, default=20261101)
    ap.add_argument("--cache", type=Path, default=Path(".bench"))
    args = ap.parse_args()
    cfg = GeneratorConfig(elders=args.elders, days=args.days, seed=args.seed)
    lake = cached_landing(args.cache.resolve(), cfg)
    reg = load_registry()
    all_tables = [t.name for _, t in reg.tables()]
    comparable = sorted(floor_tables(lake))

    with tempfile.TemporaryDirectory(prefix="bench-floor-") as tmp:
        floor = measure(run_floor, str(lake.root), tmp, comparable)
    with tempfile.TemporaryDirectory(prefix="bench-ours-") as tmp:
        work = Lake(Path(tmp))
        work.root.mkdir(parents=True, exist_ok=True)
        (work.root / "landing").symlink_to(lake.landing)
        ours = measure(run_ours, str(work.root), all_tables, True)
        shutil.rmtree(work.root / "raw", ignore_errors=True)

    rows = []
    for name in all_tables:
        n, raw_s, staged_s = ours.result[name]
        rows.append(
            [
                name,
                "yes" if name in comparable else "no",
                f"{n:,}",
                f"{raw_s:.2f}",
                f"{staged_s:.2f}",
                f"{n / max(raw_s + staged_s, 1e-9):,.0f}",
            ]
        )
    print_table(
        f"landing -> raw -> staged at {cfg.elders:,} elders x {cfg.days} days",
        ["table", "floor-comparable", "rows", "raw s", "staged s", "rows/s"],
        rows,
    )
    f_rows = sum(floor.result.values())
    c_rows = sum(ours.result[t][0] for t in comparable)
    c_raw = sum(ours.result[t][1] for t in comparable)
    c_all = sum(ours.result[t][1] + ours.result[t][2] for t in comparable)
    tot_rows = sum(v[0] for v in ours.result.values())
    tot_s = sum(v[1] + v[2] for v in ours.result.values())
    print_table(
        "summary (each phase in its own process)",
        ["measure", "rows", "seconds", "rows/s", "peak MB", "x floor"],
        [
            [
                "floor: DuckDB read -> Parquet",
                f"{f_rows:,}",
                f"{floor.seconds:.2f}",
                f"{f_rows / floor.seconds:,.0f}",
                f"{floor.peak_mb:,.0f}",
                "1.00",
            ],
            [
                "ours raw only (same tables)",
                f"{c_rows:,}",
                f"{c_raw:.2f}",
                f"{c_rows / c_raw:,.0f}",
                "",
                f"{c_raw / floor.seconds:.2f}",
            ],
            [
                "ours raw + staged (same tables)",
                f"{c_rows:,}",
                f"{c_all:.2f}",
                f"{c_rows / c_all:,.0f}",
                "",
                f"{c_all / floor.seconds:.2f}",
            ],
            [
                "ours raw + staged (all tables)",
                f"{tot_rows:,}",
                f"{tot_s:.2f}",
                f"{tot_rows / tot_s:,.0f}",
                f"{ours.peak_mb:,.0f}",
                "",
            ],
        ],
    )
    if f_rows != c_rows:
        console.print(
            f"[yellow]note: the floor read {f_rows:,} rows, ours {c_rows:,} (broken lines, duplicates)"
        )


if __name__ == "__main__":
    main()

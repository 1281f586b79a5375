"""Quality benchmark: validating staged and library tables, our runner against GX's plain pandas path.

    python -m benchmarks.quality --elders 20000 --days 3 --rows 1000000

Both paths run the same suites (GX is the engine of record in both) on the same
frames, each in a fresh process:

* ours - :func:`quality.runner.validate`: one cached GX context, only the
  columns the rules read, no list column (GX fingerprints every batch by hashing
  it, and pickles the whole frame when a column holds lists), nullable integers
  as pandas ``Int64`` only when they hold nulls, masked examples;
* plain - :func:`quality.runner.validate_plain`: a fresh ephemeral context per
  call and the whole staged frame converted with ``to_pandas()``.

Frames: every staged table of a generated lake (whole), plus the two big event
tables (wristband vitals, water readings) repeated to ``--rows`` rows with
distinct keys; then every library table of the library built from that lake
(whole, with the as-of date the checks add), plus the two big library facts
(service events, daily vitals) repeated to ``--rows`` rows with distinct keys.
Both paths must agree on every rule's success and unexpected count. The library
checks' cross-table DuckDB rules (not GX) are timed apart, over the whole library.
"""

from __future__ import annotations

import argparse
import time
from datetime import UTC, date, datetime
from pathlib import Path

import polars as pl
from rich.console import Console

from benchmarks.common import cached_landing, console, measure, print_table
from rainbow.parquet import read_frame
from rainbow.settings import Lake
from sample_data.config import GeneratorConfig
from schemas import load_registry

BIG_TABLES = {"wristband_vitals": "measured_at", "water_readings": "read_at"}
# Big library facts repeated to --rows rows: table -> (date column shifted per copy, key made distinct)
BIG_LIBRARY = {
    "fact_service_event": ("service_date", "service_event_id"),
    "fact_vitals_daily": ("measure_date", None),
}
LIBRARY = "library:"  # frame-name prefix of library tables


def prepare_staged(landing: Lake, work: Path) -> Lake:
    """Ingest and stage every table once into ``work`` (reused by later runs)."""
    from assets.staging.stage import ingest_and_stage

    lake = Lake(work)
    stamp = work / "staged.ok"
    if stamp.exists():
        return lake
    work.mkdir(parents=True, exist_ok=True)
    if not (work / "landing").exists():
        (work / "landing").symlink_to(landing.landing.resolve())
    reg = load_registry()
    now = datetime(2026, 12, 1, 2, tzinfo=UTC)
    ingest_and_stage(lake, reg, now)
    stamp.write_text("ok\n")
    return lake


def prepare_library(lake: Lake) -> Lake:
    """Build the library from the staged zone once (reused by later runs)."""
    from assets.library.build import build_library

    stamp = lake.root / "library.ok"
    if not stamp.exists():
        build_library(lake, load_registry(), datetime(2026, 12, 1, 2, 0))
        stamp.write_text("ok\n")
    return lake


def load_library_frames(lake_root: str, rows: int) -> dict[str, pl.DataFrame]:
    """Every library table as its check loads it (whole, ``_as_of`` added), and the big facts
    repeated to ``rows`` rows (dates a year back per copy, keys made distinct)."""
    import duckdb

    from assets.library.build import as_of_date, create_library_views
    from assets.staging.stage import create_staged_views
    from quality.library_checks import fetch
    from quality.rules import AS_OF

    reg = load_registry()
    lake = Lake(Path(lake_root))
    con = duckdb.connect()
    try:
        for _, t in reg.tables():
            create_staged_views(con, lake, t)
        create_library_views(con, lake, reg)
        as_of = date.fromisoformat(as_of_date(lake, reg) or "2026-12-01")
        frames = {
            f"{LIBRARY}{t.name}": fetch(con, f"SELECT * FROM library.{t.name}").with_columns(
                pl.lit(as_of).alias(AS_OF)
            )
            for _, t in reg.derived_tables("library")
        }
    finally:
        con.close()
    for name, (day_col, key) in BIG_LIBRARY.items():
        base = frames[f"{LIBRARY}{name}"]
        if base.is_empty():
            continue
        copies = -(-rows // base.height)
        parts = []
        for i in range(copies):
            part = base.with_columns(pl.col(day_col) - pl.duration(days=366 * i))
            if key:
                part = part.with_columns(pl.col(key) + f"#{i}")
            parts.append(part)
        frames[f"{LIBRARY}{name} x{rows // 1000}k"] = pl.concat(parts).head(rows)
    return frames


def run_library_sql(lake_root: str) -> dict[str, float]:
    """Seconds of each library table's cross-table DuckDB rules over the whole library."""
    import duckdb

    from assets.library.build import create_library_views
    from assets.staging.stage import create_staged_views
    from quality.library_checks import cross_table_rules, evaluate

    reg = load_registry()
    lake = Lake(Path(lake_root))
    con = duckdb.connect()
    out = {}
    try:
        for _, source in reg.tables():
            create_staged_views(con, lake, source)
        create_library_views(con, lake, reg)
        for _, t in reg.derived_tables("library"):
            rules = cross_table_rules(t, reg)
            if rules:
                t0 = time.perf_counter()
                evaluate(con, t, rules)
                out[t.name] = time.perf_counter() - t0
    finally:
        con.close()
    return out


def all_frames(lake_root: str, rows: int) -> dict[str, pl.DataFrame]:
    return {**load_frames(lake_root, rows), **load_library_frames(lake_root, rows)}


def table_of(frame_name: str) -> str:
    return frame_name.removeprefix(LIBRARY).split(" ")[0]


def load_frames(lake_root: str, rows: int) -> dict[str, pl.DataFrame]:
    """Every staged table (whole), and the big event tables repeated to ``rows`` rows."""
    reg = load_registry()
    root = Path(lake_root) / "staged"
    frames = {}
    for _, table in reg.tables():
        files = sorted((root / table.name).rglob("*.parquet"))
        frames[table.name] = read_frame(files, Lake(Path(lake_root)))
    for name, time_col in BIG_TABLES.items():
        base = frames[name]
        if base.is_empty():
            continue
        copies = -(-rows // base.height)
        # Shift each copy by a year so the key (device/meter, time) stays unique.
        big = pl.concat(
            [base.with_columns(pl.col(time_col) - pl.duration(days=366 * i)) for i in range(copies)]
        ).head(rows)
        frames[f"{name} x{rows // 1000}k"] = big
    return frames


def run_path(lake_root: str, rows: int, plain: bool) -> dict[str, tuple[int, float, dict[str, float]]]:
    """Validate every frame; per frame: rows, seconds, and (ours) the time per stage."""
    from quality.runner import validate, validate_plain

    reg = load_registry()
    frames = all_frames(lake_root, rows)
    related = {"facilities": frames["facilities"]}
    out: dict[str, tuple[int, float, dict[str, float]]] = {}
    for name, frame in frames.items():
        table = table_of(name)
        t0 = time.perf_counter()
        if plain:
            validate_plain(frame, table, reg, related=related)
            timings: dict[str, float] = {}
        else:
            timings = validate(frame, table, reg, related=related).timings
        out[name] = (frame.height, time.perf_counter() - t0, timings)
    return out


def agreement(lake_root: str, rows: int) -> list[str]:
    """Rules on which the two paths disagree (success or unexpected count), on every frame.

    Expected: the type rule of an integer column holding nulls, which the plain
    ``to_pandas()`` turns into float64 (ours keeps it an integer: pandas ``Int64``),
    or written as a 32-bit integer (DuckDB's INTEGER in library tables: int32 in
    the plain path; ours widens it, the contract says ``integer``, not a width).
    """
    from quality.runner import validate, validate_plain
    from quality.suites import resolve_table

    reg = load_registry()
    frames = all_frames(lake_root, min(rows, 200_000))
    related = {"facilities": frames["facilities"]}
    bad = []
    for name, frame in frames.items():
        table = table_of(name)
        ours = validate(frame, table, reg, related=related)
        plain = validate_plain(frame, table, reg, related=related)
        for o in ours.outcomes:
            if o.evaluated and plain[o.rule_id] != (o.success, o.unexpected_count):
                column = o.rule_id.removeprefix("conformance.type.")
                expected = (
                    o.rule_id.startswith("conformance.type.")
                    and resolve_table(reg, table).column(column).type == "integer"
                    and (frame[column].null_count() > 0 or frame[column].dtype != pl.Int64)
                )
                note = (
                    " (expected: integer column with nulls or 32-bit, not int64 in the plain path)"
                    if expected
                    else ""
                )
                ours_says = (o.success, o.unexpected_count)
                bad.append(f"{name}.{o.rule_id}: ours {ours_says} plain {plain[o.rule_id]}{note}")
    return bad


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--elders", type=int, default=20_000)
    ap.add_argument("--days", type=int, default=3)
    ap.add_argument("--seed", type=int, default=20261101)
    ap.add_argument("--rows", type=int, default=1_000_000, help="rows of the repeated big event tables")
    ap.add_argument("--cache", type=Path, default=Path(".bench"))
    args = ap.parse_args()
    cfg = GeneratorConfig(elders=args.elders, days=args.days, seed=args.seed)
    landing = cached_landing(args.cache.resolve(), cfg)
    lake = prepare_staged(landing, args.cache.resolve() / f"quality-{cfg.elders}x{cfg.days}-s{cfg.seed}")
    prepare_library(lake)

    disagreements = measure(agreement, str(lake.root), args.rows).result
    ours = measure(run_path, str(lake.root), args.rows, False)
    plain = measure(run_path, str(lake.root), args.rows, True)
    sql = measure(run_library_sql, str(lake.root)).result

    rows = []
    total_rows = total_ours = total_plain = 0.0
    for name, (n, ours_s, timings) in ours.result.items():
        plain_s = plain.result[name][1]
        total_rows += n
        total_ours += ours_s
        total_plain += plain_s
        per_m = f"{ours_s / n * 1e6:.2f}" if n >= 100_000 else ""
        rows.append(
            [
                name,
                f"{n:,}",
                f"{ours_s:.3f}",
                f"{timings.get('gx', 0):.3f}",
                f"{plain_s:.3f}",
                f"{ours_s / plain_s:.2f}",
                per_m,
            ]
        )
    rows.append(
        [
            "total",
            f"{int(total_rows):,}",
            f"{total_ours:.2f}",
            "",
            f"{total_plain:.2f}",
            f"{total_ours / total_plain:.2f}",
            f"{total_ours / total_rows * 1e6:.2f}",
        ]
    )
    wide = Console(width=150)
    print_table(
        f"staged and library validation, {cfg.elders:,} elders x {cfg.days} days "
        f"(+ big tables at {args.rows:,} rows)",
        ["table", "rows", "ours s", "of which GX s", "plain GX s", "ours / plain", "ours s per 1M rows"],
        rows,
        out=wide,
    )
    console.print(
        f"peak RSS: ours {ours.peak_mb:.0f} MB, plain {plain.peak_mb:.0f} MB; "
        f"wall (incl. loading): ours {ours.seconds:.1f} s, plain {plain.seconds:.1f} s"
    )
    console.print(
        "library cross-table DuckDB rules (whole tables, not GX): "
        + ", ".join(f"{t} {sec:.3f} s" for t, sec in sql.items())
    )
    if disagreements:
        console.print("[red]the two paths disagree:[/]\n  " + "\n  ".join(disagreements))
    else:
        console.print("both paths agree on every rule's success and unexpected count")


if __name__ == "__main__":
    main()

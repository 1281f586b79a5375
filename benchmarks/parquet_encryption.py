"""Parquet encryption cost: write + read N rows plain vs encrypted (masking.encryption).

    python -m benchmarks.parquet_encryption --rows 1000000

The table is shaped like ``library.fact_service_event`` (ids, codes, dates, timestamps,
amounts). Floors, measured in the same run: DuckDB ``COPY ... TO`` (how the library
writes today) and DuckDB ``read_parquet`` of the plain file (how views read today).
Encrypted files are written by PyArrow (AES-GCM, OpenSSL) and read by DuckDB through a
registered ``pyarrow.dataset`` (:func:`masking.encryption.register_encrypted_table`),
because DuckDB 2.0.1 can neither write them securely nor read them reliably itself.
Every timing is the best of ``--repeat`` runs.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from benchmarks.common import console, print_table
from masking.encryption import ROW_GROUP_ROWS, register_encrypted_table, write_encrypted_parquet, zone_key
from rainbow.settings import Lake

MASTER = bytes(range(32))
SCAN = "SELECT count(*), round(sum(amount), 2), max(started_at), count(DISTINCT elder_key) FROM {t}"
FILTER = (
    "SELECT count(*), round(sum(subsidy), 2) FROM {t} "
    "WHERE street = '310110006000' AND service_date >= DATE '2026-06-01'"
)


def _table(con: duckdb.DuckDBPyConnection, rows: int) -> pa.Table:
    return con.sql(
        f"""
        SELECT 'S' || lpad(CAST(i AS VARCHAR), 10, '0') AS service_event_id,
               'E' || lpad(CAST(hash(i) % 400000 AS VARCHAR), 8, '0') AS elder_key,
               ['MEAL_AID', 'LOVE_MILK', 'LTCI_HOME_CARE', 'TIME_BANK'][1 + i % 4] AS programme,
               DATE '2026-01-01' + CAST(i % 365 AS INTEGER) AS service_date,
               TIMESTAMP '2026-01-01 08:00:00' + INTERVAL (i % 31536000) SECOND AS started_at,
               round((hash(i) % 5000) / 100.0, 2) AS amount,
               round((hash(i) % 2000) / 100.0, 2) AS subsidy,
               '3101100' || lpad(CAST(1 + i % 12 AS VARCHAR), 2, '0') || '000' AS street,
               'R' || CAST(i AS VARCHAR) AS record_id
        FROM range({rows}) AS t(i)
        """
    ).to_arrow_table()


def _best(fn: Callable[[], Any], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def _row(label: str, floor: float, value: float) -> list[str]:
    return [label, f"{floor:.3f}", f"{value:.3f}", f"{value / floor:.2f}x"]


def run(rows: int, repeat: int) -> list[list[str]]:
    work = Path(tempfile.mkdtemp(prefix="rb-enc-bench-"))
    try:
        lake = Lake(work / "lake")
        plain = lake.library / "plain" / "data.parquet"
        enc = lake.library / "enc" / "data.parquet"
        plain.parent.mkdir(parents=True)
        con = duckdb.connect()
        table = _table(con, rows)
        con.register("src", table)
        key = zone_key(MASTER, "library")

        def duck_copy() -> None:
            con.execute(f"COPY src TO '{plain}' (FORMAT parquet, COMPRESSION zstd)")

        def arrow_plain() -> None:
            out = work / "arrow_plain.parquet"
            pq.write_table(table, out, compression="zstd", row_group_size=ROW_GROUP_ROWS)

        def arrow_enc() -> None:
            write_encrypted_parquet(table, enc, key)

        w_duck, w_arrow, w_enc = (_best(f, repeat) for f in (duck_copy, arrow_plain, arrow_enc))
        reader = duckdb.connect()
        reader.execute(f"CREATE VIEW plain AS SELECT * FROM read_parquet('{plain}')")
        register_encrypted_table(reader, "enc", lake, "library", "enc", MASTER)
        out: list[list[str]] = []

        def query(sql: str) -> Callable[[], Any]:
            return lambda: reader.sql(sql).fetchall()

        for label, sql in (("full scan", SCAN), ("filtered", FILTER)):
            r_plain = _best(query(sql.format(t="plain")), repeat)
            r_enc = _best(query(sql.format(t="enc")), repeat)
            assert query(sql.format(t="plain"))() == query(sql.format(t="enc"))()
            out.append(_row(f"read, {label} (DuckDB read_parquet | Arrow dataset)", r_plain, r_enc))
        return [
            _row("write (DuckDB COPY | PyArrow encrypted)", w_duck, w_enc),
            _row("write (PyArrow plain | PyArrow encrypted)", w_arrow, w_enc),
            *out,
            _row("file size, MB", plain.stat().st_size / 1e6, enc.stat().st_size / 1e6),
        ]
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    console.print(f"{args.rows:,} rows, best of {args.repeat}")
    print_table(
        "Parquet encryption (seconds)",
        ["step", "plain (floor)", "encrypted", "ratio"],
        run(args.rows, args.repeat),
    )


if __name__ == "__main__":
    main()

"""Readers see the warehouse's views while another process holds the write lock."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import duckdb
import polars as pl
import pytest

from rainbow.settings import Lake
from rainbow.warehouse import connect_warehouse, open_reader, publish_views, views_path


def make_warehouse(lake: Lake) -> None:
    lake.root.mkdir(parents=True, exist_ok=True)
    part = lake.library / "t" / "data.parquet"
    part.parent.mkdir(parents=True)
    pl.DataFrame({"street": ["310110001000", "310110006000"], "n": [3, 4]}).write_parquet(part)
    with connect_warehouse(lake) as con:
        con.execute("CREATE SCHEMA library")
        con.execute(f"CREATE VIEW library.t AS SELECT * FROM read_parquet('{part}')")
        con.execute("CREATE VIEW library.total AS SELECT sum(n) AS n FROM library.t")
        publish_views(con, lake)


def test_a_reader_works_while_another_process_writes(tmp_path: Path) -> None:
    lake = Lake(tmp_path / "lake")
    make_warehouse(lake)
    holder = subprocess.Popen(
        [sys.executable, "-c", f"import duckdb, time; c = duckdb.connect({str(lake.warehouse)!r}); "
         "print('locked', flush=True); time.sleep(30)"],
        stdout=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        with pytest.raises(duckdb.IOException):  # the file itself is locked ...
            connect_warehouse(lake, read_only=True)
        con = open_reader(lake)  # ... the views are not
        assert con.execute("SELECT n FROM library.total").fetchall() == [(7,)]
        # a build replacing the file by rename is seen by the next query
        new = pl.DataFrame({"street": ["310110001000"], "n": [10]})
        tmp = lake.library / "t" / ".data.parquet.tmp"
        new.write_parquet(tmp)
        tmp.replace(lake.library / "t" / "data.parquet")
        assert con.execute("SELECT n FROM library.total").fetchall() == [(10,)]
    finally:
        holder.kill()
        holder.wait()
        if holder.stdout is not None:
            holder.stdout.close()


def test_views_are_published_only_when_they_change(tmp_path: Path) -> None:
    lake = Lake(tmp_path / "lake")
    make_warehouse(lake)
    first = views_path(lake).stat().st_mtime_ns
    time.sleep(0.01)
    with connect_warehouse(lake) as con:
        publish_views(con, lake)
        assert views_path(lake).stat().st_mtime_ns == first
        con.execute("CREATE VIEW library.more AS SELECT 1 AS x")
        publish_views(con, lake)
    assert views_path(lake).stat().st_mtime_ns != first
    assert open_reader(lake).execute("SELECT x FROM library.more").fetchall() == [(1,)]


def test_a_lake_without_views_gives_an_empty_reader(tmp_path: Path) -> None:
    con = open_reader(Lake(tmp_path / "nothing"))
    assert con.execute("SELECT count(*) FROM duckdb_views() WHERE NOT internal").fetchall() == [(0,)]


def test_joins_as_written_builds_on_the_small_side_of_an_arrow_source() -> None:
    """An Arrow-registered source (every encrypted table) is estimated at one row, so DuckDB's
    build-side optimizer builds the hash table on it; under ``joins_as_written`` the semi join
    builds on the small native table, and the setting comes back afterwards."""
    import pyarrow as pa
    import pyarrow.dataset as ds

    from rainbow.warehouse import joins_as_written

    big = pa.table({"k": [f"E{i:06d}" for i in range(50_000)], "v": list(range(50_000))})
    con = duckdb.connect()
    con.register("big", ds.dataset(big))
    con.execute(
        "CREATE TEMP TABLE few AS SELECT 'E' || lpad(i::VARCHAR, 6, '0') AS k FROM range(0, 50_000, 997) t(i)"
    )
    sql = "SELECT count(*), sum(v) FROM big WHERE k IN (SELECT k FROM few)"

    def semi_join() -> str:
        plan = str(con.execute("EXPLAIN " + sql).fetchall()[0][1])
        return next(
            line.split("Join Type:")[1].strip(" │") for line in plan.splitlines() if "Join Type:" in line
        )

    assert semi_join() == "RIGHT_SEMI"  # the hash table on the 50,000-row side
    expected = con.execute(sql).fetchall()
    con.execute("SET disabled_optimizers = 'top_n'")
    with joins_as_written(con):
        assert semi_join() == "SEMI"  # built on the 51 rows of `few`
        assert con.execute(sql).fetchall() == expected
        with joins_as_written(con):  # nested: nothing to change, nothing to restore
            assert semi_join() == "SEMI"
        assert semi_join() == "SEMI"
    assert con.execute("SELECT current_setting('disabled_optimizers')").fetchall()[0][0] == "top_n"
    assert semi_join() == "RIGHT_SEMI"


@pytest.mark.parametrize(("env", "expected"), [(None, {"jemalloc", "system"}), ("mimalloc", {"mimalloc"})])
def test_lake_io_allocates_arrow_memory_from_a_pool_that_returns_it(
    env: str | None, expected: set[str]
) -> None:
    """Importing the lake's Parquet doors switches PyArrow off its default mimalloc pool (which
    kept 1.2 GB of a freed year's links resident), unless the operator chose a pool."""
    import os

    code = (
        "import pyarrow as pa; before = pa.default_memory_pool().backend_name; "
        "import rainbow.parquet as p; print(before, pa.default_memory_pool().backend_name)"
    )
    environ = {k: v for k, v in os.environ.items() if k != "ARROW_DEFAULT_MEMORY_POOL"}
    if env:
        environ["ARROW_DEFAULT_MEMORY_POOL"] = env
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env=environ,
        cwd=Path(__file__).resolve().parents[1],
    ).stdout.split()
    assert out[0] == (env or "mimalloc")  # PyArrow's own choice on this platform
    assert out[1] in expected

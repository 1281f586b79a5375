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

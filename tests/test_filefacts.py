"""Facts cached by file stats (rainbow.filefacts): read once, read again only when the file changes."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import polars as pl
import pytest

from assets.staging.stage import _count_by_file
from rainbow.filefacts import cache_root, cached_facts
from rainbow.io import atomic_path, write_bytes_atomic
from rainbow.parquet import write_frame
from rainbow.settings import Lake


class Counting:
    """``compute`` that counts which files it was asked about."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def __call__(self, path: Path) -> int:
        self.calls.append(path.name)
        return len(path.read_bytes())


def _day_files(lake: Lake, days: int) -> list[Path]:
    files = []
    for d in range(1, days + 1):
        f = lake.staged / "t" / f"date=2026-11-{d:02d}" / f"d{d}.bin"
        write_bytes_atomic(f, b"x" * d)
        files.append(f)
    return files


def test_unchanged_files_are_read_once_and_a_rewritten_file_again(tmp_path: Path) -> None:
    lake = Lake(tmp_path / "lake")
    files = _day_files(lake, 3)
    compute = Counting()
    assert cached_facts(lake, "size", files, compute) == [1, 2, 3]
    assert compute.calls == ["d1.bin", "d2.bin", "d3.bin"]
    assert cached_facts(lake, "size", files, compute) == [1, 2, 3]
    assert len(compute.calls) == 3  # nothing read the second time
    # same size, new content: the atomic rename gives it a new inode and mtime
    write_bytes_atomic(files[1], b"yy")
    d4 = lake.staged / "t" / "date=2026-11-04" / "d4.bin"
    write_bytes_atomic(d4, b"wwww")
    assert cached_facts(lake, "size", [*files, d4], compute) == [1, 2, 3, 4]
    assert compute.calls[3:] == ["d2.bin", "d4.bin"]


def test_the_shard_is_per_table_folder_and_forgets_deleted_files(tmp_path: Path) -> None:
    lake = Lake(tmp_path / "lake")
    files = _day_files(lake, 2)
    cached_facts(lake, "size", files, Counting())
    shard = cache_root(lake) / "size" / "staged__t.json"
    assert sorted(json.loads(shard.read_text())) == [
        "staged/t/date=2026-11-01/d1.bin",
        "staged/t/date=2026-11-02/d2.bin",
    ]
    files[0].unlink()
    extra = lake.staged / "t" / "date=2026-11-03" / "d3.bin"
    write_bytes_atomic(extra, b"zzz")
    cached_facts(lake, "size", [files[1], extra], Counting())
    assert sorted(json.loads(shard.read_text())) == [
        "staged/t/date=2026-11-02/d2.bin",
        "staged/t/date=2026-11-03/d3.bin",
    ]


def test_a_damaged_cache_is_rebuilt_and_outside_files_are_not_cached(tmp_path: Path) -> None:
    lake = Lake(tmp_path / "lake")
    files = _day_files(lake, 2)
    cached_facts(lake, "size", files, Counting())
    shard = cache_root(lake) / "size" / "staged__t.json"
    shard.write_text("{not json")
    compute = Counting()
    assert cached_facts(lake, "size", files, compute) == [1, 2]
    assert len(compute.calls) == 2
    assert json.loads(shard.read_text())  # written again
    outside = tmp_path / "elsewhere.bin"
    outside.write_bytes(b"abcd")
    compute = Counting()
    assert cached_facts(lake, "size", [outside], compute) == [4]
    assert cached_facts(lake, "size", [outside], compute) == [4]
    assert compute.calls == ["elsewhere.bin", "elsewhere.bin"]


def test_links_are_judged_by_where_they_lead(tmp_path: Path) -> None:
    """A file inside the lake that links outside is not cached; the lake's files reached through
    a linked folder (another name for the lake) are the lake's, cached under their lake path."""
    lake = Lake(tmp_path / "lake")
    files = _day_files(lake, 1)
    outside = tmp_path / "elsewhere.bin"
    outside.write_bytes(b"abcd")
    link = lake.staged / "t" / "date=2026-11-02" / "linked.bin"
    link.parent.mkdir(parents=True)
    link.symlink_to(outside)
    compute = Counting()
    assert cached_facts(lake, "size", [link], compute) == [4]
    assert cached_facts(lake, "size", [link], compute) == [4]
    assert compute.calls == ["linked.bin", "linked.bin"]  # outside the lake: every time
    alias = tmp_path / "alias"
    alias.symlink_to(lake.root, target_is_directory=True)
    via_alias = [alias / f.relative_to(lake.root) for f in files]
    compute = Counting()
    assert cached_facts(lake, "size", files, compute) == [1]
    assert cached_facts(lake, "size", via_alias, compute) == [1]
    assert compute.calls == ["d1.bin"]  # the same file under another name: read once


def test_an_error_caches_nothing(tmp_path: Path) -> None:
    lake = Lake(tmp_path / "lake")
    (f,) = _day_files(lake, 1)

    def broken(path: Path) -> int:
        raise ValueError("unreadable footer")

    with pytest.raises(ValueError, match="unreadable footer"):
        cached_facts(lake, "size", [f], broken)
    assert not (cache_root(lake) / "size").exists()


def _part(lake: Lake, day: str, sources: list[str]) -> Path:
    path = lake.staged / "meals" / f"date={day}" / "data.parquet"
    with atomic_path(path) as tmp:
        write_frame(pl.DataFrame({"_source_file": sources, "v": list(range(len(sources)))}), tmp, lake)
    return path


def test_rows_per_source_file_follow_a_rewritten_part_and_a_copied_lake(tmp_path: Path) -> None:
    lake = Lake(tmp_path / "lake")
    _part(lake, "2026-11-01", ["a.csv", "a.csv", "b.csv"])
    _part(lake, "2026-11-02", ["c.csv"])
    folder = lake.staged / "meals"
    assert _count_by_file(folder, lake) == {"a.csv": 2, "b.csv": 1, "c.csv": 1}
    assert (cache_root(lake) / "rows_by_source_file" / "staged__meals.json").exists()
    # a part that loses a row is counted again (the reconciliation check then fails on it)
    _part(lake, "2026-11-01", ["a.csv", "b.csv"])
    assert _count_by_file(folder, lake) == {"a.csv": 1, "b.csv": 1, "c.csv": 1}
    # a copy of the lake with its times (a restored backup) keeps the cache and counts its own
    # changes: a part rewritten in the copy
    copy = Lake(tmp_path / "copy")
    shutil.copytree(lake.root, copy.root)
    _part(copy, "2026-11-02", ["c.csv", "c.csv"])
    assert _count_by_file(copy.staged / "meals", copy) == {"a.csv": 1, "b.csv": 1, "c.csv": 2}
    assert _count_by_file(folder, lake) == {"a.csv": 1, "b.csv": 1, "c.csv": 1}


def test_a_copied_lake_reads_no_unchanged_file_again(tmp_path: Path) -> None:
    lake = Lake(tmp_path / "lake")
    files = _day_files(lake, 2)
    cached_facts(lake, "size", files, Counting())
    copy = Lake(tmp_path / "copy")
    shutil.copytree(lake.root, copy.root)  # copy2: same sizes and modification times
    compute = Counting()
    copied = [copy.root / f.relative_to(lake.root) for f in files]
    assert cached_facts(copy, "size", copied, compute) == [1, 2]
    assert compute.calls == []
    # a file changed in place (same size, later time) is read again
    os.utime(copied[0], ns=(copied[0].stat().st_atime_ns, copied[0].stat().st_mtime_ns + 1_000_000))
    assert cached_facts(copy, "size", copied, compute) == [1, 2]
    assert compute.calls == ["d1.bin"]

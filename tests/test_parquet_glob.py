"""rainbow.parquet.glob_files: the lake's globs listed by a scandir walk give exactly what
``Path.glob`` (then ``is_file``, no dot files) gives, in the same order."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from rainbow.parquet import glob_files


def _pathlib(glob: Path, base: Path) -> list[Path]:
    pattern = str(glob.relative_to(base))
    return sorted(p for p in base.glob(pattern) if p.is_file() and not p.name.startswith("."))


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    base = tmp_path / "staged" / "t"
    files = [
        "data.parquet",
        "date=2026-11-30/data.parquet",
        "date=2026-12-01/data.parquet",
        "date=2026-12-01/part-1.parquet",
        "date=2026-12-01/.tmp-part.parquet",  # a write in progress
        "date=2026-12-01/notes.txt",
        "a-b/c.parquet",  # '-' sorts before '/' as text, after it as path parts
        "a/b.parquet",
        ".hidden/x.parquet",  # a dot folder is walked; only dot files are skipped
        "deep/er/still/y.parquet",
    ]
    for rel in files:
        (base / rel).parent.mkdir(parents=True, exist_ok=True)
        (base / rel).write_bytes(b"PAR1")
    (base / "folder.parquet").mkdir()  # a folder that matches the name pattern
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "z.parquet").write_bytes(b"PAR1")
    os.symlink(outside, base / "linked")  # not followed by **
    os.symlink(outside / "z.parquet", base / "date=2026-11-30" / "linked.parquet")  # a linked file is listed
    return base


@pytest.mark.parametrize("pattern", ["**/*.parquet", "*.parquet", "**/data.parquet", "**/*.txt", "*"])
def test_scandir_walk_matches_pathlib(tree: Path, pattern: str) -> None:
    glob = tree / pattern
    assert glob_files(glob) == _pathlib(glob, tree)


def test_the_walk_lists_what_it_should(tree: Path) -> None:
    got = [str(p.relative_to(tree)) for p in glob_files(tree / "**" / "*.parquet")]
    assert got[:3] == [".hidden/x.parquet", "a/b.parquet", "a-b/c.parquet"]
    assert "date=2026-12-01/.tmp-part.parquet" not in got and "folder.parquet" not in got
    assert "linked/z.parquet" not in got and "date=2026-11-30/linked.parquet" in got
    assert glob_files(tree / "missing" / "**" / "*.parquet") == []


def test_other_patterns_still_glob(tree: Path) -> None:
    glob = tree / "date=*" / "*.parquet"
    assert [p.parent.name for p in glob_files(glob)] == ["date=2026-11-30"] * 2 + ["date=2026-12-01"] * 2


def test_a_listing_scope_lists_once_until_this_process_commits_a_file(tree: Path) -> None:
    from rainbow.io import write_bytes_atomic
    from rainbow.parquet import listing_scope

    glob = tree / "**" / "*.parquet"
    before = glob_files(glob)
    with listing_scope():
        assert glob_files(glob) == before
        (tree / "elsewhere.parquet").write_bytes(b"PAR1")  # written by another process, say
        assert glob_files(glob) == before  # listed once in the scope
        write_bytes_atomic(tree.parent / "other" / "data.parquet", b"PAR1")  # another table's folder
        assert glob_files(glob) == before
        write_bytes_atomic(tree / "date=2026-12-02" / "data.parquet", b"PAR1")  # this process commits
        after = glob_files(glob)
        assert set(after) - set(before) == {
            tree / "elsewhere.parquet",
            tree / "date=2026-12-02" / "data.parquet",
        }
    (tree / "late.parquet").write_bytes(b"PAR1")
    assert tree / "late.parquet" in glob_files(glob)  # outside a scope every call lists afresh

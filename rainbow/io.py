"""Atomic file writes: write to a temporary sibling, then rename.

A crashed writer never leaves a half-written file under the final name, and a
reader always sees either the previous version or the new one.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

_committed: list[str] = []


def commit_count() -> int:
    """How many files this process has renamed into place."""
    return len(_committed)


def commits_since(count: int) -> list[str]:
    """The real paths of the files committed after the first ``count`` (listings of the lake
    cached by :func:`rainbow.parquet.listing_scope` are dropped for the folders they touch)."""
    return _committed[count:]


def replace_file(tmp: Path, final: Path) -> None:
    """``os.replace`` that records the commit."""
    os.replace(tmp, final)
    _committed.append(os.path.realpath(final))


@contextlib.contextmanager
def atomic_path(final: Path) -> Iterator[Path]:
    """Yield a temporary path next to ``final``; rename it over ``final`` on success."""
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        replace_file(tmp, final)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_bytes_atomic(final: Path, data: bytes) -> None:
    with atomic_path(final) as tmp:
        tmp.write_bytes(data)


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()

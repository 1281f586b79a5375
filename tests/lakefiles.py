"""Reading lake files in tests: the restricted zones are encrypted at rest (rainbow.parquet)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import polars as pl
import pytest

from rainbow.parquet import ENCRYPTED_ZONES, glob_files, read_frame
from rainbow.settings import Lake


def lake_of(path: Path) -> Lake | None:
    """The lake a path (or glob) lies in, judged by its restricted-zone folder."""
    for parent in path.parents:
        if parent.name in ENCRYPTED_ZONES:
            return Lake(parent.parent)
    return None


def read_parquet(path: Path | str, *, columns: Sequence[str] | None = None) -> pl.DataFrame:
    """``pl.read_parquet`` for a file or glob anywhere, decrypting files of a restricted zone."""
    path = Path(path)
    files = glob_files(path)
    if not files:
        raise FileNotFoundError(f"no Parquet file matches {path}")
    lake = lake_of(path) or Lake(path.parent)
    return read_frame(files, lake, columns=columns)


def use_key_of(lake: Lake, monkeypatch: pytest.MonkeyPatch) -> None:
    """Read files copied or linked from ``lake`` elsewhere: its encryption key, via the environment."""
    from masking.secrets import ENCRYPTION_KEY, secret_path

    key = secret_path(lake, ENCRYPTION_KEY).read_text(encoding="ascii").strip()
    monkeypatch.setenv(ENCRYPTION_KEY.env, key)


def content_digest(root: Path) -> dict[str, str]:
    """SHA-256 of every file under ``root`` by *content*: a Parquet file's decrypted schema and
    rows (encryption draws fresh nonces, so rewriting the same rows changes the bytes), any
    other file's bytes."""
    import hashlib

    out = {}
    for p in sorted(root.rglob("*")):
        if not p.is_file() or p.name.startswith("."):
            continue
        if p.suffix == ".parquet":
            frame = read_parquet(p)
            h = hashlib.sha256(repr(frame.schema).encode())
            h.update(frame.hash_rows(seed=7).to_numpy().tobytes())
            out[p.relative_to(root).as_posix()] = h.hexdigest()
        else:
            out[p.relative_to(root).as_posix()] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out

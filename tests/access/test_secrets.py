"""masking.secrets: environment first, else a development secret created once (mode 600, warned)."""

from __future__ import annotations

import logging
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from masking import pseudonym as pseudonym_module
from masking.secrets import (
    ENCRYPTION_KEY,
    HASH_KEY,
    PSEUDONYM_KEY,
    SECRETS,
    load_secret,
    parse_secret,
    require_secret,
    secret_path,
)
from rainbow.settings import Lake


def test_when_env_unset_then_dev_secret_created_once_with_mode_600_and_a_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv(HASH_KEY.env, raising=False)
    lake = Lake(tmp_path / "lake")
    with caplog.at_level(logging.WARNING, logger="masking.secrets"):
        first = require_secret(lake, HASH_KEY)
    path = secret_path(lake, HASH_KEY)
    assert path == lake.root / "secrets" / "hash.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert len(first) == 32
    assert any(HASH_KEY.env in r.getMessage() and "development" in r.getMessage() for r in caplog.records)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="masking.secrets"):
        assert require_secret(lake, HASH_KEY) == first  # reused, silently
    assert caplog.records == []
    assert not list(path.parent.glob(".*.tmp"))


def test_when_env_set_then_it_wins_and_nothing_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lake = Lake(tmp_path / "lake")
    monkeypatch.setenv(ENCRYPTION_KEY.env, "ab" * 32)
    assert load_secret(lake, ENCRYPTION_KEY) == bytes([0xAB]) * 32
    monkeypatch.setenv(ENCRYPTION_KEY.env, "a passphrase of at least thirty-two characters")
    assert load_secret(lake, ENCRYPTION_KEY) == b"a passphrase of at least thirty-two characters"
    assert not (lake.root / "secrets").exists()


def test_when_secret_short_or_absent_without_create_then_error_or_none(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lake = Lake(tmp_path / "lake")
    monkeypatch.setenv(HASH_KEY.env, "too short")
    with pytest.raises(ValueError, match="too short"):
        load_secret(lake, HASH_KEY)
    monkeypatch.delenv(ENCRYPTION_KEY.env, raising=False)
    assert load_secret(lake, ENCRYPTION_KEY, create=False) is None
    assert not secret_path(lake, ENCRYPTION_KEY).exists()
    with pytest.raises(ValueError):
        parse_secret("00" * 8, "test")


def test_when_dev_secret_readable_by_others_then_warned(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv(HASH_KEY.env, raising=False)
    lake = Lake(tmp_path / "lake")
    require_secret(lake, HASH_KEY)
    secret_path(lake, HASH_KEY).chmod(0o644)
    with caplog.at_level(logging.WARNING, logger="masking.secrets"):
        require_secret(lake, HASH_KEY)
    assert any("chmod 600" in r.getMessage() for r in caplog.records)


def test_pseudonym_key_is_the_one_masking_pseudonym_uses(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(PSEUDONYM_KEY.env, raising=False)
    lake = Lake(tmp_path / "lake")
    assert PSEUDONYM_KEY.env == pseudonym_module.PSEUDONYM_KEY_ENV
    assert secret_path(lake, PSEUDONYM_KEY) == pseudonym_module.dev_key_path(lake)
    assert require_secret(lake, PSEUDONYM_KEY) == pseudonym_module.load_pseudonym_key(lake)
    assert len({s.env for s in SECRETS}) == len(SECRETS) == len({s.file for s in SECRETS})


def test_no_secret_file_is_tracked_by_git() -> None:
    root = Path(__file__).resolve().parents[2]
    ignore = (root / ".gitignore").read_text(encoding="utf-8").split()
    assert "data/" in ignore  # the default lake (and its secrets/) is never committed
    if shutil.which("git") is None or not (root / ".git").exists():
        pytest.skip("not a git work tree")
    tracked = subprocess.run(
        ["git", "ls-files", "--", "*.key", "*/secrets/*"],
        cwd=root,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert tracked == []

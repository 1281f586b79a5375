"""masking.pseudonym: stable, keyed, purpose-bound; one value, a Series and a DuckDB function agree."""

from __future__ import annotations

import hashlib
import logging
import stat
from pathlib import Path

import duckdb
import polars as pl
import pytest

from masking.pseudonym import (
    PSEUDONYM_ALPHABET,
    PSEUDONYM_KEY_ENV,
    dev_key_path,
    load_pseudonym_key,
    pseudonym,
    pseudonymise,
    register_pseudonym_function,
)
from rainbow.settings import Lake

KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))


def test_when_same_key_and_elder_then_same_pseudonym() -> None:
    p = pseudonym("E00000001", KEY)
    assert p == pseudonym("E00000001", KEY)
    assert len(p) == 20 and all(c in PSEUDONYM_ALPHABET for c in p)  # no digit: never phone-like
    # golden, from `printf 'marts\x1fE00000001' | openssl dgst -sha256 -mac HMAC -macopt hexkey:0001..1f`
    # = 8c266d950f1ec92c6352..., spelt in the consonant alphabet
    assert p == "mrdjjsnhbvctrndrjfhd"


def test_when_key_or_purpose_differs_then_pseudonym_differs() -> None:
    p = pseudonym("E00000001", KEY)
    assert pseudonym("E00000001", OTHER_KEY) != p
    assert pseudonym("E00000001", KEY, purpose="export") != p
    assert pseudonym("E00000002", KEY) != p
    # not a plain (unkeyed) hash of the key a guesser could recompute
    plain = hashlib.sha256(b"E00000001").hexdigest()
    assert p not in plain.translate(str.maketrans("0123456789abcdef", PSEUDONYM_ALPHABET))


def test_when_key_too_short_or_purpose_odd_then_rejected() -> None:
    with pytest.raises(ValueError, match="at least 32 bytes"):
        pseudonym("E1", b"short")
    with pytest.raises(ValueError, match="purpose"):
        pseudonym("E1", KEY, purpose="Marts Export")


def test_series_and_duckdb_function_agree_with_scalar() -> None:
    keys = pl.Series("elder_key", ["E00000001", None, "E00000042"])
    out = pseudonymise(keys, KEY)
    assert out.to_list() == [pseudonym("E00000001", KEY), None, pseudonym("E00000042", KEY)]
    con = duckdb.connect()
    register_pseudonym_function(con, KEY)
    register_pseudonym_function(con, KEY)  # re-registering replaces it
    rows = con.sql("SELECT pseudonym(k) FROM (VALUES ('E00000001'), (NULL), ('E00000042')) t(k)").fetchall()
    assert [r[0] for r in rows] == out.to_list()


def test_key_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lake = Lake(tmp_path / "lake")
    monkeypatch.setenv(PSEUDONYM_KEY_ENV, KEY.hex())
    assert load_pseudonym_key(lake) == KEY
    assert not dev_key_path(lake).exists()
    monkeypatch.setenv(PSEUDONYM_KEY_ENV, "x" * 40)
    assert load_pseudonym_key(lake) == b"x" * 40
    monkeypatch.setenv(PSEUDONYM_KEY_ENV, "too-short")
    with pytest.raises(ValueError, match="too short"):
        load_pseudonym_key(lake)


def test_without_environment_a_dev_key_is_created_once_with_a_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    lake = Lake(tmp_path / "lake")
    monkeypatch.delenv(PSEUDONYM_KEY_ENV, raising=False)
    with caplog.at_level(logging.WARNING, logger="masking.pseudonym"):
        first = load_pseudonym_key(lake)
    assert any(PSEUDONYM_KEY_ENV in r.getMessage() for r in caplog.records)
    path = dev_key_path(lake)
    assert path.is_relative_to(lake.root / "secrets")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="masking.pseudonym"):
        assert load_pseudonym_key(lake) == first  # reused, stable pseudonyms across runs
    assert not caplog.records
    assert len(first) == 32

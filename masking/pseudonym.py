"""Pseudonymous elder keys: the one place pseudonyms are made.

A pseudonym is a keyed HMAC-SHA256 of the library's ``elder_key`` (``E00000001``...)
under a secret key and a *purpose*: the same elder gets the same pseudonym in every
build of the same purpose, a different one under another purpose (marts vs an export
package), and nobody without the key can recompute or reverse it (the elder keys are
a short, guessable sequence, so a plain hash would not do).

The key comes from ``$RAINBOW_PSEUDONYM_KEY`` (64 hex characters = 32 bytes, or any
string of at least 32 characters, taken as UTF-8). Without it, a development key is
created once under ``<lake>/secrets/pseudonym.key`` (mode 600) with a logged warning
and reused afterwards, so development builds stay stable; production sets the
variable (rotating it changes every pseudonym).

Use :func:`pseudonym` for one value, :func:`pseudonymise` for a Polars Series and
:func:`register_pseudonym_function` for a vectorised DuckDB function
(``SELECT pseudonym(elder_key) FROM ...``).
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import logging
import os
import re
import secrets
from collections.abc import Iterable
from pathlib import Path

import duckdb
import duckdb.func
import polars as pl
import pyarrow as pa

from rainbow.io import write_bytes_atomic
from rainbow.settings import Lake

log = logging.getLogger(__name__)

PSEUDONYM_KEY_ENV = "RAINBOW_PSEUDONYM_KEY"
DEV_KEY_FILE = ("secrets", "pseudonym.key")
# 20 hex characters = 80 bits: collisions are negligible at city scale (~6M elders).
PSEUDONYM_HEX_CHARS = 20
MIN_KEY_BYTES = 32
_HEX_KEY = re.compile(r"^[0-9a-fA-F]{64,}$")
_PURPOSE = re.compile(r"^[a-z][a-z0-9_.-]*$")


def _parse_key(text: str, where: str) -> bytes:
    text = text.strip()
    key = bytes.fromhex(text) if _HEX_KEY.match(text) else text.encode("utf-8")
    if len(key) < MIN_KEY_BYTES:
        raise ValueError(f"the pseudonym key from {where} is too short (need {MIN_KEY_BYTES} bytes)")
    return key


def dev_key_path(lake: Lake) -> Path:
    return lake.root.joinpath(*DEV_KEY_FILE)


def load_pseudonym_key(lake: Lake) -> bytes:
    """The secret key: ``$RAINBOW_PSEUDONYM_KEY``, else the lake's development key (created once)."""
    env = os.environ.get(PSEUDONYM_KEY_ENV)
    if env:
        return _parse_key(env, f"${PSEUDONYM_KEY_ENV}")
    path = dev_key_path(lake)
    if path.exists():
        return _parse_key(path.read_text(encoding="ascii"), str(path))
    log.warning(
        "%s is not set: created a development pseudonym key at %s. Set %s in production "
        "(pseudonyms change when the key changes).",
        PSEUDONYM_KEY_ENV,
        path,
        PSEUDONYM_KEY_ENV,
    )
    write_bytes_atomic(path, (secrets.token_hex(MIN_KEY_BYTES) + "\n").encode("ascii"))
    path.chmod(0o600)
    return _parse_key(path.read_text(encoding="ascii"), str(path))


def _check(key: bytes, purpose: str) -> None:
    if len(key) < MIN_KEY_BYTES:
        raise ValueError(f"pseudonym key must be at least {MIN_KEY_BYTES} bytes")
    if not _PURPOSE.match(purpose):
        raise ValueError(f"purpose must be a lower-case word, not {purpose!r}")


# The HMAC's hex digits spelt in 16 consonants: a pseudonym holds no digit, so it never looks like a
# phone or resident ID number to a scanner (the recognizers, the export leak gate, redaction).
PSEUDONYM_ALPHABET = "bcdfghjkmnpqrstv"
_LETTERS = str.maketrans("0123456789abcdef", PSEUDONYM_ALPHABET)


def _mac(elder_key: str, key: bytes, purpose: str) -> str:
    msg = f"{purpose}\x1f{elder_key}".encode()
    return hmac.new(key, msg, hashlib.sha256).hexdigest()[:PSEUDONYM_HEX_CHARS].translate(_LETTERS)


def pseudonym(elder_key: str, key: bytes, purpose: str = "marts") -> str:
    """The pseudonym of one elder key (20 lower-case letters: the first 80 bits of the HMAC)."""
    _check(key, purpose)
    return _mac(elder_key, key, purpose)


def pseudonyms(elder_keys: Iterable[str | None], key: bytes, purpose: str = "marts") -> list[str | None]:
    """Pseudonyms of many keys; None stays None."""
    _check(key, purpose)
    return [None if k is None else _mac(k, key, purpose) for k in elder_keys]


def pseudonymise(elder_keys: pl.Series, key: bytes, purpose: str = "marts") -> pl.Series:
    """A Polars Series of pseudonyms (same name and length; nulls stay null)."""
    return pl.Series(elder_keys.name, pseudonyms(elder_keys.to_list(), key, purpose), dtype=pl.String)


def register_pseudonym_function(
    con: duckdb.DuckDBPyConnection, key: bytes, purpose: str = "marts", name: str = "pseudonym"
) -> None:
    """Register ``name(VARCHAR) -> VARCHAR`` on the connection (vectorised over Arrow batches).

    The key lives only in this process's closure; nothing is written to the database.
    """
    _check(key, purpose)

    def fn(values: pa.Array) -> pa.Array:
        return pa.array(pseudonyms(values.to_pylist(), key, purpose), pa.string())

    with contextlib.suppress(duckdb.InvalidInputException):  # not registered yet
        con.remove_function(name)
    con.create_function(
        name,
        fn,
        ["VARCHAR"],
        "VARCHAR",
        type=duckdb.func.ARROW,
        null_handling=duckdb.func.SPECIAL,
        side_effects=False,
    )

"""Secrets of the platform (hash keys, the pseudonym key, the Parquet encryption master key).

Every secret comes from an environment variable. Without it, a *development* value
is created once under ``<lake>/secrets/<file>`` (directory mode 700, file mode 600)
with a logged warning (a log record, not a Python warning: the test suite turns
warnings into errors), and reused afterwards so development builds stay stable.
Nothing secret is ever written into the repository (the lake root ``./data`` is
git-ignored) or into the DuckDB warehouse: connections bind secrets in memory.

A value is 64+ hex characters (taken as bytes) or any string of at least 32
characters (taken as UTF-8), the same rule :mod:`masking.pseudonym` applies to its key
(:data:`PSEUDONYM_KEY` below describes that key, so both load it alike).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import secrets as _random
import stat
from dataclasses import dataclass
from pathlib import Path

from rainbow.settings import Lake

log = logging.getLogger(__name__)

SECRETS_DIR = "secrets"
MIN_SECRET_BYTES = 32
_HEX = re.compile(r"^[0-9a-fA-F]{64,}$")


@dataclass(frozen=True)
class SecretSpec:
    """One secret: where it comes from and what it is for."""

    name: str
    env: str
    file: str
    purpose: str


HASH_KEY = SecretSpec(
    "hash_key",
    "RAINBOW_HASH_KEY",
    "hash.key",
    "keyed hashes (HMAC-SHA256) of identifiers in the role views",
)
PSEUDONYM_KEY = SecretSpec(
    "pseudonym_key",
    "RAINBOW_PSEUDONYM_KEY",
    "pseudonym.key",
    "pseudonymous elder keys of the marts (masking.pseudonym)",
)
ENCRYPTION_KEY = SecretSpec(
    "encryption_key",
    "RAINBOW_ENCRYPTION_KEY",
    "encryption.key",
    "master key of the Parquet encryption of the restricted zones (masking.encryption)",
)
SECRETS = (HASH_KEY, PSEUDONYM_KEY, ENCRYPTION_KEY)


def parse_secret(text: str, where: str) -> bytes:
    """Hex (64+ characters) -> bytes, anything else -> UTF-8; at least 32 bytes."""
    text = text.strip()
    value = bytes.fromhex(text) if _HEX.match(text) else text.encode("utf-8")
    if len(value) < MIN_SECRET_BYTES:
        raise ValueError(f"the secret from {where} is too short (need {MIN_SECRET_BYTES} bytes)")
    return value


def secret_path(lake: Lake, spec: SecretSpec) -> Path:
    return lake.root / SECRETS_DIR / spec.file


def _create_dev_secret(path: Path) -> None:
    """Write a random secret with mode 600 from the start; the first writer wins a race."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(OSError):  # e.g. a directory owned by someone else
        path.parent.chmod(0o700)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{_random.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="ascii") as f:
            f.write(_random.token_hex(MIN_SECRET_BYTES) + "\n")
            f.flush()
            os.fsync(f.fileno())
        with contextlib.suppress(FileExistsError):  # another process created it first: keep theirs
            os.link(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def load_secret(lake: Lake, spec: SecretSpec, *, create: bool = True) -> bytes | None:
    """``$<spec.env>``, else the lake's development secret (created once when ``create``).

    Returns None only when ``create`` is false and neither exists.
    """
    env = os.environ.get(spec.env)
    if env:
        return parse_secret(env, f"${spec.env}")
    path = secret_path(lake, spec)
    if not path.exists():
        if not create:
            return None
        _create_dev_secret(path)
        log.warning(
            "%s is not set: created a development %s at %s (for %s). Set %s in production; "
            "never commit the file.",
            spec.env,
            spec.name,
            path,
            spec.purpose,
            spec.env,
        )
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        log.warning("development secret %s is readable by others (mode %o): chmod 600 it", path, mode)
    return parse_secret(path.read_text(encoding="ascii"), str(path))


def require_secret(lake: Lake, spec: SecretSpec) -> bytes:
    """Like :func:`load_secret` with ``create=True``: always a value."""
    value = load_secret(lake, spec, create=True)
    if value is None:  # pragma: no cover - load_secret creates it
        raise RuntimeError(f"no {spec.name}")
    return value

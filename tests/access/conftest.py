"""Fixtures of the access tests: the hand-made lake (access_fixtures.py) and test keys."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from masking.secrets import ENCRYPTION_KEY, HASH_KEY, PSEUDONYM_KEY
from tests.access.access_fixtures import HASH, PSEUDO, AccessLake, build_lake


@pytest.fixture(scope="session")
def access_lake(tmp_path_factory: pytest.TempPathFactory) -> AccessLake:
    return build_lake(tmp_path_factory.mktemp("access") / "lake")


@pytest.fixture(autouse=True)
def _keys(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv(HASH_KEY.env, HASH.hex())
    monkeypatch.setenv(PSEUDONYM_KEY.env, PSEUDO.hex())
    monkeypatch.delenv(ENCRYPTION_KEY.env, raising=False)
    yield

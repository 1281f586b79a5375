"""Fixtures of the masking tests: what the analyzer finds in a text, as substrings."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from masking.scrub import find_pii

SpansOf = Callable[[str, str], list[str]]


@pytest.fixture(scope="session")
def spans_of() -> SpansOf:
    """``spans_of(text, entity)``: the substrings of ``text`` found as ``entity`` (after
    thresholds, context and overlap resolution: what scrubbing would replace)."""

    def spans(text: str, entity: str) -> list[str]:
        return [text[start:end] for found, start, end in find_pii(text) if found == entity]

    return spans

"""CN_SENIOR_CARD: our sources' JL + 10 digits; other forms right after the card's name."""

from __future__ import annotations

from collections.abc import Callable

import pytest

ENTITY = "CN_SENIOR_CARD"


@pytest.mark.parametrize(
    ("text", "expected_count", "expected_spans"),
    [
        ("JL3100104729", 1, ["JL3100104729"]),
        ("老人敬老卡JL3100104729在助餐点消费", 1, ["JL3100104729"]),
        ("卡号jl3100104729", 1, ["jl3100104729"]),
        ("卡号ＪＬ３１００１０４７２９", 1, ["ＪＬ３１００１０４７２９"]),
        ("敬老卡号：SH20190001234，已补办", 1, ["SH20190001234"]),
        ("老年综合津贴卡 88012345678", 1, ["88012345678"]),
        ("JL3100104729、JL3100209451", 2, ["JL3100104729", "JL3100209451"]),
    ],
)
def test_when_senior_card_numbers_then_all_found(
    spans_of: Callable[[str, str], list[str]], text: str, expected_count: int, expected_spans: list[str]
) -> None:
    found = spans_of(text, ENTITY)
    assert len(found) == expected_count
    assert found == expected_spans


@pytest.mark.parametrize(
    "text",
    [
        "JL310010472",  # 9 digits
        "JL31001047291",  # 11 digits
        "AJL3100104729",  # inside a longer code
        "敬老卡已办理",  # the card mentioned, no number
        "编号SH20190001234",  # another code without the card's name
    ],
)
def test_when_not_the_card_format_then_not_found(
    spans_of: Callable[[str, str], list[str]], text: str
) -> None:
    assert spans_of(text, ENTITY) == []

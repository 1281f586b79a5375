"""Senior card numbers (敬老卡 / 老年综合津贴卡).

The format issued is not public; our sources (the meal-aid system, sample_data) write
``JL`` + 10 digits (``JL31`` + 8 digits). Other forms are caught only right after the
card's name (``敬老卡号：...``).
"""

from __future__ import annotations

from typing import ClassVar

from presidio_analyzer import Pattern

from masking.recognizers._common import NOT_DIGIT_AFTER, ChinesePatternRecognizer, D, alternation

CARD_WORDS = ("敬老卡", "老年卡", "老人卡", "老年综合津贴卡", "津贴卡")
CARD_SUFFIX = "(?:号码|卡号|号)?[：: ]?"


class SeniorCardRecognizer(ChinesePatternRecognizer):
    ENTITY = "CN_SENIOR_CARD"
    PLACEHOLDER = "<敬老卡号>"
    PATTERNS: ClassVar[list[Pattern]] = [
        Pattern("senior_card_jl", f"(?<![A-Za-z0-9０-９])[JjＪｊ][LlＬｌ]{D}{{10}}{NOT_DIGIT_AFTER}", 0.7),
        Pattern(
            "senior_card_after_name",
            f"(?<=[卡号码：: ])(?<={alternation(CARD_WORDS)}{CARD_SUFFIX})[A-Za-z0-9０-９]{{6,20}}"
            "(?![A-Za-z0-9０-９])",
            0.6,
        ),
    ]
    CONTEXT: ClassVar[list[str]] = [*CARD_WORDS, "卡号", "刷卡"]
    CANDIDATE = f"[JjＪｊ][LlＬｌ]{D}{{10}}|{alternation(CARD_WORDS)}{CARD_SUFFIX}[A-Za-z0-9０-９]"

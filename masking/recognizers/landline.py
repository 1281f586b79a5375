"""Shanghai landline numbers: area code 021 and 8 digits starting 2-9.

With the area code (``021-65431234``, ``(021)6543 1234``, ``+86 21 65431234``) the
number is reported on its own; a bare 8-digit number only next to a context word
(电话, 座机, ...) and never when it reads as a date (``20261101``).
"""

from __future__ import annotations

from datetime import date
from typing import ClassVar

from presidio_analyzer import Pattern

from masking.recognizers._common import (
    NOT_DIGIT_AFTER,
    NOT_DIGIT_BEFORE,
    SEP,
    ChinesePatternRecognizer,
    D,
    digits_only,
    lit,
)

# 021, (021), +86 21, 0086-(0)21 ...: a parenthesis only with its partner.
AREA = (
    f"(?:(?:(?:[+＋]|{lit('00')})?{lit('86')}{SEP}?)?(?:[(（][0０]?{lit('21')}[)）]|[0０]{lit('21')})"
    f"|(?:[+＋]|{lit('00')})?{lit('86')}{SEP}?{lit('21')})"
)
LOCAL = f"[2-9２-９]{D}{{3}}{SEP}?{D}{{4}}"


def _is_date(digits: str) -> bool:
    try:
        date(int(digits[:4]), int(digits[4:6]), int(digits[6:8]))
    except ValueError:
        return False
    return 1900 <= int(digits[:4]) <= 2099


class LandlineRecognizer(ChinesePatternRecognizer):
    ENTITY = "CN_LANDLINE_PHONE"
    PLACEHOLDER = "<固定电话>"
    PATTERNS: ClassVar[list[Pattern]] = [
        Pattern("landline_021", f"{NOT_DIGIT_BEFORE}{AREA}{SEP}?{LOCAL}{NOT_DIGIT_AFTER}", 0.7),
        # Not inside a longer number typed with separators (the tail of a mobile or a card).
        Pattern("landline_local", f"(?<!{D}{SEP}?){LOCAL}(?!{SEP}?{D})", 0.3),
    ]
    CONTEXT: ClassVar[list[str]] = ["电话", "座机", "固话", "宅电", "号码", "来电", "致电", "联系"]
    CANDIDATE = LOCAL

    def invalidate_result(self, pattern_text: str) -> bool:
        digits = digits_only(pattern_text)
        return len(digits) == 8 and _is_date(digits)

"""Chinese resident identity card numbers (居民身份证号码, GB 11643).

18 digits (the last may be X: area 6 + birth date 8 + sequence 3 + check), optionally
typed in 6-8-4 groups; and the pre-1999 15-digit form (area 6 + YYMMDD + sequence 3),
which is upgraded to 18 digits (century 19 + check digit) before validation.
Validation is python-stdnum's full check through :mod:`rainbow.ids` (checksum, birth
date, area code existing in the year of birth): a number failing it is not reported.
"""

from __future__ import annotations

import functools
from typing import ClassVar

from presidio_analyzer import Pattern

from masking.recognizers._common import (
    NOT_DIGIT_AFTER,
    NOT_DIGIT_BEFORE,
    SEP,
    ChinesePatternRecognizer,
    D,
    digits_only,
)
from rainbow.ids import check_digit, is_valid_id

_CHECK = "[0-9０-９XxＸｘ]"


@functools.lru_cache(maxsize=65_536)
def is_resident_id(number: str) -> bool:
    """Is ``number`` (any typed form) a valid 18- or 15-digit resident ID?"""
    s = digits_only(number)
    if len(s) == 15 and s.isdigit():
        body = s[:6] + "19" + s[6:]
        s = body + check_digit(body)
    return len(s) == 18 and is_valid_id(s)


class ResidentIdRecognizer(ChinesePatternRecognizer):
    ENTITY = "CN_RESIDENT_ID"
    PLACEHOLDER = "<身份证号>"
    # Validation decides (1.0 or dropped), so one pattern for both forms: 18 digits
    # (optionally 6-8-4 groups) or 15.
    PATTERNS: ClassVar[list[Pattern]] = [
        Pattern(
            "resident_id",
            f"{NOT_DIGIT_BEFORE}[1-9１-９]{D}{{5}}"
            f"(?:{SEP}?{D}{{8}}{SEP}?{D}{{3}}{_CHECK}|{D}{{9}}){NOT_DIGIT_AFTER}",
            0.5,
        ),
    ]
    CONTEXT: ClassVar[list[str]] = ["身份证", "身份证号", "证件号", "公民身份号码", "身份", "证号", "身份号"]
    CANDIDATE = f"[1-9１-９]{D}{{5}}{SEP}?{D}{{8}}"

    def validate_result(self, pattern_text: str) -> bool:
        return is_resident_id(pattern_text)

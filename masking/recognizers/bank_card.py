"""Bank card numbers: 16-19 digits passing the Luhn check, contiguous or in groups of four.

Luhn passes for one random number in ten, so a valid checksum keeps the pattern's score
rather than raising it to 1 (as presidio's credit-card recognizer does): UnionPay-style
numbers (first digit 3-6, 62xx most of all) are reported on their own, other 16-19 digit
numbers only next to a context word (银行卡, 卡号, 账号, ...). A number that is a valid
resident ID is an ID, not a card.
"""

from __future__ import annotations

from typing import ClassVar

from presidio_analyzer import Pattern
from stdnum import luhn

from masking.recognizers._common import (
    NOT_DIGIT_AFTER,
    NOT_DIGIT_BEFORE,
    SEP,
    ChinesePatternRecognizer,
    D,
    digits_only,
)
from masking.recognizers.resident_id import is_resident_id


def _card_pattern(first: str, score: float, name: str) -> Pattern:
    plain = f"{NOT_DIGIT_BEFORE}{first}{D}{{15,18}}{NOT_DIGIT_AFTER}"
    grouped = f"(?<!{D}{SEP}?){first}{D}{{3}}(?:{SEP}{D}{{4}}){{3}}(?:{SEP}?{D}{{1,3}})?(?!{SEP}?{D})"
    return Pattern(name, f"(?:{plain}|{grouped})", score)


class BankCardRecognizer(ChinesePatternRecognizer):
    ENTITY = "CN_BANK_CARD"
    PLACEHOLDER = "<银行卡号>"
    PATTERNS: ClassVar[list[Pattern]] = [
        _card_pattern("[3-6３-６]", 0.6, "card_unionpay"),
        _card_pattern("[1-27-9１-２７-９]", 0.2, "card_other"),
    ]
    CONTEXT: ClassVar[list[str]] = [
        "银行卡", "卡号", "账号", "帐号", "银行", "储蓄卡", "借记卡", "信用卡", "工资卡", "社保卡",
        "存折", "转账",
    ]  # fmt: skip
    CANDIDATE = f"[1-9１-９]{D}{{3}}{SEP}?{D}{{4}}{SEP}?{D}{{4}}{SEP}?{D}{{4}}"

    def validate_result(self, pattern_text: str) -> bool | None:
        digits = digits_only(pattern_text)
        if not (16 <= len(digits) <= 19 and digits.isdigit()) or not luhn.is_valid(digits):
            return False
        if is_resident_id(digits):
            return False
        return None  # checksum passes: keep the pattern's score (context decides for weak ones)

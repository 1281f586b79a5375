"""Mainland China mobile numbers: 11 digits starting 1[3-9].

Typed as ``13812345678``, ``138 1234 5678``, ``138-1234-5678``, with ``+86`` / ``0086`` /
``86`` in front, or in full-width digits (``１３８１２３４５６７８``). Another first two
digits (``12...``) or a twelfth digit is not a mobile number.
"""

from __future__ import annotations

from typing import ClassVar

from presidio_analyzer import Pattern

from masking.recognizers._common import (
    NOT_DIGIT_AFTER,
    NOT_DIGIT_BEFORE,
    SEP,
    ChinesePatternRecognizer,
    D,
    lit,
)

COUNTRY = f"(?:(?:[+＋]|{lit('00')})?{lit('86')}{SEP}?)"
MOBILE = f"[1１][3-9３-９]{D}(?:{SEP}?{D}{{4}}){{2}}"


class MobilePhoneRecognizer(ChinesePatternRecognizer):
    ENTITY = "CN_MOBILE_PHONE"
    PLACEHOLDER = "<手机号>"
    PATTERNS: ClassVar[list[Pattern]] = [
        Pattern("mobile", f"{NOT_DIGIT_BEFORE}{COUNTRY}?{MOBILE}{NOT_DIGIT_AFTER}", 0.7),
    ]
    CONTEXT: ClassVar[list[str]] = ["手机", "手机号", "电话", "号码", "联系", "来电", "致电", "微信", "短信"]
    CANDIDATE = f"[1１][3-9３-９]{D}{SEP}?{D}{{4}}"

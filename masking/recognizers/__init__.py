"""Presidio recognizers for Chinese PII in Shanghai elder-care data, one module each (language ``zh``)."""

from __future__ import annotations

from masking.recognizers._common import LANGUAGE, ChinesePatternRecognizer
from masking.recognizers.address import AddressRecognizer
from masking.recognizers.bank_card import BankCardRecognizer
from masking.recognizers.landline import LandlineRecognizer
from masking.recognizers.mobile_phone import MobilePhoneRecognizer
from masking.recognizers.person_name import PersonNameRecognizer
from masking.recognizers.resident_id import ResidentIdRecognizer
from masking.recognizers.senior_card import SeniorCardRecognizer

RECOGNIZERS: tuple[type[ChinesePatternRecognizer], ...] = (
    ResidentIdRecognizer,
    MobilePhoneRecognizer,
    LandlineRecognizer,
    BankCardRecognizer,
    PersonNameRecognizer,
    AddressRecognizer,
    SeniorCardRecognizer,
)
PLACEHOLDERS: dict[str, str] = {r.ENTITY: r.PLACEHOLDER for r in RECOGNIZERS}

__all__ = [
    "LANGUAGE",
    "PLACEHOLDERS",
    "RECOGNIZERS",
    "AddressRecognizer",
    "BankCardRecognizer",
    "ChinesePatternRecognizer",
    "LandlineRecognizer",
    "MobilePhoneRecognizer",
    "PersonNameRecognizer",
    "ResidentIdRecognizer",
    "SeniorCardRecognizer",
]

"""CN_BANK_CARD: 16-19 digits passing Luhn; a valid resident ID is never a card."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from stdnum import luhn

from masking.recognizers import BankCardRecognizer

ENTITY = "CN_BANK_CARD"
UNIONPAY_16 = "6222314159265358"
UNIONPAY_19 = "6217314159265358977"
VISA_16 = "4367314159265358"
OTHER_16 = "8888314159265359"  # Luhn-valid, no card-issuer prefix
ID_PASSING_LUHN = "310110195609090004"  # a valid resident ID whose digits also pass Luhn


def test_when_fixtures_built_then_they_are_what_they_claim() -> None:
    for number in (UNIONPAY_16, UNIONPAY_19, VISA_16, OTHER_16, ID_PASSING_LUHN):
        assert luhn.is_valid(number)


@pytest.mark.parametrize(
    ("text", "expected_count", "expected_spans"),
    [
        (f"工资卡{UNIONPAY_16}", 1, [UNIONPAY_16]),
        (f"退款至{UNIONPAY_19}。", 1, [UNIONPAY_19]),
        (f"卡号 {VISA_16}", 1, [VISA_16]),
        ("银行卡6222 3141 5926 5358", 1, ["6222 3141 5926 5358"]),
        ("卡号6217-3141-5926-5358-977", 1, ["6217-3141-5926-5358-977"]),
        (f"银行卡号：{OTHER_16}", 1, [OTHER_16]),  # no issuer prefix: found next to a context word
    ],
)
def test_when_luhn_valid_card_numbers_then_all_found(
    spans_of: Callable[[str, str], list[str]], text: str, expected_count: int, expected_spans: list[str]
) -> None:
    found = spans_of(text, ENTITY)
    assert len(found) == expected_count
    assert found == expected_spans


@pytest.mark.parametrize(
    "text",
    [
        "银行卡6222314159265359",  # Luhn fails
        "银行卡6217314159265358978",  # Luhn fails
        f"订单{OTHER_16}已完成",  # no issuer prefix, no context word
        "银行卡622231415926535",  # 15 digits
        "银行卡62173141592653589770",  # 20 digits
        "电话13812345678 13912345678",  # two phones are not one card
    ],
)
def test_when_luhn_fails_or_not_a_card_then_not_found(
    spans_of: Callable[[str, str], list[str]], text: str
) -> None:
    assert spans_of(text, ENTITY) == []


def test_when_number_is_a_valid_resident_id_then_not_a_bank_card(
    spans_of: Callable[[str, str], list[str]],
) -> None:
    text = f"银行卡号{ID_PASSING_LUHN}"
    assert spans_of(text, ENTITY) == []
    assert spans_of(text, "CN_RESIDENT_ID") == [ID_PASSING_LUHN]
    assert BankCardRecognizer().validate_result(ID_PASSING_LUHN) is False


def test_when_luhn_passes_then_score_is_the_patterns_not_raised() -> None:
    # Luhn passes for a tenth of random numbers: validation keeps the pattern's score.
    assert BankCardRecognizer().validate_result(UNIONPAY_16) is None
    assert BankCardRecognizer().validate_result("6222314159265359") is False

"""CN_RESIDENT_ID: 18 and 15 digits, python-stdnum's full check (checksum, birth date, area)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from masking.recognizers import ResidentIdRecognizer
from masking.recognizers.resident_id import is_resident_id

ENTITY = "CN_RESIDENT_ID"
VALID = "310110195001011232"
VALID_X = "31011019480315007X"
VALID_15 = "310104420718456"  # 310104194207184567 before 1999
FULL_WIDTH = VALID.translate({ord(c): ord(c) + 0xFEE0 for c in "0123456789"})


@pytest.mark.parametrize(
    ("text", "expected_count", "expected_spans"),
    [
        (f"{VALID}", 1, [VALID]),
        (f"王秀英（身份证{VALID}）血压偏高", 1, [VALID]),
        (f"身份证号：{VALID_X}，信息一致", 1, [VALID_X]),
        (f"身份证号：{VALID_X.lower()}，信息一致", 1, [VALID_X.lower()]),
        (f"老证件{VALID_15}已换新", 1, [VALID_15]),
        (f"核对身份：{FULL_WIDTH}。", 1, [FULL_WIDTH]),
        ("身份证 310110 19500101 1232 已复印", 1, ["310110 19500101 1232"]),
        (f"{VALID}，{VALID_X}", 2, [VALID, VALID_X]),
    ],
)
def test_when_valid_ids_in_text_then_all_found(
    spans_of: Callable[[str, str], list[str]], text: str, expected_count: int, expected_spans: list[str]
) -> None:
    found = spans_of(text, ENTITY)
    assert len(found) == expected_count
    assert found == expected_spans


@pytest.mark.parametrize(
    "text",
    [
        "身份证310110195001011233",  # check digit off by one
        "身份证31011019480315007Y",  # not a check character
        "身份证999999195001011230",  # area code that never existed
        "身份证310110195013011236",  # month 13
        "老证件310104421318456",  # 15 digits, month 13
        "编号3101101950010112321",  # 19 digits: not an ID inside a longer number
        "编号23101101950010112",  # the ID's digits shifted inside a longer number
        "身份证31011019500101123",  # 17 digits
    ],
)
def test_when_checksum_or_date_or_area_invalid_then_not_found(
    spans_of: Callable[[str, str], list[str]], text: str
) -> None:
    assert spans_of(text, ENTITY) == []


def test_when_id_between_chinese_characters_then_digits_delimit_it(
    spans_of: Callable[[str, str], list[str]],
) -> None:
    # No \b: Chinese characters are \w, so a word boundary would never be found here.
    assert spans_of(f"证{VALID}号", ENTITY) == [VALID]


@pytest.mark.parametrize(
    ("number", "expected"),
    [(VALID, True), (VALID_X, True), (VALID_X.lower(), True), (VALID_15, True), (FULL_WIDTH, True),
     ("310110195001011233", False), ("999999195001011230", False), ("12345", False)],
)  # fmt: skip
def test_when_validating_then_stdnum_full_check_decides(number: str, expected: bool) -> None:
    assert ResidentIdRecognizer().validate_result(number) is expected
    assert is_resident_id(number) is expected

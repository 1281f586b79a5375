"""CN_MOBILE_PHONE: 11 digits starting 1[3-9], with +86, separators or full-width digits."""

from __future__ import annotations

from collections.abc import Callable

import pytest

ENTITY = "CN_MOBILE_PHONE"


@pytest.mark.parametrize(
    ("text", "expected_count", "expected_spans"),
    [
        ("13812345678", 1, ["13812345678"]),
        ("家属电话13812345678。", 1, ["13812345678"]),
        ("手机+86 138-1234-5678，约定时间", 1, ["+86 138-1234-5678"]),
        ("手机+8613812345678", 1, ["+8613812345678"]),
        ("手机0086 13812345678", 1, ["0086 13812345678"]),
        ("号码86-139 1234 5678", 1, ["86-139 1234 5678"]),
        ("号码１３９１２３４５６７８，要求调整", 1, ["１３９１２３４５６７８"]),
        ("手机＋８６　１８６－３４２７－９４７９", 1, ["＋８６　１８６－３４２７－９４７９"]),
        ("儿子（19968504419）陪同就医", 1, ["19968504419"]),
        ("电话13812345678或15900001111", 2, ["13812345678", "15900001111"]),
    ],
)
def test_when_mobiles_in_any_typed_form_then_all_found(
    spans_of: Callable[[str, str], list[str]], text: str, expected_count: int, expected_spans: list[str]
) -> None:
    found = spans_of(text, ENTITY)
    assert len(found) == expected_count
    assert found == expected_spans


@pytest.mark.parametrize(
    "text",
    [
        "编号12345678901",  # 11 digits not starting 1[3-9]
        "编号11012345678",
        "号码1381234567",  # 10 digits
        "号码138123456789",  # 12 digits
        "服务日期2023-08-08，金额13500元",  # dates and amounts
        "2026年11月01日 13:45 上门",
        "身份证310110195001011232",  # 13... inside an ID
        "卡号6222138123456789",  # inside a card number
    ],
)
def test_when_not_an_11_digit_1x_number_then_not_found(
    spans_of: Callable[[str, str], list[str]], text: str
) -> None:
    assert spans_of(text, ENTITY) == []

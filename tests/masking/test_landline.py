"""CN_LANDLINE_PHONE: Shanghai 021 numbers; bare 8-digit numbers only with context and not dates."""

from __future__ import annotations

from collections.abc import Callable

import pytest

ENTITY = "CN_LANDLINE_PHONE"


@pytest.mark.parametrize(
    ("text", "expected_count", "expected_spans"),
    [
        ("021-65431234", 1, ["021-65431234"]),
        ("已通知儿子（021-30051565）陪同", 1, ["021-30051565"]),
        ("座机(021)6543 1234", 1, ["(021)6543 1234"]),
        ("座机（021）65431234", 1, ["（021）65431234"]),
        ("电话+86 21 6543 1234", 1, ["+86 21 6543 1234"]),
        ("电话０２１－６５４３１２３４", 1, ["０２１－６５４３１２３４"]),
        ("家里座机65431234，白天有人", 1, ["65431234"]),  # bare, with context
        ("宅电 5543-1234", 1, ["5543-1234"]),
    ],
)
def test_when_shanghai_landlines_then_all_found(
    spans_of: Callable[[str, str], list[str]], text: str, expected_count: int, expected_spans: list[str]
) -> None:
    found = spans_of(text, ENTITY)
    assert len(found) == expected_count
    assert found == expected_spans


@pytest.mark.parametrize(
    "text",
    [
        "服务编号65431234已登记",  # bare 8 digits, no context word
        "电话登记日期20261101",  # a date, even next to a context word
        "021-1234567",  # 7 digits after the area code
        "电话021-123456789",  # 9 digits
        "电话0211-65431234",  # another area code
    ],
)
def test_when_no_area_code_and_no_context_or_a_date_then_not_found(
    spans_of: Callable[[str, str], list[str]], text: str
) -> None:
    assert spans_of(text, ENTITY) == []


def test_when_mobile_with_separators_then_its_tail_is_not_a_landline(
    spans_of: Callable[[str, str], list[str]],
) -> None:
    text = "电话138 2345 6789"
    assert spans_of(text, ENTITY) == []
    assert spans_of(text, "CN_MOBILE_PHONE") == ["138 2345 6789"]

"""CN_ADDRESS: a (Yangpu or other) road or estate, then 弄 / 号 (/ 室)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from masking.recognizers.address import YANGPU_ROADS
from schemas.reference import street_roads

ENTITY = "CN_ADDRESS"


def test_when_built_then_every_yangpu_road_of_the_reference_data_is_known() -> None:
    assert set(YANGPU_ROADS) == {road for roads in street_roads().values() for road in roads}


@pytest.mark.parametrize(
    ("text", "expected_count", "expected_spans"),
    [
        (
            "上门服务，老人独居，地址上海市杨浦区控江路1200弄5号302室，门禁密码已告知护理员。",
            1,
            ["上海市杨浦区控江路1200弄5号302室"],
        ),
        ("家住杨浦区延吉东路36弄12号", 1, ["杨浦区延吉东路36弄12号"]),
        ("老人住在国和路100号", 1, ["国和路100号"]),
        ("搬到长白二村15号301室了", 1, ["长白二村15号301室"]),
        ("地址：凤城三村12号楼3单元501室", 1, ["凤城三村12号楼3单元501室"]),
        ("女儿家住浦东新区世纪大道100号", 1, ["浦东新区世纪大道100号"]),
        ("住址黄浦区南京东路１２０弄３号", 1, ["黄浦区南京东路１２０弄３号"]),
        ("平凉路1500弄8号-402", 1, ["平凉路1500弄8号-402"]),
        ("老人住在控江路100号，女儿住在民星路8弄2号", 2, ["控江路100号", "民星路8弄2号"]),
    ],
)
def test_when_shanghai_addresses_then_found_without_the_words_before(
    spans_of: Callable[[str, str], list[str]], text: str, expected_count: int, expected_spans: list[str]
) -> None:
    found = spans_of(text, ENTITY)
    assert len(found) == expected_count
    assert found == expected_spans


@pytest.mark.parametrize(
    "text",
    [
        "老人沿控江路散步",  # a road alone
        "平凉路街道组织活动",  # a street (街道) name
        "老人住3号床",  # a bed number
        "11月5号上门",  # a date
        "地铁8号线",  # a metro line
        "杨浦区老年人",
    ],
)
def test_when_no_house_number_then_not_found(spans_of: Callable[[str, str], list[str]], text: str) -> None:
    assert spans_of(text, ENTITY) == []

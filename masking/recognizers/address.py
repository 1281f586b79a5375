"""Shanghai residential addresses: a road or an estate, then 弄 / 号 (/ 室).

``上海市杨浦区控江路1200弄5号302室``, ``控江路1200弄5号``, ``长白二村15号301室``,
``家住南京东路100号``. A road or estate name alone (``控江路``) is no address; a number
with 弄 or 号 is required. The Yangpu roads the district holds
(``schemas/reference/streets.yaml``) score highest; any other ``...路 / 街 / 大道`` or
``...村 / 小区 / 苑`` name scores lower and must start where a place name can start (after
a district, 住在, 地址, punctuation, ...), so that ``老人住在`` never becomes part of it.
"""

from __future__ import annotations

from typing import ClassVar

from presidio_analyzer import Pattern

from masking.recognizers._common import NOT_DIGIT_AFTER, ChinesePatternRecognizer, D, alternation, han_except
from schemas.reference import street_roads

DISTRICTS = (
    "黄浦", "徐汇", "长宁", "静安", "普陀", "虹口", "杨浦", "闵行", "宝山", "嘉定",
    "浦东新", "浦东", "金山", "松江", "青浦", "奉贤", "崇明",
)  # fmt: skip
YANGPU_ROADS = tuple(sorted({road for roads in street_roads().values() for road in roads}))

NUM = f"{D}{{1,5}}"
PREFIX = f"(?:上海市?)?(?:{alternation(DISTRICTS)}区)?"
# Characters that end a phrase before a place name, and may never be part of one.
BREAK = "在住于到至址区市镇是为的了和与及向往从去来家人我他她您请近旁边对面附"
PLACE_CHAR = han_except(BREAK)
START = f"(?<!{PLACE_CHAR})"
ROAD_SUFFIX = "(?:支路|大道|公路|路|街)"
ESTATE_SUFFIX = "(?:[一二三四五六七八九十]村|新村|小区|花园|公寓|苑|坊|里)"
BUILDING = f"{NUM}(?:号楼|号|幢|栋)"
ROOM = f"(?:{NUM}单元)?(?:{NUM}(?:室|房)|[-－]{NUM}{NOT_DIGIT_AFTER})?"
HOUSE = f"(?:{NUM}弄(?:{BUILDING})?|{BUILDING}){ROOM}"


class AddressRecognizer(ChinesePatternRecognizer):
    ENTITY = "CN_ADDRESS"
    PLACEHOLDER = "<地址>"
    PATTERNS: ClassVar[list[Pattern]] = [
        Pattern("address_known_road", f"{PREFIX}{alternation(YANGPU_ROADS)}{HOUSE}", 0.85),
        Pattern(
            "address_road_or_estate",
            f"{START}{PREFIX}{PLACE_CHAR}{{1,5}}(?:{ROAD_SUFFIX}{HOUSE}|{ESTATE_SUFFIX}{BUILDING}{ROOM})",
            0.6,
        ),
    ]
    CONTEXT: ClassVar[list[str]] = ["地址", "住址", "家住", "住在", "居住", "现住", "户籍", "搬到", "门牌"]
    CANDIDATE = f"{D}[弄号幢栋]"

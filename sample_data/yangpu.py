"""Our own Yangpu/Shanghai providers: streets, roads, committees, addresses,
names (with homophone and look-alike typing errors), phones and ID numbers.

Faker's zh_CN addresses mix provinces and cities, so addresses are built here
from real Yangpu roads grouped by the sub-district (街道) they run through.
Faker supplies the surname frequencies and part of the given-name pool.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
from faker import Faker
from pypinyin import lazy_pinyin

from rainbow.ids import area_existed, check_digit
from schemas.reference import street_roads


@dataclass(frozen=True)
class Street:
    code: str
    name: str  # as in the code list, e.g. 定海路街道
    short: str  # e.g. 定海路
    roads: tuple[str, ...]
    estates: tuple[str, ...]  # residential estates / committees (居委会 stems)
    lat: float
    lon: float
    weight: float  # share of the district's elders


def _roads(code: str) -> tuple[str, ...]:
    """Roads of a street, from the reference data staging uses too (schemas/reference/streets.yaml)."""
    return street_roads()[code]


# Roads per street: real Yangpu roads, approximately where they run.
STREETS: tuple[Street, ...] = (
    Street(
        "310110001000",
        "定海路街道",
        "定海路",
        _roads("310110001000"),
        ("定海", "凉城", "隆昌", "河间", "杨树浦"),
        31.2689,
        121.5560,
        0.07,
    ),
    Street(
        "310110006000",
        "平凉路街道",
        "平凉路",
        _roads("310110006000"),
        ("平凉", "腾越", "临青", "宁国", "许昌"),
        31.2633,
        121.5310,
        0.08,
    ),
    Street(
        "310110008000",
        "江浦路街道",
        "江浦路",
        _roads("310110008000"),
        ("江浦", "长阳", "辽阳", "兰州", "惠民"),
        31.2683,
        121.5195,
        0.08,
    ),
    Street(
        "310110009000",
        "四平路街道",
        "四平路",
        _roads("310110009000"),
        ("鞍山", "抚顺", "阜新", "同济", "四平"),
        31.2822,
        121.5122,
        0.09,
    ),
    Street(
        "310110012000",
        "控江路街道",
        "控江路",
        _roads("310110012000"),
        ("控江", "凤城", "双阳", "靖宇", "松花"),
        31.2780,
        121.5335,
        0.10,
    ),
    Street(
        "310110013000",
        "长白新村街道",
        "长白新村",
        _roads("310110013000"),
        ("长白", "敦化", "图们", "安图", "双辽"),
        31.2832,
        121.5465,
        0.08,
    ),
    Street(
        "310110015000",
        "延吉新村街道",
        "延吉新村",
        _roads("310110015000"),
        ("延吉", "包头", "内江", "杭州", "延春"),
        31.2875,
        121.5360,
        0.09,
    ),
    Street(
        "310110016000",
        "殷行街道",
        "殷行",
        _roads("310110016000"),
        ("开鲁", "市光", "民京", "嫩江", "工农", "国和"),
        31.3170,
        121.5300,
        0.13,
    ),
    Street(
        "310110018000",
        "大桥街道",
        "大桥",
        _roads("310110018000"),
        ("大桥", "眉州", "贵阳", "齐齐哈尔", "昆明"),
        31.2620,
        121.5230,
        0.09,
    ),
    Street(
        "310110019000",
        "五角场街道",
        "五角场",
        _roads("310110019000"),
        ("国权", "政通", "政立", "国定", "财大"),
        31.3015,
        121.5125,
        0.08,
    ),
    Street(
        "310110020000",
        "新江湾城街道",
        "新江湾城",
        _roads("310110020000"),
        ("新江湾", "时代", "尚景", "首府", "文化"),
        31.3330,
        121.5080,
        0.03,
    ),
    Street(
        "310110021000",
        "长海路街道",
        "长海路",
        _roads("310110021000"),
        ("长海", "民星", "翔殷", "黑山", "民府"),
        31.3090,
        121.5260,
        0.08,
    ),
)
STREET_BY_CODE = {s.code: s for s in STREETS}
OLD_WUJIAOCHANG_TOWN = "五角场镇"
# Streets whose elders older systems still file under the pre-2019 五角场镇.
SPLIT_FROM_WUJIAOCHANG_TOWN = ("310110019000", "310110021000")

YANGPU_AREA = "310110"
# Area codes are checked by python-stdnum against the year of birth (a code must have
# existed then), so elders born 1920-1966 carry codes of that era: 310119 (南汇区,
# 2001-2009) and 310230 (崇明县, 1982-2016) never validate for them; the retired
# codes used are those of the districts and counties that existed before 1982.
OTHER_SHANGHAI_AREAS = ("310101", "310104", "310105", "310106", "310107", "310109")
RETIRED_SHANGHAI_AREAS = ("310102", "310103", "310108", "310111", "310201", "310210")
OTHER_PROVINCE_AREAS = (
    "320121",
    "320122",
    "330121",
    "330122",
    "340121",
    "370121",
    "420121",
    "510121",
    "350121",
    "210121",
    "360121",
    "410121",
    "110105",
    "120101",
)

MOBILE_PREFIXES = (
    "130",
    "131",
    "132",
    "133",
    "134",
    "135",
    "136",
    "137",
    "138",
    "139",
    "150",
    "151",
    "152",
    "153",
    "155",
    "156",
    "157",
    "158",
    "159",
    "166",
    "177",
    "180",
    "181",
    "182",
    "183",
    "185",
    "186",
    "187",
    "188",
    "189",
    "198",
    "199",
)

ESTATE_SUFFIXES = ("一村", "二村", "三村", "新村", "小区", "苑", "公寓", "花园")

# Given-name characters typical of people born 1920s-1960s.
MALE_CHARS = "建国华明志德文伟忠林荣根宝福兴发海金生祥春永强平军明庆龙昌"
FEMALE_CHARS = "秀英兰芳珍玉凤桂美丽娟霞萍琴素梅月红云菊华妹娣珠翠佩雅"
# Look-alike characters that data-entry clerks confuse (形近字).
LOOKALIKES: dict[str, str] = {
    "己": "已",
    "已": "己",
    "未": "末",
    "末": "未",
    "王": "玉",
    "玉": "王",
    "土": "士",
    "士": "土",
    "日": "曰",
    "侯": "候",
    "候": "侯",
    "秦": "泰",
    "泰": "秦",
    "折": "拆",
    "戊": "戌",
    "戌": "戊",
    "荣": "容",
    "容": "荣",
    "斌": "赋",
    "兰": "兰",
    "英": "瑛",
    "根": "银",
    "银": "根",
    "林": "琳",
    "梅": "海",
    "海": "梅",
    "萍": "苹",
    "苹": "萍",
    "娟": "绢",
    "珍": "诊",
    "凤": "风",
    "风": "凤",
    "明": "朋",
    "朋": "明",
    "金": "全",
    "全": "金",
    "生": "牛",
    "牛": "生",
    "春": "舂",
    "祥": "样",
    "桂": "硅",
    "琴": "琹",
    "雅": "稚",
    "翠": "萃",
    "红": "缸",
    "华": "桦",
    "平": "苹",
    "云": "去",
    "建": "健",
    "健": "建",
    "国": "图",
    "忠": "患",
    "强": "弦",
    "龙": "尤",
    "美": "羑",
    "丽": "酾",
}
LOOKALIKES = {k: v for k, v in LOOKALIKES.items() if k != v}


@functools.cache
def _faker_pools() -> tuple[list[str], np.ndarray, list[str], list[str]]:
    fake = Faker("zh_CN")
    person = fake.provider("faker.providers.person")
    assert person is not None
    last = dict(person.last_names)
    surnames = list(last)
    weights = np.array([last[s] for s in surnames], dtype=float)
    male = list(person.first_names_male)
    female = list(person.first_names_female)
    return surnames, weights / weights.sum(), male, female


@functools.cache
def homophones() -> dict[str, tuple[str, ...]]:
    """Characters in our name pools grouped by tone-less pinyin (同音字)."""
    surnames, _, male, female = _faker_pools()
    chars = set("".join(surnames) + "".join(male) + "".join(female) + MALE_CHARS + FEMALE_CHARS)
    # Common homophone partners that are not in the pools themselves.
    chars |= set("章汪黎刘留柳周舟洲陈晨程成吴武伍赵照兆孙荪徐许胥杨阳扬黄皇凰朱珠诸林琳霖")
    by_sound: dict[str, list[str]] = {}
    for ch in sorted(chars):
        by_sound.setdefault(lazy_pinyin(ch)[0], []).append(ch)
    out: dict[str, tuple[str, ...]] = {}
    for group in by_sound.values():
        if len(group) > 1:
            for ch in group:
                out[ch] = tuple(c for c in group if c != ch)
    return out


def homophone_variant(name: str, rng: np.random.Generator) -> str | None:
    """Swap one character of ``name`` for a homophone; None when none exists."""
    table = homophones()
    positions = [i for i, ch in enumerate(name) if ch in table]
    if not positions:
        return None
    i = positions[int(rng.integers(len(positions)))]
    options = table[name[i]]
    return name[:i] + options[int(rng.integers(len(options)))] + name[i + 1 :]


def lookalike_variant(name: str, rng: np.random.Generator) -> str | None:
    positions = [i for i, ch in enumerate(name) if ch in LOOKALIKES]
    if not positions:
        return None
    i = positions[int(rng.integers(len(positions)))]
    return name[:i] + LOOKALIKES[name[i]] + name[i + 1 :]


def sample_names(rng: np.random.Generator, male: np.ndarray) -> list[str]:
    """Full names for people of the given sexes (True = male)."""
    surnames, weights, male_pool, female_pool = _faker_pools()
    n = len(male)
    sur = rng.choice(len(surnames), size=n, p=weights)
    style = rng.random(n)
    pick = rng.integers(0, 10_000, size=(n, 2))
    out: list[str] = []
    for i in range(n):
        chars = MALE_CHARS if male[i] else FEMALE_CHARS
        pool = male_pool if male[i] else female_pool
        if style[i] < 0.45:
            given = pool[pick[i, 0] % len(pool)]
        elif style[i] < 0.85:
            given = chars[pick[i, 0] % len(chars)] + chars[pick[i, 1] % len(chars)]
        else:
            given = chars[pick[i, 0] % len(chars)]
        out.append(surnames[sur[i]] + given)
    return out


def id_number(area: str, birth: str, seq: int) -> str:
    """GB 11643 18-digit resident ID: area + YYYYMMDD + 3-digit sequence + check.

    Falls back to Yangpu's code where ``area`` did not exist in the year of birth.
    """
    body = f"{area}{birth}{seq:03d}"
    if area != YANGPU_AREA and not area_existed(area, int(birth[:4])):
        return id_number(YANGPU_AREA, birth, seq)
    return body + check_digit(body)


def id_sequence(rng: np.random.Generator, male: np.ndarray) -> np.ndarray:
    """3-digit sequence numbers: odd for men, even for women."""
    base = rng.integers(0, 500, size=len(male)) * 2  # even 0..998
    return np.where(male, base + 1, base)


def to_15_digit(id18: str) -> str | None:
    """Pre-1999 15-digit form (century and check digit dropped); only for 19xx births."""
    if len(id18) != 18 or id18[6:8] != "19":
        return None
    return id18[:6] + id18[8:17]


def mobile_numbers(rng: np.random.Generator, n: int) -> list[str]:
    pre = rng.integers(0, len(MOBILE_PREFIXES), size=n)
    tail = rng.integers(0, 100_000_000, size=n)
    return [f"{MOBILE_PREFIXES[p]}{t:08d}" for p, t in zip(pre, tail, strict=True)]


def landline_numbers(rng: np.random.Generator, n: int) -> list[str]:
    tail = rng.integers(0, 10_000_000, size=n)
    first = rng.choice(np.array([5, 6, 3]), size=n)
    return [f"021-{f}{t:07d}" for f, t in zip(first, tail, strict=True)]


def addresses(rng: np.random.Generator, street_idx: np.ndarray) -> tuple[list[str], list[str]]:
    """Residential addresses and committee (居委会) names for people in the given streets."""
    n = len(street_idx)
    r = rng.integers(0, 1_000_000, size=(n, 6))
    addrs: list[str] = []
    committees: list[str] = []
    for i in range(n):
        st = STREETS[street_idx[i]]
        road = st.roads[r[i, 0] % len(st.roads)]
        estate = st.estates[r[i, 1] % len(st.estates)] + ESTATE_SUFFIXES[r[i, 2] % len(ESTATE_SUFFIXES)]
        lane = 1 + r[i, 3] % 1200
        bldg = 1 + r[i, 4] % 60
        room = (1 + r[i, 5] % 7) * 100 + 1 + (r[i, 5] // 7) % 6
        addrs.append(f"上海市杨浦区{road}{lane}弄{bldg}号{room}室")
        committees.append(f"{estate}居委会")
    return addrs, committees


def street_coordinates(rng: np.random.Generator, street_idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    lat = np.array([STREETS[i].lat for i in street_idx]) + rng.normal(0, 0.004, size=len(street_idx))
    lon = np.array([STREETS[i].lon for i in street_idx]) + rng.normal(0, 0.004, size=len(street_idx))
    return lat.round(6), lon.round(6)

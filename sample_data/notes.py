"""Free-text notes as staff type them, sometimes with names, phones, IDs and addresses in them.

Every planted entity is returned with its character span so that PII
recognisers can be scored against the truth (precision and recall).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sample_data.deliver import NoteSpans

CLEAN_NOTES = (
    "老人精神状态良好，已完成{item}。",
    "服务顺利，老人对服务满意。",
    "无异常。",
    "老人今日血压偏高，已提醒按时服药，建议社区医生复测。",
    "老人行动较慢，协助完成{item}，注意防跌倒。",
    "天气转凉，提醒老人添衣保暖。",
    "老人情绪低落，陪同聊天约二十分钟，已告知居委会关注。",
    "厨房燃气阀门已检查，无异常。",
)
# Templates with slots: {name} elder, {family} a relative, {phone}, {id}, {address}.
PII_NOTES = (
    "老人{name}今日状态良好，已完成{item}。家属电话{phone}。",
    "{name}（身份证{id}）血压偏高，建议复测。",
    "联系女儿{family}，手机{phone}，约定下次上门时间。",
    "上门服务，老人独居，地址{address}，门禁密码已告知护理员。",
    "老人{name}反映腿疼，已通知儿子{family}（{phone}）陪同就医。",
    "{name}家属{family}来电，号码{phone}，要求调整服务时间。",
    "核对身份：{name}，{id}，信息一致。",
    "老人说邻居{family}可以帮忙开门，电话{phone}。",
)
ITEMS = ("协助沐浴", "清洁护理", "协助进食", "用药提醒", "生命体征监测", "康复训练", "协助移动")


@dataclass
class NotePerson:
    name: str
    id_number: str | None
    phone: str | None
    address: str | None
    family_name: str
    family_phone: str


def make_notes(
    rng: np.random.Generator, people: list[NotePerson], column: str, pii_rate: float = 0.15
) -> tuple[list[str], NoteSpans]:
    """One note per person; about ``pii_rate`` of them mention personal data."""
    texts: list[str] = []
    rows: list[int] = []
    kinds: list[str] = []
    starts: list[int] = []
    ends: list[int] = []
    values: list[str] = []
    u = rng.random(len(people))
    for i, p in enumerate(people):
        item = ITEMS[int(rng.integers(len(ITEMS)))]
        if u[i] >= pii_rate:
            texts.append(CLEAN_NOTES[int(rng.integers(len(CLEAN_NOTES)))].format(item=item))
            continue
        template = PII_NOTES[int(rng.integers(len(PII_NOTES)))]
        slots = {
            "name": ("PERSON", p.name),
            "family": ("PERSON", p.family_name),
            "phone": ("PHONE_NUMBER", p.phone or p.family_phone),
            "id": ("CN_RESIDENT_ID", p.id_number),
            "address": ("CN_ADDRESS", p.address),
        }
        if ("{id}" in template and not p.id_number) or ("{address}" in template and not p.address):
            template = PII_NOTES[0]
        # Build the text piece by piece to know each span exactly.
        out = ""
        rest = template.replace("{item}", item)
        while "{" in rest:
            pre, _, tail = rest.partition("{")
            key, _, rest = tail.partition("}")
            out += pre
            kind, value = slots[key]
            assert value is not None
            rows.append(i)
            kinds.append(kind)
            starts.append(len(out))
            out += value
            ends.append(len(out))
            values.append(value)
        out += rest
        texts.append(out)
    return texts, NoteSpans(column, rows, kinds, starts, ends, values)

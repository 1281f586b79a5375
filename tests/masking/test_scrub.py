"""Scrubbing free text: the analyzer engine, the pre-filter, batching, and the generator's notes."""

from __future__ import annotations

import socket
from typing import Any

import polars as pl
import pytest
from polars.testing import assert_frame_equal, assert_series_equal
from presidio_analyzer import RecognizerResult
from presidio_analyzer.nlp_engine import NoOpNlpEngine

from masking.analyzer import build_analyzer
from masking.evaluation import findings_frame, labelled_notes, score_entities
from masking.recognizers import PLACEHOLDERS, RECOGNIZERS
from masking.recognizers.person_name import COMPOUND_SURNAMES, SINGLE_SURNAMES
from masking.scrub import (
    candidate_entities,
    candidate_mask,
    find_pii,
    find_pii_many,
    resolve,
    scrub_columns,
    scrub_text,
    scrub_texts,
)
from rainbow.settings import Lake

# Texts from every recognizer's tests, and ones that would interact if batching leaked
# between neighbours (a role word, digits, a road at the end of one text and the start of the next).
HAND_WRITTEN = [
    "老人王秀英今日状态良好，已完成协助沐浴。家属电话13812345678。",
    "范桂珍（身份证310110195001011232）血压偏高，建议复测。",
    "联系女儿李娟，手机+86 138-1234-5678，约定下次上门时间。",
    "上门服务，老人独居，地址上海市杨浦区控江路1200弄5号302室，门禁密码已告知护理员。",
    "老人陈伟华反映腿疼，已通知儿子陈强（021-30051565）陪同就医。",
    "周建国家属周红来电，号码１３９１２３４５６７８，要求调整服务时间。",
    "银行卡6222314159265358，敬老卡JL3100104729，座机65431234",
    "老人高血压，周末来电。",
    "老人",
    "王秀英今日状态良好",
    "电话",
    "65431234",
    "身份证3101101950",
    "01011232",
    "地址上海市杨浦区控江路",
    "100弄5号",
    "多行\n备注：张建国\n13812345678",
    "备注\n王秀英，血压正常",  # a name leading a line that is not the first
    "",
    "无异常。",
]


@pytest.fixture(scope="module")
def notes(sample_lake: Lake) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The sample lake's free-text notes and the PII planted in them."""
    return labelled_notes(sample_lake)


def test_when_engine_built_offline_then_no_op_nlp_and_only_our_recognizers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def no_network(*args: Any, **kwargs: Any) -> Any:
        raise OSError("network is unavailable in this test")

    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    monkeypatch.setattr(socket.socket, "connect", no_network)
    engine = build_analyzer()
    assert isinstance(engine.nlp_engine, NoOpNlpEngine)
    assert engine.supported_languages == ["zh"]
    recognizers = engine.get_recognizers("zh")
    assert sorted(type(r).__name__ for r in recognizers) == sorted(r.__name__ for r in RECOGNIZERS)
    found = engine.analyze(text="家属电话13812345678", language="zh")
    assert [(r.entity_type, r.start, r.end) for r in found] == [("CN_MOBILE_PHONE", 4, 15)]


def test_when_overlapping_results_then_highest_score_then_longest_wins() -> None:
    results = [
        RecognizerResult("CN_BANK_CARD", 0, 18, 0.6),
        RecognizerResult("CN_RESIDENT_ID", 0, 18, 1.0),
        RecognizerResult("PERSON", 20, 22, 0.6),
        RecognizerResult("PERSON", 20, 23, 0.6),
        RecognizerResult("CN_ADDRESS", 22, 30, 0.85),
    ]
    assert resolve(results) == [("CN_RESIDENT_ID", 0, 18), ("PERSON", 20, 22), ("CN_ADDRESS", 22, 30)]


def test_when_text_scrubbed_then_each_entity_replaced_by_its_placeholder() -> None:
    text = HAND_WRITTEN[4]
    assert scrub_text(text) == "老人<姓名>反映腿疼，已通知儿子<姓名>（<固定电话>）陪同就医。"
    assert set(PLACEHOLDERS) == {r.ENTITY for r in RECOGNIZERS}
    assert all(p.startswith("<") and p.endswith(">") for p in PLACEHOLDERS.values())


def test_when_texts_batched_then_results_equal_each_text_alone(
    notes: tuple[pl.DataFrame, pl.DataFrame],
) -> None:
    texts = HAND_WRITTEN + notes[0]["text"].unique(maintain_order=True).to_list()
    assert find_pii_many(texts) == [find_pii(t) for t in texts]
    series = pl.Series("notes", [*texts, None, *HAND_WRITTEN])
    expected = pl.Series(
        "notes", [*(scrub_text(t) for t in texts), None, *(scrub_text(t) for t in HAND_WRITTEN)]
    )
    assert_series_equal(scrub_texts(series), expected)


def test_when_prefiltered_then_every_text_with_findings_is_a_candidate(
    notes: tuple[pl.DataFrame, pl.DataFrame],
) -> None:
    texts = HAND_WRITTEN + notes[0]["text"].unique().to_list()
    mask = candidate_mask(pl.Series(texts)).to_list()
    per_recognizer = candidate_entities(texts)
    found_any = 0
    for text, is_candidate, entities in zip(texts, mask, per_recognizer, strict=True):
        found = {entity for entity, _, _ in find_pii(text)}
        assert found <= set(entities), (text, found, entities)
        assert is_candidate or not found, text
        found_any += bool(found)
    assert found_any > 100
    # The pre-filter does filter: most generated notes (rows, not distinct texts) hold no personal data.
    assert candidate_mask(notes[0]["text"]).mean() < 0.5  # type: ignore[operator]


def test_when_scrubbing_series_then_nulls_name_dtype_and_other_columns_kept() -> None:
    frame = pl.DataFrame(
        {
            "id": [1, 2, 3],
            "notes": ["家属电话13812345678", None, "无异常。"],
            "other": ["13812345678", "x", None],
        }
    )
    out = scrub_columns(frame, ["notes"])
    expected = frame.with_columns(notes=pl.Series(["家属电话<手机号>", None, "无异常。"]))
    assert_frame_equal(out, expected)
    assert_series_equal(scrub_texts(pl.Series("n", [], dtype=pl.String)), pl.Series("n", [], dtype=pl.String))
    assert_series_equal(
        scrub_texts(pl.Series("n", [None, None])), pl.Series("n", [None, None], dtype=pl.String)
    )


def test_when_generated_notes_scrubbed_then_no_planted_pii_left(
    notes: tuple[pl.DataFrame, pl.DataFrame],
) -> None:
    texts, spans = notes
    assert spans.select("source_file", "row_number", "column").n_unique() >= 100
    scrubbed = texts.with_columns(scrubbed=scrub_texts(texts["text"]))
    leaks = (
        spans.join(scrubbed, on=["source_file", "row_number", "column"])
        .filter(pl.col("scrubbed").str.contains(pl.col("value"), literal=True))
        .select("entity_type", "value", "scrubbed")
    )
    # IDs, phones and addresses: none may be left.
    assert leaks.filter(pl.col("entity_type") != "PERSON").height == 0, leaks
    # Names: only those with a surname outside our list (a surname list's known limit), few of them.
    names = leaks.filter(pl.col("entity_type") == "PERSON")["value"].to_list()
    listed = [n for n in names if n[0] in SINGLE_SURNAMES or n[:2] in COMPOUND_SURNAMES]
    assert listed == []
    planted_names = spans.filter(pl.col("entity_type") == "PERSON").height
    assert len(names) <= 0.08 * planted_names, names


def test_when_scored_against_planted_spans_then_precise_and_complete(
    notes: tuple[pl.DataFrame, pl.DataFrame],
) -> None:
    texts, spans = notes
    found = findings_frame(texts, find_pii_many(texts["text"].to_list()))
    scores = score_entities(found, spans)
    assert set(scores) == {"CN_ADDRESS", "CN_RESIDENT_ID", "PERSON", "PHONE_NUMBER"}
    for entity, s in scores.items():
        assert s["precision"] >= 0.98, (entity, s)
        assert s["recall"] >= (0.92 if entity == "PERSON" else 1.0), (entity, s)


def test_when_scrubbed_twice_then_identical() -> None:
    series = pl.Series("notes", HAND_WRITTEN)
    assert_series_equal(scrub_texts(series), scrub_texts(series))

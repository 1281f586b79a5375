"""Find and replace personal data in free text: ``find_pii``, ``scrub_texts``, ``scrub_columns``.

Each entity found is replaced by its placeholder (``<身份证号>``, ``<手机号>``, ``<姓名>``,
``<地址>``...). Overlapping results of different recognizers are resolved once,
deterministically: the highest score wins, then the longest span, then the earliest.

``scrub_texts`` is built for columns of many notes, most without personal data:

1. a vectorised Polars regex (the union of the recognizers' lookaround-free
   ``CANDIDATE`` patterns, a superset of what they can match) picks candidate rows;
2. distinct candidate texts are analysed by presidio in batches: grouped by the
   recognizers whose own candidate pattern matches them (only those run), and joined
   by newlines into one text per batch (no pattern or context window crosses a
   newline, so the results are those of analysing each text alone; the per-call
   overhead of presidio is paid once per batch instead of once per note);
3. the scrubbed texts replace the originals in one vectorised ``Series.replace``.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Sequence

import polars as pl
from presidio_analyzer import RecognizerResult

from masking.analyzer import analyzer_engine
from masking.recognizers import LANGUAGE, PLACEHOLDERS, RECOGNIZERS

Finding = tuple[str, int, int]  # (entity type, start, end)

CANDIDATE_PATTERN = "|".join(f"(?:{r.CANDIDATE})" for r in RECOGNIZERS)
# Texts analysed per presidio call (joined by newlines), and the most characters per call.
BATCH_TEXTS = 512
BATCH_CHARS = 64_000


def resolve(results: Iterable[RecognizerResult]) -> list[Finding]:
    """Non-overlapping findings, by start: highest score first, then longest, then earliest."""
    ranked = sorted(results, key=lambda r: (-r.score, -(r.end - r.start), r.start, r.entity_type))
    kept: list[Finding] = []
    for r in ranked:
        if all(r.end <= s or r.start >= e for _, s, e in kept):
            kept.append((r.entity_type, r.start, r.end))
    return sorted(kept, key=lambda f: (f[1], f[2]))


def find_pii(text: str) -> list[Finding]:
    """Every entity found in ``text`` as (entity type, start, end), by start."""
    if not text:
        return []
    return resolve(analyzer_engine().analyze(text=text, language=LANGUAGE))


def replace_findings(text: str, findings: Sequence[Finding]) -> str:
    """``text`` with each finding replaced by its entity's placeholder."""
    out = text
    for entity, start, end in sorted(findings, key=lambda f: f[1], reverse=True):
        out = out[:start] + PLACEHOLDERS.get(entity, f"<{entity}>") + out[end:]
    return out


def scrub_text(text: str) -> str:
    """One text with every entity found replaced by its placeholder."""
    return replace_findings(text, find_pii(text))


def _batches(texts: Sequence[str]) -> Iterable[tuple[int, int]]:
    """(first, last + 1) index ranges of texts analysed together."""
    first, chars = 0, 0
    for i, t in enumerate(texts):
        if i > first and (i - first >= BATCH_TEXTS or chars + len(t) > BATCH_CHARS):
            yield first, i
            first, chars = i, 0
        chars += len(t) + 1
    if first < len(texts):
        yield first, len(texts)


def candidate_entities(texts: Sequence[str]) -> list[tuple[str, ...]]:
    """Per text, the entities whose recognizer's candidate pattern matches it (vectorised)."""
    if not texts:
        return []
    flags = pl.DataFrame({"text": list(texts)}, schema={"text": pl.String}).select(
        [pl.col("text").str.contains(r.CANDIDATE).alias(r.ENTITY) for r in RECOGNIZERS]
    )
    names = flags.columns
    return [tuple(n for n, hit in zip(names, row, strict=True) if hit) for row in flags.iter_rows()]


def find_pii_many(texts: Sequence[str]) -> list[list[Finding]]:
    """``find_pii`` of each text, with the same results, analysing many texts per presidio call.

    Texts are grouped by the entities whose candidate pattern they match, and each group
    is analysed for those entities only (a recognizer cannot find anything where its
    candidate pattern does not match).
    """
    engine = analyzer_engine()
    out: list[list[Finding]] = [[] for _ in texts]
    groups: dict[tuple[str, ...], list[int]] = {}
    for i, entities in enumerate(candidate_entities(texts)):
        if entities:
            groups.setdefault(entities, []).append(i)
    for entities, members in groups.items():
        for first, last in _batches([texts[i] for i in members]):
            batch = members[first:last]
            starts: list[int] = []
            pos = 0
            for i in batch:
                starts.append(pos)
                pos += len(texts[i]) + 1
            joined = "\n".join(texts[i] for i in batch)
            per_text: list[list[RecognizerResult]] = [[] for _ in batch]
            for r in engine.analyze(text=joined, language=LANGUAGE, entities=list(entities)):
                k = bisect.bisect_right(starts, r.start) - 1
                r.start -= starts[k]
                r.end -= starts[k]
                per_text[k].append(r)
            for i, results in zip(batch, per_text, strict=True):
                if any(r.end > len(texts[i]) for r in results):  # a pattern crossed a newline: a bug
                    raise RuntimeError(f"a finding crosses the end of a batched text: {texts[i]!r}")
                out[i] = resolve(results)
    return out


def candidate_mask(series: pl.Series) -> pl.Series:
    """True where a text may hold personal data (the vectorised pre-filter); False for nulls."""
    return series.cast(pl.String).str.contains(CANDIDATE_PATTERN).fill_null(False)


def scrub_texts(series: pl.Series) -> pl.Series:
    """``series`` (text) with every entity found replaced by its placeholder; nulls stay null."""
    s = series.cast(pl.String)
    texts = s.filter(candidate_mask(s)).unique(maintain_order=True).to_list()
    old: list[str] = []
    new: list[str] = []
    for text, findings in zip(texts, find_pii_many(texts), strict=True):
        if findings:
            old.append(text)
            new.append(replace_findings(text, findings))
    if not old:
        return s
    return s.replace(old, new)


def scrub_columns(frame: pl.DataFrame, columns: Iterable[str]) -> pl.DataFrame:
    """``frame`` with the given text columns scrubbed (others untouched)."""
    return frame.with_columns([scrub_texts(frame.get_column(c)) for c in columns])

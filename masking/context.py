"""Context words in Chinese text, found by characters instead of tokens.

Presidio's default ``LemmaContextAwareEnhancer`` compares context words with the
lemmas of the tokens around a match; the no-op NLP engine (no model download)
produces no tokens, and Chinese is not split by spaces anyway. This enhancer looks
for each recognizer's ``context`` words as substrings of the few characters before
and after the match, within the same line, and raises the score as presidio's does
(+``context_similarity_factor``, at least ``min_score_with_context_similarity``, at
most 1).
"""

from __future__ import annotations

from presidio_analyzer import EntityRecognizer, RecognizerResult
from presidio_analyzer.context_aware_enhancers import ContextAwareEnhancer
from presidio_analyzer.nlp_engine import NlpArtifacts


class CharWindowContextEnhancer(ContextAwareEnhancer):
    def __init__(
        self,
        context_similarity_factor: float = 0.35,
        min_score_with_context_similarity: float = 0.4,
        context_prefix_count: int = 10,
        context_suffix_count: int = 4,
    ) -> None:
        super().__init__(
            context_similarity_factor=context_similarity_factor,
            min_score_with_context_similarity=min_score_with_context_similarity,
            context_prefix_count=context_prefix_count,
            context_suffix_count=context_suffix_count,
        )

    def window(self, text: str, start: int, end: int) -> str:
        """The characters before and after ``text[start:end]`` on its line (joined by a newline)."""
        line_start = text.rfind("\n", 0, start) + 1
        line_end = text.find("\n", end)
        if line_end < 0:
            line_end = len(text)
        before = text[max(line_start, start - self.context_prefix_count) : start]
        after = text[end : min(line_end, end + self.context_suffix_count)]
        return f"{before}\n{after}"

    def enhance_using_context(
        self,
        text: str,
        raw_results: list[RecognizerResult],
        nlp_artifacts: NlpArtifacts,
        recognizers: list[EntityRecognizer],
        context: list[str] | None = None,
    ) -> list[RecognizerResult]:
        by_id = {r.id: r for r in recognizers}
        given = set(context or ())
        for result in raw_results:
            meta = result.recognition_metadata or {}
            recognizer = by_id.get(meta.get(RecognizerResult.RECOGNIZER_IDENTIFIER_KEY, ""))
            words = getattr(recognizer, "context", None)
            if not words or meta.get(RecognizerResult.IS_SCORE_ENHANCED_BY_CONTEXT_KEY):
                continue
            around = self.window(text, result.start, result.end)
            word = next((w for w in words if w in around or w in given), None)
            if word is None:
                continue
            result.score = min(
                max(result.score + self.context_similarity_factor, self.min_score_with_context_similarity),
                self.MAX_SCORE,
            )
            meta[RecognizerResult.IS_SCORE_ENHANCED_BY_CONTEXT_KEY] = True
            result.recognition_metadata = meta
            if result.analysis_explanation is not None:
                result.analysis_explanation.set_supportive_context_word(word)
                result.analysis_explanation.set_improved_score(result.score)
        return raw_results

"""The one presidio ``AnalyzerEngine`` for Chinese text: our recognizers, no model download.

The NLP engine is presidio's ``no_op`` (no spaCy / stanza / transformers model is
loaded or fetched: it works offline); every recognizer is one of ours
(:mod:`masking.recognizers`, language ``zh``) and context words are matched by
characters (:class:`masking.context.CharWindowContextEnhancer`). Built once per process.
"""

from __future__ import annotations

import functools
from typing import Any

from presidio_analyzer import AnalyzerEngine, RecognizerRegistry
from presidio_analyzer.nlp_engine import NlpEngineProvider

from masking.context import CharWindowContextEnhancer
from masking.recognizers import LANGUAGE, RECOGNIZERS
from masking.recognizers._common import REGEX_FLAGS

# Results scoring below this are dropped: a pattern scoring less needs a context word.
SCORE_THRESHOLD = 0.5
NLP_CONFIGURATION: dict[str, Any] = {
    "nlp_engine_name": "no_op",
    "models": [{"lang_code": LANGUAGE, "model_name": "no_op"}],
}


def build_analyzer() -> AnalyzerEngine:
    """A new engine (tests); everything else uses the cached :func:`analyzer_engine`."""
    nlp_engine = NlpEngineProvider(nlp_configuration=NLP_CONFIGURATION).create_engine()
    registry = RecognizerRegistry(
        recognizers=[recognizer() for recognizer in RECOGNIZERS],
        global_regex_flags=REGEX_FLAGS,
        supported_languages=[LANGUAGE],
    )
    return AnalyzerEngine(
        registry=registry,
        nlp_engine=nlp_engine,
        supported_languages=[LANGUAGE],
        default_score_threshold=SCORE_THRESHOLD,
        context_aware_enhancer=CharWindowContextEnhancer(),
    )


@functools.cache
def analyzer_engine() -> AnalyzerEngine:
    """The process-wide engine."""
    return build_analyzer()

"""Shared pieces of the Chinese recognizers: character classes, normalisation, the base class.

Regex notes (they hold for every recognizer):

* Never ``\\b`` around digits: Chinese characters are ``\\w``, so ``电话13812345678``
  has no word boundary before the ``1``. Digits are delimited with ``(?<![0-9０-９])``
  and ``(?![0-9０-９])``.
* Never ``\\d``: in Python (``re`` and ``regex``) and in Polars it matches every
  Unicode decimal digit. Digits are spelled ``[0-9０-９]`` (half- and full-width).
* Never ``\\s`` or ``.``: :func:`masking.scrub.scrub_texts` analyses many notes joined
  by newlines at once, so no pattern may match a newline.
* ``CANDIDATE`` (one per recognizer) is a lookaround-free pattern that matches in
  every text where the recognizer's patterns can match (a superset). It runs in
  Polars (Rust regex: no lookaround) to pre-filter rows before presidio.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar

import regex
from presidio_analyzer import Pattern, PatternRecognizer

LANGUAGE = "zh"

# One digit, half- or full-width.
D = "[0-9０-９]"
NOT_DIGIT_BEFORE = "(?<![0-9０-９])"
NOT_DIGIT_AFTER = "(?![0-9０-９])"
# A separator people type inside numbers: space, ideographic space, dash, full-width dash.
SEP = "[ \u3000\\-－]"
# Any CJK unified ideograph (the basic block), spelled literally so that Python and Polars agree.
HAN = "[\u4e00-\u9fff]"
# Presidio's default flags without IGNORECASE: case folding makes every character class
# several times slower in the regex module, and our few letters are spelled in both cases.
REGEX_FLAGS = regex.DOTALL | regex.MULTILINE


def han_except(chars: str) -> str:
    """One CJK ideograph that is not in ``chars``, as a single (fast) negated class."""
    return f"[^{chars}\\x00-\\u4dff\\ua000-\\U0010ffff]"


_FULL_WIDTH = {ord(c): ord(c) - 0xFEE0 for c in "０１２３４５６７８９ＸｘＪＬｊｌ＋－"}
_FULL_WIDTH[0x3000] = ord(" ")


def to_half_width(text: str) -> str:
    """Full-width digits, X, J, L, plus, minus and ideographic space to ASCII."""
    return text.translate(_FULL_WIDTH)


def digits_only(text: str) -> str:
    """The ASCII digits (and a trailing X check character, upper-cased) of ``text``."""
    half = to_half_width(text).upper()
    return "".join(c for c in half if c.isascii() and (c.isdigit() or c == "X"))


def lit(digits: str) -> str:
    """A regex for a literal digit string matching half- or full-width forms: '021' -> '[0０][2２][1１]'."""
    return "".join(f"[{c}{chr(ord(c) + 0xFEE0)}]" if c.isdigit() else c for c in digits)


def alternation(words: tuple[str, ...] | list[str]) -> str:
    """A non-capturing alternation of literal words, as a trie: ``浦东新|浦东`` -> ``(?:浦东(?:新)?)``.

    Each position is tested against one character per level instead of every word
    (the regex module tries alternatives one by one); a longer word still wins over
    its prefix (the optional tail is greedy). Plain syntax: valid in Polars too.
    """
    trie: dict[str, Any] = {}
    for word in words:
        node = trie
        for ch in word:
            node = node.setdefault(ch, {})
        node[""] = {}
    return f"(?:{_trie_regex(trie)})"


def _trie_regex(node: dict[str, Any]) -> str:
    branches = [re.escape(ch) + _trie_regex(child) for ch, child in sorted(node.items()) if ch]
    if not branches:
        return ""
    body = branches[0] if len(branches) == 1 else "(?:" + "|".join(branches) + ")"
    if "" not in node:
        return body
    return f"(?:{body})?" if len(branches) == 1 else f"{body}?"


class ChinesePatternRecognizer(PatternRecognizer):
    """A presidio ``PatternRecognizer`` for language ``zh`` built from class attributes.

    Subclasses set ``ENTITY``, ``PATTERNS``, ``CONTEXT`` and ``CANDIDATE`` (and may
    override ``validate_result`` / ``invalidate_result``). Context words are matched
    in a character window by :class:`masking.context.CharWindowContextEnhancer`: the
    no-op NLP engine produces no tokens, so presidio's lemma enhancer cannot see them.
    """

    ENTITY: ClassVar[str]
    PLACEHOLDER: ClassVar[str]
    PATTERNS: ClassVar[list[Pattern]]
    CONTEXT: ClassVar[list[str]]
    CANDIDATE: ClassVar[str]

    def __init__(self) -> None:
        super().__init__(
            supported_entity=self.ENTITY,
            name=type(self).__name__,
            supported_language=LANGUAGE,
            # Fresh Pattern objects: presidio caches the compiled regex on them.
            patterns=[Pattern(p.name, p.regex, p.score) for p in self.PATTERNS],
            context=list(self.CONTEXT),
            global_regex_flags=REGEX_FLAGS,
        )

"""Comparing quality outcomes in tests: what a validation reports for a rule, as one tuple."""

from __future__ import annotations

from typing import Any

from quality.runner import Outcome


def outcome_key(o: Outcome, digits: int | None = None) -> tuple[Any, ...]:
    """Everything an outcome reports; the percentage rounded to ``digits`` when given (a path
    that computes it its own way), else compared exactly."""
    percent = o.unexpected_percent
    if digits is not None and percent is not None:
        percent = round(percent, digits)
    return (
        o.rule_id,
        o.evaluated,
        o.success,
        o.element_count,
        o.unexpected_count,
        o.missing_count,
        percent,
        o.examples,
        o.observed,
        o.note,
    )

"""Data quality of the staged zone.

``suites`` (expectation suites from the contracts) and ``rules`` (domain rules),
``runner`` (validate a frame with Great Expectations), ``scorecard`` (scores,
history, source-system health), ``report`` (static HTML), ``checks`` (the
Dagster asset checks: :func:`quality.checks.build_quality_checks`).
"""

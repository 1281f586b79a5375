"""Data quality of the staged, library and mart zones.

``suites`` (expectation suites from the contracts) and ``rules`` (domain rules),
``runner`` (validate a frame with Great Expectations), ``library_checks`` (library
and mart tables: batches, cross-table DuckDB rules), ``scorecard`` (scores,
history, source-system health), ``report`` (static HTML), ``checks`` (the
Dagster asset checks: :func:`quality.checks.build_quality_checks`, and
:func:`quality.checks.derived_check_result` for the library and mart checks).
"""

"""Errored runs within ``ab_test.max_error_rate``: what they do to the
session's exit code (README, "Errored runs and the exit code").

A run that could not complete (provider error after retries, template
error) is a FAILED item, shown as such. When every FAILED item of a session
is such a run, and every variant of each A/B test stays within its
``max_error_rate``, the session does not exit 1 for them: the quality
verdict (gates, block code) decides. ``max_error_rate: 0`` keeps pytest's
rule that any FAILED item fails the session.
"""

from __future__ import annotations

from .summary import ABTestSummary, SessionSummary


def within_tolerance(ab: ABTestSummary) -> bool:
    """Every variant's share of FAILED runs is at most ``max_error_rate``."""
    return all(v.error_rate is None or v.error_rate <= ab.max_error_rate for v in ab.variants)


def tolerated_errors(summary: SessionSummary) -> int | None:
    """The number of errored runs the exit code may ignore, or None when
    some A/B test has a variant above its ``max_error_rate``."""
    if any(ab.failed_runs and not within_tolerance(ab) for ab in summary.abtests):
        return None
    return sum(ab.failed_runs for ab in summary.abtests)


def exit_code_ignores_failures(summary: SessionSummary, failed_items: int) -> bool:
    """True when the session's only FAILED items are tolerated errored runs."""
    tolerated = tolerated_errors(summary)
    return bool(tolerated) and failed_items == tolerated

"""Gate items' reports: a verdict turned into a pytest outcome.

A gate item judges when it runs (see ``GateItem`` and
``PromptabSession.gate_verdict``); the plugin's makereport hook then marks its
report here: passed, failed with a short text (no traceback), XFAIL, or
skipped. A WARN violation passes and goes to the warnings summary.

Under pytest-xdist a worker's gate item cannot judge (the runs' records reach
the controller only): it reports a pass carrying ``promptab_gate_pending``.
promptab's scheduler sends all the items of one A/B test to one worker, in
order, so the controller has received every run's report before the gate's;
it judges then and marks the report before any other plugin sees it
(:func:`judge_worker_report`, from a ``pytest_runtest_logreport`` wrapper).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import pytest

from .errors import PromptabWarning
from .session import PromptabSession
from .session_data import GateVerdict

PENDING_PROPERTY = "promptab_gate_pending"


def mark_report(report: pytest.TestReport, verdict: GateVerdict) -> None:
    """Give the call report of a gate item its verdict's outcome."""
    path, lineno = report.location[0], report.location[1] or 0
    if verdict.outcome == "failed":
        report.outcome = "failed"
        regression = verdict.judgement is not None and verdict.judgement.gate.startswith("regression:")
        head = "regression" if regression else "gate violated"
        report.longrepr = ShortFailure(f"{head}: {verdict.message}", path, lineno)  # type: ignore[assignment]
    elif verdict.outcome == "xfailed":
        report.outcome = "skipped"
        report.wasxfail = verdict.message  # type: ignore[attr-defined]
    elif verdict.outcome == "skipped":
        report.outcome = "skipped"
        report.longrepr = (path, lineno + 1, f"Skipped: {verdict.message}")


def record_gate_warning(config: pytest.Config, nodeid: str, verdict: GateVerdict, path: str, lineno: int) -> None:
    """A WARN violation in the warnings summary, under the gate's node id."""
    if verdict.outcome != "warned":
        return
    message = warnings.WarningMessage(PromptabWarning(f"gate {nodeid}: {verdict.message}"), PromptabWarning, path, lineno + 1)
    config.hook.pytest_warning_recorded.call_historic(
        kwargs=dict(warning_message=message, when="runtest", nodeid=nodeid, location=None)
    )


def judge_worker_report(config: pytest.Config, psession: PromptabSession, report: pytest.TestReport) -> None:
    """On the xdist controller: judge a worker's gate report (call) and put
    the verdict's properties on its teardown report (``--junitxml`` reads them
    there)."""
    pending: Any = next((value for name, value in report.user_properties if name == PENDING_PROPERTY), None)
    if pending is None:
        return
    others = [(name, value) for name, value in report.user_properties if name != PENDING_PROPERTY]
    verdict = psession.worker_verdicts.get(report.nodeid)
    if report.when == "call":
        verdict = psession.gate_verdict(report.nodeid, pending)
        psession.worker_verdicts[report.nodeid] = verdict
        if report.passed:
            mark_report(report, verdict)
            record_gate_warning(config, report.nodeid, verdict, report.location[0], report.location[1] or 0)
    report.user_properties = others + (verdict.properties() if verdict is not None else [])


@dataclass
class _Crash:
    path: str
    lineno: int
    message: str


class ShortFailure:
    """A short failure text, no traceback (a failed gate; a failed check
    under ``--runxfail``); ``reprcrash.message`` is what pytest shows after
    the node id in the short summary (``-rA``, ``-rf``)."""

    def __init__(self, message: str, path: str, lineno: int) -> None:
        self.reprcrash = _Crash(path, lineno, message)

    def toterminal(self, tw: Any) -> None:
        tw.line(self.reprcrash.message)

    def __str__(self) -> str:
        return self.reprcrash.message

"""Gate judgements as pytest test results of their own.

After all items ran, on the controller only, each judgement goes through
pytest's reporting hooks (logstart, three TestReports, logfinish), so it shows
in the progress, ``-rA``, the summary counts and ``--junitxml``. WARN
violations also go to the warnings summary.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass
from typing import Any

import pytest

from .analysis.summary import ABTestSummary, GateJudgement
from .errors import PromptabWarning


def emit_gate_reports(config: pytest.Config, abtests: list[ABTestSummary], line_of: dict[str, int]) -> int:
    """Report every judgement; returns how many were reported."""
    hook = config.hook
    count = 0
    for ab in abtests:
        for judgement in ab.gates:
            location = (ab.file, line_of.get(ab.file), judgement.nodeid.split("::", 1)[1])
            hook.pytest_runtest_logstart(nodeid=judgement.nodeid, location=location)
            now = time.time()
            props = [("promptab_gate", f"{judgement.action} {judgement.gate}"), ("promptab_value", judgement.value),
                     ("promptab_outcome", judgement.outcome)]
            for when in ("setup", "call", "teardown"):
                report = _report(judgement, location, when, now, props)
                hook.pytest_runtest_logreport(report=report)
            hook.pytest_runtest_logfinish(nodeid=judgement.nodeid, location=location)
            if judgement.outcome == "warned":
                message = warnings.WarningMessage(
                    PromptabWarning(f"gate {judgement.nodeid}: {judgement.message}"),
                    PromptabWarning, ab.file, (line_of.get(ab.file) or 0) + 1,
                )
                hook.pytest_warning_recorded.call_historic(
                    kwargs=dict(warning_message=message, when="runtest", nodeid=judgement.nodeid, location=None)
                )
            count += 1
    return count


@dataclass
class _Crash:
    path: str
    lineno: int
    message: str


class GateFailure:
    """A failed gate's report text; ``reprcrash.message`` is what pytest
    shows after the node id in the short summary (``-rA``, ``-rf``)."""

    def __init__(self, message: str, path: str, lineno: int) -> None:
        self.reprcrash = _Crash(path, lineno, message)

    def toterminal(self, tw: Any) -> None:
        tw.line(self.reprcrash.message)

    def __str__(self) -> str:
        return self.reprcrash.message


def _report(
    judgement: GateJudgement, location: tuple[str, int | None, str], when: str, now: float, props: list
) -> pytest.TestReport:
    outcome, extra = "passed", dict[str, Any]()
    longrepr: GateFailure | None = None
    if when == "call":
        if judgement.outcome == "failed":
            outcome = "failed"
            longrepr = GateFailure(f"gate violated: {judgement.message}", location[0], location[1] or 0)
        elif judgement.outcome == "xfailed":
            outcome, extra = "skipped", {"wasxfail": judgement.message}
    return pytest.TestReport(
        nodeid=judgement.nodeid,
        location=location,
        keywords={"promptab": 1, "gate": 1},
        outcome=outcome,  # type: ignore[arg-type]
        longrepr=longrepr,  # type: ignore[arg-type]  # duck-typed TerminalRepr (toterminal, reprcrash)
        when=when,  # type: ignore[arg-type]
        duration=0.0,
        start=now,
        stop=now,
        user_properties=props,
        **extra,
    )

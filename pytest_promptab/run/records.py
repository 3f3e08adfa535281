"""What one run (one pytest item) produced, as plain data, and its one
serialised form.

A :class:`RunRecord` has exactly one serialisation, used everywhere a run is
written or shipped: :meth:`RunRecord.to_dict` (plain dicts, lists, strings,
numbers, booleans and None; the same keys as the dataclass fields, in their
order) and :meth:`RunRecord.to_json`, that dict as compact JSON (no
whitespace), encoded once per record and cached. The same text is

- the value of the run's ``user_properties`` entry (:data:`USER_PROPERTY`),
  which is how a record reaches the pytest controller (under pytest-xdist
  through execnet; without xdist the controller takes the record itself,
  see :meth:`PromptabSession.ship`) and what ``--junitxml`` shows as the
  ``<property>`` value;
- each element of an A/B test's ``runs`` list in ``.promptab/results.json``
  (:mod:`pytest_promptab.report.results_file` splices the texts in, it does
  not encode the runs again);
- and, one per line, what a journal of finished runs or a saved session
  would hold. :meth:`RunRecord.from_json` / :meth:`RunRecord.from_dict` read
  it back, ignoring keys they do not know (a newer version's).

A record is final once it has been encoded: change it before
:meth:`to_json` (the engine and the checks do), never after.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from typing import Any, Literal

from ..checks.result import CheckResult

RunStatus = Literal["passed", "check_failed", "error"]

USER_PROPERTY = "promptab_run"
"""The ``user_properties`` key a run's record is shipped under."""

encode_json = json.JSONEncoder(separators=(",", ":"), default=str, allow_nan=True).encode
"""Compact JSON, as every promptab file writes it: NaN and Infinity as
JavaScript literals (Python's json reads them back), anything that is not
JSON as its ``str``."""

TRACE_KEY = "@trace"
"""The ``extra`` key of what an MLflow trace of the run needs: per node, in
order, its rendered messages, raw output and tokens (no node id can contain
``@``; latencies are the ``node.<id>.latency_ms`` metrics). Nothing in it
depends on the clock, so a replayed session's records equal the recorded ones."""


def trace_entry(node: str, messages: list[dict[str, str]], response: Any, output: str) -> dict[str, Any]:
    """One node's part of ``extra[TRACE_KEY]`` (``response``: a ProviderResponse;
    ``output``: its text as the record keeps it, cut when very long)."""
    return {
        "node": node,
        "messages": [dict(m) for m in messages],
        "output": output,
        "tokens_in": response.tokens_in,
        "tokens_out": response.tokens_out,
    }


@dataclass
class RunRecord:
    """One run of one variant on one case."""

    file: str
    """The workflow file, relative to the rootdir, with '/' separators."""
    ab_test: str
    variant: str
    case: str
    run: int
    status: RunStatus
    metrics: dict[str, float] = field(default_factory=dict)
    checks: list[CheckResult] = field(default_factory=list)
    outputs: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    error_node: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    """Anything else worth keeping in the results (e.g. a judge's reasoning)."""
    file_sha256: str = ""
    """The workflow file as it was when this run was collected: the
    controller of an xdist session, which never collects, checks it."""

    def to_dict(self) -> dict[str, Any]:
        """The record as plain data (the containers are the record's own,
        not copies: read it, encode it, do not change it)."""
        return {
            "file": self.file,
            "ab_test": self.ab_test,
            "variant": self.variant,
            "case": self.case,
            "run": self.run,
            "status": self.status,
            "metrics": self.metrics,
            "checks": [check_to_dict(c) for c in self.checks],
            "outputs": self.outputs,
            "error": self.error,
            "error_node": self.error_node,
            "extra": self.extra,
            "file_sha256": self.file_sha256,
        }

    def to_json(self) -> str:
        """:meth:`to_dict` as compact JSON, encoded on the first call only."""
        text: str | None = self.__dict__.get("_json")
        if text is None:
            text = encode_json(self.to_dict())
            self.__dict__["_json"] = text
        return text

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunRecord:
        values = {key: value for key, value in data.items() if key in _FIELDS}
        values["checks"] = [check_from_dict(c) for c in values.get("checks", [])]
        return cls(**values)

    @classmethod
    def from_json(cls, text: str) -> RunRecord:
        """The record of a :meth:`to_json` text (which it keeps as its own)."""
        record = cls.from_dict(json.loads(text))
        record.__dict__["_json"] = str(text)
        return record

    @property
    def key(self) -> tuple[str, str, str, str, int]:
        return (self.file, self.ab_test, self.variant, self.case, self.run)

    def failed_checks(self) -> list[CheckResult]:
        return [c for c in self.checks if not c.passed]


_FIELDS = frozenset(f.name for f in fields(RunRecord))
_CHECK_FIELDS = frozenset(f.name for f in fields(CheckResult))


def check_to_dict(check: CheckResult) -> dict[str, Any]:
    return {
        "name": check.name,
        "type": check.type,
        "passed": check.passed,
        "score": check.score,
        "expected": check.expected,
        "actual": check.actual,
        "detail": check.detail,
        "scores": check.scores,
    }


def check_from_dict(data: dict[str, Any]) -> CheckResult:
    return CheckResult(**{key: value for key, value in data.items() if key in _CHECK_FIELDS})


def received_record(value: Any) -> RunRecord:
    """The record of a :data:`USER_PROPERTY` value: its JSON text (or a dict,
    from a plugin that re-serialised the report) read back."""
    if isinstance(value, str):
        return RunRecord.from_json(value)
    return RunRecord.from_dict(value)

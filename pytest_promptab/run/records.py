"""What one run (one pytest item) produced, as plain data.

A :class:`RunRecord` travels from the process that ran the item to the pytest
controller inside ``item.user_properties``; under pytest-xdist that means it
must survive execnet's serialisation, so :meth:`RunRecord.to_dict` holds only
dicts, lists, strings, numbers, booleans and None.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from ..checks.result import CheckResult

RunStatus = Literal["passed", "check_failed", "error"]

USER_PROPERTY = "promptab_run"
"""The ``user_properties`` key a run's record is shipped under."""

TRACE_KEY = "@trace"
"""The ``extra`` key of what an MLflow trace of the run needs: per node, in
order, its rendered messages, raw output and tokens (no node id can contain
``@``; latencies are the ``node.<id>.latency_ms`` metrics). Nothing in it
depends on the clock, so a replayed session's records equal the recorded ones."""


def trace_entry(node: str, messages: list[dict[str, str]], response: Any) -> dict[str, Any]:
    """One node's part of ``extra[TRACE_KEY]`` (``response``: a ProviderResponse)."""
    return {
        "node": node,
        "messages": [dict(m) for m in messages],
        "output": response.text,
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
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunRecord:
        data = dict(data)
        data["checks"] = [CheckResult(**c) for c in data.get("checks", [])]
        return cls(**data)

    @property
    def key(self) -> tuple[str, str, str, str, int]:
        return (self.file, self.ab_test, self.variant, self.case, self.run)

    def failed_checks(self) -> list[CheckResult]:
        return [c for c in self.checks if not c.passed]

"""Plain data the session hands between hooks and items: the options read
from pytest's command line and ini file, what one run item runs, and what one
gate item reports. No pytest, no heavy imports."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .analysis.summary import GateJudgement

__all__ = ["CACHE_MODES", "GateVerdict", "PromptabOptions", "RunJob"]

CACHE_MODES = ("off", "record", "replay", "auto")


@dataclass
class PromptabOptions:
    rootdir: Path
    concurrency: int = 8
    runs: int | None = None
    cache: str = "off"
    apply_best: bool = False
    block_exit_code: int = 10
    json_path: Path | None = None
    html_path: Path | None = None
    """``--promptab-html``: where the HTML report goes (none when not given)."""
    mlflow_uri: str | None = None
    mlflow_ini: str | None = None
    no_mlflow: bool = False
    mlflow_traces: int = 50
    verbose: int = 0
    no_history: bool = False
    compare: bool = False
    """``--promptab-compare`` (or implied by ``--promptab-compare-to``/``-fail``)."""
    compare_to: str | None = None
    compare_fail: list[tuple[str, Any]] = field(default_factory=list)
    """``(metric, Tolerance)`` of each ``--promptab-compare-fail``."""
    provider: str | None = None
    """``--promptab-provider``: a provider mapping (YAML flow) for every node."""
    registry_alias: str = "promptab-best"
    """``--promptab-registry-alias`` / ini ``promptab_registry_alias``: the alias apply-best points at what it registers."""
    run_uid: str | None = None
    """The pytest-xdist run's id (its workers share it), else None."""

    @property
    def results_path(self) -> Path:
        return self.json_path or self.rootdir / ".promptab" / "results.json"


@dataclass
class RunJob:
    """What one item runs."""

    display: str
    variant: str
    case_index: int
    run: int

    @property
    def key(self) -> tuple[str, str, int, int]:
        return (self.display, self.variant, self.case_index, self.run)


@dataclass
class GateVerdict:
    """What one gate item reports: a judgement's outcome (passed, warned,
    failed, xfailed) or skipped, with the message shown."""

    outcome: str
    message: str
    judgement: GateJudgement | None = None

    def properties(self) -> list[tuple[str, Any]]:
        """The user properties of the gate's report (``--junitxml``)."""
        j = self.judgement
        if j is None:
            return [("promptab_outcome", self.outcome), ("promptab_reason", self.message)]
        return [("promptab_gate", f"{j.action} {j.gate}"), ("promptab_value", j.value), ("promptab_outcome", j.outcome)]

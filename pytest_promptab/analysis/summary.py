"""The session's results, aggregated: what the table, the results file,
MLflow and apply-best all read.

Plain dataclasses built by :mod:`pytest_promptab.aggregate` at session end;
:meth:`SessionSummary.to_dict` is the shape of ``.promptab/results.json``, and
:meth:`SessionSummary.from_dict` reads it back (the summary crosses a pipe to
the MLflow logging process that way).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, is_dataclass
from typing import Any, Literal, TypeVar

from ..run.records import RunRecord

GateOutcome = Literal["passed", "warned", "failed", "xfailed"]

_T = TypeVar("_T")


def _known(cls: type[_T], data: dict[str, Any]) -> dict[str, Any]:
    """The items of ``data`` that are fields of ``cls`` (keys a newer or older
    version wrote, and this one does not know, are left out)."""
    names = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    return {key: value for key, value in data.items() if key in names}


@dataclass
class Comparison:
    """A challenger against the baseline on the objective."""

    variant: str
    metric: str
    """``pass_rate`` or a per-run metric such as ``score``; compared on its mean."""
    baseline_value: float | None
    value: float | None
    diff: float | None
    """``value - baseline_value``."""
    ci_low: float | None
    ci_high: float | None
    p_value: float | None
    p_adjusted: float | None
    """Holm-corrected over the challengers of the A/B test."""
    test: str
    significant: bool
    """``p_adjusted < alpha``."""
    better: bool
    """Significant and in the direction of the objective's goal."""
    ci_level: float = 0.95
    """The interval's confidence: ``1 - `` the level Holm tested this
    challenger at, so the interval excludes 0 exactly when ``significant``."""
    unit: str = "cases"
    """What one paired difference is: ``cases`` (run-means per case) or
    ``runs`` (a single case: runs paired by run number)."""
    units: int = 0
    """How many paired differences the test had."""
    sd: float | None = None
    """Sample standard deviation of the paired differences."""

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Comparison:
        return cls(**_known(cls, data))


@dataclass
class DesignNote:
    """What an A/B test's design can decide (SPEC 6): the unit of evidence,
    whether significance is reachable at all, and the power line."""

    unit: str
    """``cases`` or ``runs`` (a single case)."""
    cases: int
    runs: int
    """Runs per variant x case."""
    challengers: int
    units_needed: int
    """The fewest units (cases, or runs for a single case) with which the
    smallest Holm-adjusted p-value can fall below alpha."""
    decidable: bool
    detectable: float | None = None
    """The smallest difference on the objective detected with 80% power at
    alpha (paired t approximation, observed spread); None when not decidable
    or nothing was observed."""
    sd: float | None = None
    """The spread it used: RMS over challengers of the paired differences' sd."""

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DesignNote:
        return cls(**_known(cls, data))


@dataclass
class GateJudgement:
    gate: str
    """The gate's label, e.g. ``pass_rate>=0.8``."""
    metric: str
    action: str
    min: float | None
    max: float | None
    variant: str
    value: float | None
    met: bool
    outcome: GateOutcome
    nodeid: str
    message: str
    confidence: float | None = None
    """The gate's ``confidence:``: judged on the interval's far bound."""
    bound: float | None = None
    """That far bound (the lower one for ``min``, the upper one for ``max``)."""

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GateJudgement:
        return cls(**_known(cls, data))


@dataclass
class VariantSummary:
    name: str
    role: Literal["baseline", "challenger"]
    runs: int
    failed_runs: int
    aggregates: dict[str, dict[str, float]]
    """metric -> stat (n, mean, std, min, max, p50, p95, p99) -> value."""
    pass_rate: float | None
    pass_rate_ci: tuple[float, float] | None
    comparison: Comparison | None = None
    model: str | None = None
    prompts: dict[str, str] = field(default_factory=dict)
    system: dict[str, str] = field(default_factory=dict)
    settings: dict[str, dict[str, Any]] = field(default_factory=dict)
    provider: dict[str, Any] = field(default_factory=dict)
    winner: bool = False
    violated: list[str] = field(default_factory=list)
    """Labels of the FAIL / BLOCK_DEPLOY gates this variant violates."""
    case_means: dict[str, dict[str, float]] = field(default_factory=dict)
    """case -> metric -> mean over the case's completed runs."""
    case_runs: dict[str, int] = field(default_factory=dict)
    """case -> completed runs."""
    passed_runs: int = 0
    """Completed runs in which every check passed."""

    @property
    def completed_runs(self) -> int:
        return self.runs - self.failed_runs

    @property
    def error_rate(self) -> float | None:
        """The share of this variant's runs that FAILED (could not complete)."""
        return self.failed_runs / self.runs if self.runs else None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> VariantSummary:
        values = _known(cls, data)
        if values.get("pass_rate_ci") is not None:
            low, high = values["pass_rate_ci"]
            values["pass_rate_ci"] = (low, high)
        if values.get("comparison") is not None:
            values["comparison"] = Comparison.from_dict(values["comparison"])
        return cls(**values)


@dataclass
class ABTestSummary:
    file: str
    workflow: str
    name: str
    nodeid: str
    """``<file>::<ab_test name>``: the prefix of every item and gate id."""
    baseline: str
    objective: str
    goal: str
    alpha: float
    variants: list[VariantSummary]
    gates: list[GateJudgement] = field(default_factory=list)
    winner: str | None = None
    """The best variant; the baseline when no challenger won significantly."""
    winner_reason: str = ""
    complete: bool = True
    """False when runs are missing (deselected, ``-x``, interrupted)."""
    failed_runs: int = 0
    file_sha256: str = ""
    experiment: str = ""
    description: str = ""
    """The workflow's ``description`` (the MLflow experiment's description)."""
    apply_decision: str | None = None
    mlflow_run_id: str | None = None
    runs: list[RunRecord] = field(default_factory=list)
    max_error_rate: float = 0.05
    design: DesignNote | None = None
    """What the design can decide: the unit, cases, runs, power."""
    vs_reference: dict[str, Any] | None = None
    """The comparison with the reference session (SPEC 12), plain data made by
    :func:`pytest_promptab.analysis.regression.compare_abtests`."""
    compare_note: str | None = None
    """Why nothing was compared (e.g. no earlier accepted session)."""

    @property
    def has_significant_winner(self) -> bool:
        return self.winner is not None and self.winner != self.baseline

    def variant(self, name: str) -> VariantSummary:
        for v in self.variants:
            if v.name == name:
                return v
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        return plain(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ABTestSummary:
        values = _known(cls, data)
        values["variants"] = [VariantSummary.from_dict(v) for v in values.get("variants", [])]
        values["gates"] = [GateJudgement.from_dict(g) for g in values.get("gates", [])]
        values["runs"] = [RunRecord.from_dict(r) for r in values.get("runs", [])]
        if values.get("design") is not None:
            values["design"] = DesignNote.from_dict(values["design"])
        return cls(**values)


@dataclass
class SessionSummary:
    abtests: list[ABTestSummary] = field(default_factory=list)
    interrupted: bool = False
    results_path: str | None = None
    mlflow_uri: str | None = None
    mlflow_error: str | None = None
    tolerated_errors: int = 0
    """FAILED items (errored runs within ``max_error_rate``) that did not
    make the session exit 1: they were its only failures."""

    def to_dict(self) -> dict[str, Any]:
        return plain(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SessionSummary:
        """The inverse of :meth:`to_dict` (tuples come back as tuples)."""
        values = _known(cls, data)
        values["abtests"] = [ABTestSummary.from_dict(ab) for ab in values.get("abtests", [])]
        return cls(**values)


def plain(value: Any) -> Any:
    """Dataclasses as dicts, tuples as lists: JSON-ready data. Unlike
    ``dataclasses.asdict`` it copies nothing it need not (thousands of runs);
    a run record is its own :meth:`RunRecord.to_dict`."""
    if isinstance(value, RunRecord):
        return value.to_dict()
    if is_dataclass(value) and not isinstance(value, type):
        return {key: plain(item) for key, item in vars(value).items()}
    if isinstance(value, (list, tuple)):
        return [plain(item) for item in value]
    if isinstance(value, dict):
        return {key: plain(item) for key, item in value.items()}
    return value

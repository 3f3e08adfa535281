"""The file format's ``ab_test`` section: variants, the objective, gates,
regression gates (pydantic models, part of the one definition of the format
that :mod:`pytest_promptab.workflow.schema` assembles)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from .schema_base import LocatedValueError, StrictModel, num_text

GateAction = Literal["WARN", "FAIL", "BLOCK_DEPLOY"]


class VariantConfig(StrictModel):
    """A challenger: overrides of the baseline's prompts, per node id."""

    name: str = Field(min_length=1)
    description: str | None = None
    prompts: dict[str, str] = Field(default_factory=dict)
    settings: dict[str, dict[str, Any]] = Field(default_factory=dict)
    system: dict[str, str] = Field(default_factory=dict)
    provider: dict[str, Any] | None = None


class ObjectiveConfig(StrictModel):
    metric: str = "pass_rate"
    goal: Literal["max", "min"] = "max"

    @property
    def run_metric(self) -> str:
        """The per-run metric behind the objective (``pass_rate`` -> ``passed``)."""
        if self.metric == "pass_rate":
            return "passed"
        return self.metric[: -len(".mean")] if self.metric.endswith(".mean") else self.metric


class GateConfig(StrictModel):
    metric: str
    min: float | None = None
    max: float | None = None
    action: GateAction = "FAIL"
    name: str | None = None
    variants: list[str] | None = None
    confidence: float | None = None
    """Judge the interval's far bound at this confidence, not the estimate."""
    not_judged: str | None = None
    """Why this gate cannot be judged (e.g. ``no prices``): it is reported as
    a warning and never fails or blocks (set by file-format translations)."""

    @model_validator(mode="after")
    def _has_bound(self) -> GateConfig:
        if self.min is None and self.max is None:
            raise ValueError("a gate needs 'min', 'max' or both")
        if self.confidence is not None:
            if not 0.5 < self.confidence < 1:
                raise LocatedValueError(
                    f"gate confidence must be above 0.5 and below 1 (e.g. 0.95), got {self.confidence:g}",
                    ("confidence",),
                )
            if self.metric != "pass_rate" and not self.metric.endswith(".mean"):
                raise LocatedValueError(
                    f"gate confidence needs an interval: use it with pass_rate or a '<metric>.mean' gate, "
                    f"not {self.metric!r}",
                    ("confidence",),
                )
        return self

    @property
    def label(self) -> str:
        """``pass_rate>=0.8``, ``latency_ms.p95<=2000``, or the gate's name."""
        if self.name:
            return self.name
        parts = []
        if self.min is not None:
            parts.append(f"{self.metric}>={num_text(self.min)}")
        if self.max is not None:
            parts.append(f"{self.metric}<={num_text(self.max)}")
        return ",".join(parts)

    def split_metric(self) -> tuple[str, str]:
        """``latency_ms.p95`` -> (``latency_ms``, ``p95``); ``pass_rate`` -> (``pass_rate``, ``mean``)."""
        if self.metric == "pass_rate":
            return "pass_rate", "mean"
        base, _, stat = self.metric.rpartition(".")
        return base, stat


class RegressionConfig(StrictModel):
    """``{metric, max_drop | max_rise, action}``: a regression gate against the
    reference session (SPEC 12). ``max_drop`` for a metric where higher is
    better, ``max_rise`` where lower is; a number is absolute, ``N%`` relative."""

    metric: str
    max_drop: float | str | None = None
    max_rise: float | str | None = None
    action: GateAction = "FAIL"
    variants: list[str] | None = None

    @model_validator(mode="after")
    def _one_tolerance(self) -> RegressionConfig:
        from .regression_spec import parse_tolerance

        if (self.max_drop is None) == (self.max_rise is None):
            raise ValueError("a regression gate needs exactly one of 'max_drop' (higher is better) or 'max_rise' (lower is better)")
        key = "max_drop" if self.max_drop is not None else "max_rise"
        try:
            parse_tolerance(getattr(self, key))
        except ValueError as exc:
            raise LocatedValueError(str(exc), (key,)) from None
        return self

    @property
    def higher_is_better(self) -> bool:
        return self.max_drop is not None

    @property
    def tolerance_text(self) -> str:
        from .regression_spec import parse_tolerance

        return parse_tolerance(self.max_drop if self.max_drop is not None else self.max_rise).label

    @property
    def label(self) -> str:
        """``pass_rate:0.05`` (the item's parameter: ``<variant>:<label>``)."""
        return f"{self.metric}:{self.tolerance_text}"


class ABTestConfig(StrictModel):
    name: str = Field(min_length=1)
    description: str | None = None
    runs: int = Field(1, ge=1, le=100_000)
    baseline: str = Field("baseline", min_length=1)
    variants: list[VariantConfig] = Field(default_factory=list)
    objective: ObjectiveConfig = Field(default_factory=ObjectiveConfig)
    alpha: float = Field(0.05, gt=0, le=0.5)
    max_error_rate: float = Field(0.05, ge=0, le=1)
    """The share of a variant's runs that may FAIL (not complete) and still
    let apply-best write it, and not fail the session (see the README)."""
    gates: list[GateConfig] = Field(default_factory=list)
    regression: list[RegressionConfig] = Field(default_factory=list)
    """Regression gates against the reference session (SPEC 12)."""

    @model_validator(mode="after")
    def _unique_names(self) -> ABTestConfig:
        seen = {self.baseline}
        for index, variant in enumerate(self.variants):
            if variant.name in seen:
                what = "the baseline's name" if variant.name == self.baseline else "used twice"
                raise LocatedValueError(
                    f"variant name {variant.name!r} is {what}; variant names must be unique",
                    ("variants", index, "name"),
                )
            seen.add(variant.name)
        return self

    @property
    def variant_names(self) -> list[str]:
        return [self.baseline, *(v.name for v in self.variants)]

"""The workflow file format: pydantic models, the one definition of it.

The loader (:mod:`pytest_promptab.workflow.loader`) turns YAML into plain data with line
marks and validates it against :class:`WorkflowConfig`; everything after that
works on these frozen models. Cross-field rules that need the whole file (node
ids referenced by variants, metrics named by gates) live here too, as model
validators, so that an invalid file never reaches the engine.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import ConfigDict, Field, field_validator, model_validator

from ..textsafe import has_userinfo
from .abtest_schema import (  # noqa: F401 - part of the format
    ABTestConfig,
    GateAction,
    GateConfig,
    ObjectiveConfig,
    RegressionConfig,
    VariantConfig,
)
from .prompt_ref import (  # noqa: F401 - part of the format
    RegistryPrompt,
    ResolvedPrompt,
    registry_reference,
    registry_text,
)
from .schema_base import LocatedValueError, StrictModel, closest

RUN_STATS = ("n", "mean", "std", "min", "max", "p50", "p95", "p99")
"""The statistics computed for every metric of every variant."""

BASE_METRICS = (
    "latency_ms",
    "tokens_in",
    "tokens_out",
    "tokens_total",
    "cost_usd",
    "score",
    "passed",
)
"""Per-run metrics every workflow has; ``node.<id>.latency_ms`` and
``check.<name>`` come on top."""




class Pricing(StrictModel):
    """USD per million tokens."""

    input_per_mtok: float = Field(0.0, ge=0)
    output_per_mtok: float = Field(0.0, ge=0)


class RetryConfig(StrictModel):
    """How a provider retries transient failures (429, 5xx, timeouts)."""

    max_attempts: int = Field(5, ge=1, le=50)
    max_total_s: float = Field(120.0, gt=0)
    backoff_initial_s: float = Field(0.5, ge=0)
    backoff_max_s: float = Field(30.0, ge=0)


USERINFO_MESSAGE = (
    "base_url must not hold a user name or password (user:password@host): they would be sent "
    "in place of the API key, and shown wherever the URL is"
)
USERINFO_HINT = "remove them from the URL; put the key in an environment variable and name it with api_key_env"


def url_has_userinfo(url: str) -> bool:
    """True when ``url`` has a ``user[:password]@`` part before its host
    (:func:`pytest_promptab.textsafe.has_userinfo`, the rule that hides it too)."""
    return has_userinfo(url)


class ProviderConfig(StrictModel):
    """Where a node's prompt is sent."""

    type: str = "openai"
    model: str | None = None
    base_url: str | None = None
    api_key_env: str | None = None
    callable: str | None = None
    settings: dict[str, Any] = Field(default_factory=dict)
    pricing: Pricing | None = None
    timeout_s: float = Field(60.0, gt=0)
    """One attempt as a whole: connect, send, and the answer's last byte."""
    max_response_bytes: int = Field(10_000_000, ge=1)
    """A larger answer fails the run, without a retry."""
    max_concurrency: int | None = Field(None, ge=1)
    retry: RetryConfig = Field(default_factory=RetryConfig)
    options: dict[str, Any] = Field(default_factory=dict)
    """Free-form options for provider types registered by other plugins."""

    @field_validator("base_url")
    @classmethod
    def _no_userinfo(cls, value: str | None) -> str | None:
        if value is not None and url_has_userinfo(value):
            raise ValueError(USERINFO_MESSAGE)  # never the URL itself: it holds the password
        return value

    @model_validator(mode="after")
    def _python_needs_callable(self) -> ProviderConfig:
        if self.type == "python" and not self.callable:
            raise ValueError("a provider of type 'python' needs 'callable: path/to/file.py:function'")
        return self


END = "END"
"""The route target that ends the run."""


class RouteConfig(StrictModel):
    """One way on from a node: to ``to`` when ``when`` holds. ``when`` is a
    Jinja2 expression on the run's state (``category == "billing"``); a
    route without it is the default, taken when no other holds. A condition
    that cannot be evaluated on the state (a missing name, text compared
    with a number) does not hold."""

    when: str | None = None
    to: str = Field(min_length=1)
    """A node after this one in ``nodes``, or ``END``."""



class NodeConfig(StrictModel):
    """One prompt step of the workflow."""

    id: str = Field(min_length=1)
    prompt: str | RegistryPrompt
    """The prompt template, or ``{registry: "name@alias"}`` / ``{registry: "name/3"}``."""
    system: str | RegistryPrompt | None = None
    output: str | None = None
    settings: dict[str, Any] = Field(default_factory=dict)
    parse: Literal["text", "json"] = "text"
    provider: dict[str, Any] | None = None
    """Keys of ``provider`` to override for this node only."""
    outputs: list[str] | None = None
    """With ``parse: json``: each of these keys of the parsed object joins the
    state under its own name (configurable-agents' ``outputs:``); an answer
    without one of them is a parse failure."""
    metrics: list[str] = Field(default_factory=list)
    """State keys this node fills with a number, recorded as per-run metrics
    under their own names (configurable-agents' number-typed outputs)."""
    routes: list[RouteConfig] | None = None
    """Where the run goes after this node: the first route whose ``when``
    holds, else the default (the route without ``when``). Without routes,
    the next node in ``nodes`` (the last one ends the run)."""

    @field_validator("prompt", "system", mode="before")
    @classmethod
    def _text_or_reference(cls, value: Any, info: Any) -> Any:
        if isinstance(value, dict):
            return registry_reference(value)
        if value is not None and not isinstance(value, (str, RegistryPrompt)):
            raise ValueError(
                f"a node's {info.field_name} is text, or a registry reference "
                f'{{registry: "name@alias"}}, not {type(value).__name__}'
            )
        return value

    @property
    def prompt_text(self) -> str:
        """The prompt template: the file's text, or the registry's."""
        text = registry_text(self.prompt, "prompt")
        assert text is not None
        return text

    @property
    def system_text(self) -> str | None:
        return registry_text(self.system, "system")

    @property
    def registry_refs(self) -> dict[str, RegistryPrompt]:
        """``{"prompt": ref, "system": ref}`` for the parts that come from the registry."""
        return {key: value for key, value in (("prompt", self.prompt), ("system", self.system))
                if isinstance(value, RegistryPrompt)}

    @property
    def output_key(self) -> str:
        return self.output or self.id

    @property
    def state_keys(self) -> list[str]:
        """The state keys this node's output fills."""
        return list(self.outputs) if self.outputs else [self.output_key]


class CaseConfig(StrictModel):
    id: str = Field(min_length=1)
    inputs: dict[str, Any] = Field(default_factory=dict)
    expected: dict[str, Any] = Field(default_factory=dict)

    @field_validator("id", mode="before")
    @classmethod
    def _id_to_str(cls, value: Any) -> Any:
        return str(value) if isinstance(value, (int, float)) else value


class CheckConfig(StrictModel):
    """A check applied to every run; ``type`` is validated against the
    registry of check types when the file is loaded."""

    name: str | None = None
    type: str
    field: str | None = None
    value: Any = None
    min: float = 0.5
    weight: float = Field(1.0, ge=0)
    callable: str | None = None
    schema_: dict[str, Any] | None = Field(None, alias="schema")
    rubric: str | None = None
    provider: dict[str, Any] | None = None
    case_sensitive: bool = True

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class MlflowConfig(StrictModel):
    experiment: str | None = None
    tags: dict[str, str] = Field(default_factory=dict)


_ID_RE = re.compile(r"^[A-Za-z0-9_.\-]+$")


class WorkflowConfig(StrictModel):
    """A whole workflow file."""

    name: str = Field(min_length=1)
    description: str | None = None
    provider: ProviderConfig | None = None
    nodes: list[NodeConfig] = Field(min_length=1)
    cases: list[CaseConfig] | str | None = None
    inputs: dict[str, Any] | None = None
    checks: list[CheckConfig] = Field(default_factory=list)
    ab_test: ABTestConfig
    mlflow: MlflowConfig = Field(default_factory=MlflowConfig)

    @model_validator(mode="after")
    def _cross_references(self) -> WorkflowConfig:
        node_ids = [n.id for n in self.nodes]
        for index, node in enumerate(self.nodes):
            if node_ids.index(node.id) != index:
                raise LocatedValueError(f"node id {node.id!r} is used twice; node ids must be unique", ("nodes", index, "id"))
            if not _ID_RE.match(node.id):
                raise LocatedValueError(
                    f"node id {node.id!r} may only use letters, digits, '_', '.', '-'", ("nodes", index, "id")
                )
            if self.provider is None and node.provider is None:
                raise LocatedValueError(
                    "no provider for this node: add a top-level 'provider:' (or one on every node)", ("nodes", index)
                )
        for index, node in enumerate(self.nodes):
            _check_routes(node, index, node_ids)
        if self.cases is not None and self.inputs is not None:
            raise LocatedValueError("give either 'cases' or 'inputs', not both", ("inputs",))
        if isinstance(self.cases, list):
            ids = [c.id for c in self.cases]
            for index, case_id in enumerate(ids):
                if ids.index(case_id) != index:
                    raise LocatedValueError(
                        f"case id {case_id!r} is used twice; case ids must be unique", ("cases", index, "id")
                    )
        names = self.check_names()
        if any(n.parse == "json" for n in self.nodes) and "parse" in names:
            raise LocatedValueError(
                "check name 'parse' is taken: a workflow with a 'parse: json' node gets a check 'parse' "
                "(failed when an answer is not JSON); give this check another 'name:'",
                ("checks", names.index("parse")),
            )
        for index, name in enumerate(names):
            if names.index(name) != index:
                raise LocatedValueError(
                    f"check name {name!r} is used twice; give each check its own 'name:'", ("checks", index)
                )
        for v_index, variant in enumerate(self.ab_test.variants):
            for kind in ("prompts", "settings", "system"):
                for node_id in getattr(variant, kind):
                    if node_id not in node_ids:
                        close = closest(node_id, node_ids)
                        raise LocatedValueError(
                            f"variant {variant.name!r} overrides {kind} of unknown node {node_id!r}{close}; "
                            f"nodes are: {', '.join(node_ids)}",
                            ("ab_test", "variants", v_index, kind, node_id),
                        )
        known = set(self.run_metric_names())
        for g_index, gate in enumerate(self.ab_test.gates):
            try:
                _check_metric_name(gate.metric, known, what="gate")
            except ValueError as exc:
                raise LocatedValueError(str(exc), ("ab_test", "gates", g_index, "metric")) from None
            for name in gate.variants or ():
                if name not in self.ab_test.variant_names:
                    raise LocatedValueError(
                        f"gate on {gate.metric!r} names unknown variant {name!r}; "
                        f"variants are: {', '.join(self.ab_test.variant_names)}",
                        ("ab_test", "gates", g_index, "variants"),
                    )
        for r_index, reg in enumerate(self.ab_test.regression):
            if reg.metric != "error_rate":
                try:
                    _check_metric_name(reg.metric, known, what="regression")
                except ValueError as exc:
                    raise LocatedValueError(str(exc), ("ab_test", "regression", r_index, "metric")) from None
            for name in reg.variants or ():
                if name not in self.ab_test.variant_names:
                    raise LocatedValueError(
                        f"regression gate on {reg.metric!r} names unknown variant {name!r}; "
                        f"variants are: {', '.join(self.ab_test.variant_names)}",
                        ("ab_test", "regression", r_index, "variants"),
                    )
        objective = self.ab_test.objective
        if objective.metric != "pass_rate" and objective.run_metric not in known:
            raise LocatedValueError(
                f"objective metric {objective.metric!r} is not a metric of this workflow; "
                f"use pass_rate or one of: {', '.join(sorted(known))}",
                ("ab_test", "objective", "metric"),
            )
        return self

    def check_names(self) -> list[str]:
        return [c.name or c.type for c in self.checks]

    def run_metric_names(self) -> list[str]:
        """Every per-run metric this workflow records."""
        names = list(BASE_METRICS)
        names += [f"node.{n.id}.latency_ms" for n in self.nodes]
        names += [m for n in self.nodes for m in n.metrics]
        names += [f"check.{name}" for name in self.check_names()]
        if any(n.parse == "json" for n in self.nodes):
            names.append("check.parse")
        return names


def _check_routes(node: NodeConfig, index: int, node_ids: list[str]) -> None:
    """Routes go forward (to a node after this one, or END: so every run
    ends), and exactly one of them is the default."""
    if node.routes is None:
        return
    defaults = [r for r, route in enumerate(node.routes) if route.when is None]
    if len(defaults) != 1:
        raise LocatedValueError(
            f"node {node.id!r}: routes need exactly one default (a route without 'when'), "
            f"taken when no condition holds; found {len(defaults)}",
            ("nodes", index, "routes", defaults[1] if defaults else 0),
        )
    for r, route in enumerate(node.routes):
        if route.to == END:
            continue
        if route.to not in node_ids:
            raise LocatedValueError(
                f"node {node.id!r}: route to unknown node {route.to!r}{closest(route.to, node_ids + [END])}; "
                f"nodes are: {', '.join(node_ids)} (or END)",
                ("nodes", index, "routes", r, "to"),
            )
        if node_ids.index(route.to) <= index:
            raise LocatedValueError(
                f"node {node.id!r}: route to {route.to!r} goes back; routes go to a node after this one "
                "(or END), so loops are not supported",
                ("nodes", index, "routes", r, "to"),
            )


def _check_metric_name(metric: str, known: set[str], *, what: str) -> None:
    if metric == "pass_rate":
        return
    base, _, stat = metric.rpartition(".")
    if not base or stat not in RUN_STATS:
        raise ValueError(
            f"{what} metric {metric!r} must be 'pass_rate' or '<metric>.<stat>' "
            f"with stat one of {', '.join(RUN_STATS)} (e.g. latency_ms.p95)"
        )
    if base not in known and not any(base.startswith(k + ".") for k in known if k.startswith("check.")):
        raise ValueError(
            f"{what} metric {metric!r}: unknown metric {base!r}{closest(base, sorted(known))}; "
            f"known: {', '.join(sorted(known))}"
        )



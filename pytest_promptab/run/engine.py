"""The workflow engine: one run of one variant on one case.

Nodes run in order; each node's output joins the template scope of the nodes
after it. A node with ``routes`` chooses the node the run goes on to (always
a later one, or the end) from the state; the nodes it passes over do not
run, and a check on their output fails, saying so. Then the checks are
evaluated and the run's metrics computed. The engine never raises for a
broken run: it returns a :class:`RunRecord` with status ``error`` that says
which node failed and why. It is thread-safe: the runner calls it from a
pool of threads.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from pathlib import Path
from typing import Any, Callable

from ..checks.registry import CheckContext, CheckRegistry
from ..errors import CheckError, OutputParseError, PromptabError
from ..providers.base import Provider, ProviderRequest
from ..providers.registry import ProviderRegistry
from ..workflow.loader import LoadedWorkflow
from ..workflow.schema import END, CaseConfig, CheckConfig, ProviderConfig
from ..workflow.templates import TemplateRenderer
from ..workflow.variants import ResolvedNode, merge, resolve_nodes
from .outputs import for_record
from .records import TRACE_KEY, CheckResult, RunRecord, trace_entry

ProviderWrapper = Callable[[Callable[[], Provider], ProviderConfig], Provider]
"""Wraps a provider factory (record/replay); gets the factory so that replay
never builds the live provider."""

PARSE_CHECK = "parse"
"""The check every run of a workflow with a ``parse: json`` node gets: failed
when an answer is not JSON (the prompt's failure, counted in ``pass_rate``)."""

_FENCE = re.compile(r"^\s*```(?:json)?\s*\n(.*?)\n\s*```\s*$", re.DOTALL)


def run_seed(case_id: str, run: int, node_id: str) -> int:
    """Stable per (case, run, node), equal across variants."""
    digest = hashlib.sha256(f"{case_id}\x00{run}\x00{node_id}".encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


class Engine:
    def __init__(
        self,
        providers: ProviderRegistry,
        checks: CheckRegistry,
        renderer: TemplateRenderer | None = None,
        wrap_provider: ProviderWrapper | None = None,
    ) -> None:
        self.providers = providers
        self.checks = checks
        self.renderer = renderer or TemplateRenderer()
        self._wrap = wrap_provider
        self._nodes: dict[tuple[str, str], list[ResolvedNode]] = {}
        self._wrapped: dict[tuple[str, str], Provider] = {}
        self._lock = threading.Lock()

    def nodes(self, loaded: LoadedWorkflow, variant: str) -> list[ResolvedNode]:
        key = (str(loaded.path), variant)
        nodes = self._nodes.get(key)
        if nodes is None:
            nodes = resolve_nodes(loaded, variant)
            with self._lock:
                self._nodes[key] = nodes
        return nodes

    def provider(self, config: ProviderConfig, base_dir: Path) -> Provider:
        if self._wrap is None:
            return self.providers.get(config, base_dir)
        key = (config.model_dump_json(), str(base_dir))
        with self._lock:
            wrapped = self._wrapped.get(key)
            if wrapped is None:
                wrapped = self._wrap(lambda: self.providers.get(config, base_dir), config)
                self._wrapped[key] = wrapped
        return wrapped

    def run(self, loaded: LoadedWorkflow, display: str, variant: str, case: CaseConfig, run: int) -> RunRecord:
        ab = loaded.config.ab_test
        record = RunRecord(
            file=display, ab_test=ab.name, variant=variant, case=case.id, run=run, status="passed",
            file_sha256=loaded.sha256,
        )
        scope: dict[str, Any] = {**case.inputs, "expected": case.expected, "variant": variant, "run": run}
        metrics = record.metrics
        tokens_in = tokens_out = 0
        cost = 0.0
        have_tokens = have_cost = False
        current: str | None = None
        ran: list[ResolvedNode] = []
        parse_failure: CheckResult | None = None
        try:
            nodes = self.nodes(loaded, variant)
            # built before the clock starts: the first run must not pay for imports and clients
            providers = [self.provider(node.provider, loaded.base_dir) for node in nodes]
            queued = 0.0  # time spent waiting for a max_concurrency slot is not latency
            started = time.perf_counter()
            position = 0
            while position < len(nodes):
                node, provider = nodes[position], providers[position]
                current = node.id
                ran.append(node)
                messages = []
                if node.system:
                    system = self.renderer.render(
                        node.system, scope, where=f"node {node.id!r} system", path=display, line=node.system_line
                    )
                    messages.append({"role": "system", "content": system})
                prompt = self.renderer.render(
                    node.prompt, scope, where=f"node {node.id!r} prompt", path=display, line=node.prompt_line
                )
                messages.append({"role": "user", "content": prompt})
                request = ProviderRequest(
                    messages=messages,
                    model=node.provider.model,
                    settings=node.settings,
                    node_id=node.id,
                    case_id=case.id,
                    run=run,
                    seed=run_seed(case.id, run, node.id),
                    variant=variant,
                    workflow=loaded.config.name,
                )
                t0 = time.perf_counter()
                response = provider.complete(request)
                queued += response.queued_s
                metrics[f"node.{node.id}.latency_ms"] = (time.perf_counter() - t0 - response.queued_s) * 1000.0
                if response.tokens_in is not None or response.tokens_out is not None:
                    have_tokens = True
                    tokens_in += response.tokens_in or 0
                    tokens_out += response.tokens_out or 0
                if response.cost_usd is not None:
                    have_cost = True
                    cost += response.cost_usd
                if response.extra:
                    record.extra[node.id] = response.extra
                record.extra.setdefault(TRACE_KEY, []).append(
                    trace_entry(node.id, messages, response, for_record(response.text))
                )
                output: Any = response.text
                try:
                    if node.parse == "json":
                        output = parse_json_output(response.text, node.id, display, node.prompt_line)
                    filled = state_values(node, output)
                except OutputParseError as exc:
                    # the prompt's failure, not the run's: a failed check, and no later node runs
                    record.outputs[node.output_key] = response.text
                    parse_failure = CheckResult(
                        name=PARSE_CHECK, type="parse", passed=False, score=0.0, expected="JSON",
                        actual=_shown(response.text), detail=exc.message,
                    )  # fmt: skip
                    break
                for key, value in filled.items():
                    scope[key] = value
                    record.outputs[key] = for_record(value)  # the checks see it whole
                    if key in node.metrics:
                        metrics[key] = float(value)
                position = self._next(node, position, nodes, scope)
            metrics["latency_ms"] = (time.perf_counter() - started - queued) * 1000.0
            current = None
            if parse_failure is not None:
                record.checks = [parse_failure]
            else:
                record.checks = self._run_checks(loaded, display, nodes, ran, scope, case.id)
                if any(node.parse == "json" for node in nodes):
                    record.checks.append(
                        CheckResult(name=PARSE_CHECK, type="parse", passed=True, score=1.0, expected="JSON")
                    )
        except PromptabError as exc:
            record.status = "error"
            record.error_node = current
            where = f"node {current!r}: " if current and not exc.message.startswith("node ") else ""
            record.error = where + str(exc)
            return record
        except Exception as exc:  # a bug in a provider or check plugin: still a failed run, not a crash
            record.status = "error"
            record.error_node = current
            where = f"node {current!r}: " if current else "checks: "
            record.error = f"{where}unexpected {type(exc).__name__}: {_first_line(exc)}"
            return record
        if have_tokens:
            metrics["tokens_in"] = float(tokens_in)
            metrics["tokens_out"] = float(tokens_out)
            metrics["tokens_total"] = float(tokens_in + tokens_out)
        if have_cost:
            metrics["cost_usd"] = cost
        total_weight = sum(c.weight for c in loaded.config.checks)
        for result in record.checks:
            metrics[f"check.{result.name}"] = result.score
            for sub, value in result.scores.items():
                metrics[f"check.{result.name}.{sub}"] = float(value)
        configured = [r for r in record.checks if r.type != "parse"]
        if parse_failure is not None:
            metrics["score"] = 0.0  # no answer in the asked format: nothing to score
        elif configured and total_weight > 0:
            weights = {c.name or c.type: c.weight for c in loaded.config.checks}
            metrics["score"] = sum(r.score * weights[r.name] for r in configured) / total_weight
        else:
            metrics["score"] = 1.0 if all(r.passed for r in record.checks) else 0.0
        passed = all(r.passed for r in record.checks)
        metrics["passed"] = 1.0 if passed else 0.0
        record.status = "passed" if passed else "check_failed"
        return record

    def _next(self, node: ResolvedNode, position: int, nodes: list[ResolvedNode], scope: dict[str, Any]) -> int:
        """The position of the node the run goes on to (``len(nodes)``: the
        end): the first route whose condition holds, else the default route;
        without routes, the next node."""
        if not node.routes:
            return position + 1
        target = next((to for when, to in node.routes if when is None), END)
        for when, to in node.routes:
            if when is not None and self.renderer.holds(when, scope):
                target = to
                break
        if target == END:
            return len(nodes)
        return next(i for i, n in enumerate(nodes) if n.id == target)

    def _run_checks(
        self,
        loaded: LoadedWorkflow,
        display: str,
        nodes: list[ResolvedNode],
        ran: list[ResolvedNode],
        scope: dict[str, Any],
        case_id: str,
    ) -> list[CheckResult]:
        results = []
        last = ran[-1].output_key
        unreached: dict[str, str] = {}  # output key -> the node that would have filled it
        if len(ran) < len(nodes):  # routes passed over some nodes
            produced = {key for node in ran for key in node.state_keys}
            ran_ids = {node.id for node in ran}
            unreached = {key: node.id for node in nodes if node.id not in ran_ids for key in node.state_keys
                         if key not in produced}  # fmt: skip
        for index, check in enumerate(loaded.config.checks):
            name = check.name or check.type
            line = loaded.line("checks", index)
            field = check.field or last
            if field.partition(".")[0] in unreached:
                # the routes took another way: that node's output is not there to check
                node_id = unreached[field.partition(".")[0]]
                results.append(CheckResult(
                    name=name, type=check.type, passed=False, score=0.0, actual=None,
                    detail=f"field {field!r} has no value in this run: node {node_id!r} did not run "
                           f"(the routes went {' -> '.join(n.id for n in ran)})",
                ))  # fmt: skip
                continue
            actual = lookup(scope, field)
            if actual is _MISSING:
                raise CheckError(
                    f"check {name!r}: field {field!r} is not in the run's state",
                    path=display,
                    line=line,
                    hint=f"fields are: {', '.join(sorted(scope))}",
                )
            value = self._render_value(check, scope, display, line)
            judge = self._judge(loaded, check, scope, case_id, display, line) if check.type == "llm_judge" else None
            ctx = CheckContext(actual=actual, value=value, scope=scope, base_dir=loaded.base_dir, judge=judge)
            try:
                results.append(self.checks.evaluate(check, ctx))
            except PromptabError as exc:
                if exc.path is None:
                    exc.path, exc.line = display, line
                if not exc.message.startswith("check "):
                    exc.message = f"check {name!r}: {exc.message}"
                raise
        return results

    def _judge(
        self,
        loaded: LoadedWorkflow,
        check: CheckConfig,
        scope: dict[str, Any],
        case_id: str,
        display: str,
        line: int | None,
    ) -> Callable[[Any], tuple[float, str]]:
        """A grader bound to the check's provider (the workflow's, with the
        check's ``provider:`` keys over it) and its rendered rubric."""
        from ..checks.judge import grade

        name = check.name or check.type
        rubric = self.renderer.render(check.rubric or "", scope, where=f"check {name!r} rubric", path=display, line=line)
        base = loaded.config.provider.model_dump(exclude_unset=True) if loaded.config.provider else {}
        config = ProviderConfig.model_validate(merge(base, check.provider or {}))
        provider = self.provider(config, loaded.base_dir)
        node_id = f"llm_judge:{name}"
        run = int(scope["run"])
        request_base = {
            "model": config.model,
            "settings": dict(config.settings),
            "node_id": node_id,
            "case_id": case_id,
            "run": run,
            "seed": run_seed(case_id, run, node_id),
            "variant": str(scope.get("variant", "")),
            "workflow": loaded.config.name,
        }
        return lambda output: grade(rubric, output, provider, request_base)

    def _render_value(self, check: CheckConfig, scope: dict[str, Any], display: str, line: int | None) -> Any:
        where = f"check {(check.name or check.type)!r} value"

        def render(value: Any) -> Any:
            if isinstance(value, str):
                return self.renderer.render(value, scope, where=where, path=display, line=line)
            if isinstance(value, list):
                return [render(v) for v in value]
            return value

        return render(check.value)


_MISSING = object()


def lookup(scope: dict[str, Any], field: str) -> Any:
    """``field`` in the scope; a dotted name reaches into parsed JSON outputs."""
    if field in scope:
        return scope[field]
    head, _, rest = field.partition(".")
    value: Any = scope.get(head, _MISSING)
    for part in rest.split(".") if rest else []:
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return _MISSING
    return value


def parse_json_output(text: str, node_id: str, display: str, line: int | None) -> Any:
    """A ``parse: json`` node's output; a single ```json fence is allowed."""
    match = _FENCE.match(text)
    body = match.group(1) if match else text
    try:
        return json.loads(body)
    except json.JSONDecodeError as exc:
        shown = text if len(text) <= 120 else text[:117] + "..."
        raise OutputParseError(
            f"node {node_id!r}: output is not JSON ({exc.msg} at char {exc.pos}): {shown!r}",
            path=display,
            line=line,
            hint="ask for JSON only in the prompt, or use 'parse: text'",
        ) from None


def state_values(node: ResolvedNode, output: Any) -> dict[str, Any]:
    """What a node's output puts into the state: the whole output under its
    key, or (``outputs``) each named key of the parsed object; a ``metrics``
    key must hold a number. Raises OutputParseError when the answer does not
    fit (the prompt's failure)."""
    if not node.outputs:
        values = {node.output_key: output}
    elif not isinstance(output, dict):
        raise OutputParseError(f"node {node.id!r}: the answer is not a JSON object with {', '.join(node.outputs)}")
    else:
        missing = [key for key in node.outputs if key not in output]
        if missing:
            raise OutputParseError(f"node {node.id!r}: the answer has no {', '.join(missing)}")
        values = {key: output[key] for key in node.outputs}
    for key in node.metrics:
        value = values.get(key)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise OutputParseError(f"node {node.id!r}: {key} is not a number ({_shown(repr(value))})")
    return values


def _shown(text: str) -> str:
    return text if len(text) <= 120 else text[:117] + "..."


def _first_line(exc: BaseException) -> str:
    """The first line of an unexpected error, without URLs (they may name hosts)."""
    text = next((line.strip() for line in str(exc).splitlines() if line.strip()), "")
    return re.sub(r"\b[a-z][a-z0-9+.-]*://\S+", "<url>", text)[:300]

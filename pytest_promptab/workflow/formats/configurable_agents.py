"""configurable-agents workflow files (``schema_version``, ``flow``, ``state``,
``nodes``, ``edges``, ``config.ab_test``), translated onto promptab's
:class:`~pytest_promptab.workflow.schema.WorkflowConfig` with the line marks
kept, so that every later error names the original file's lines.

What maps (README, "configurable-agents files"): linear edges from START to
END and ``routes`` (:mod:`.ca_routes`); ``{state.x}`` / ``{x}`` / ``{a.b}`` templates and node ``inputs:``;
``state.fields`` defaults and ``webhook.default_inputs`` as the single case;
``output_schema`` as OpenAI structured output parsed into ``outputs``, with
number-typed outputs as per-run metrics; ``config.llm`` / a node's ``llm``
onto the OpenAI-compatible provider; ``config.ab_test`` variants, run count
and experiment; gates in both dialects. A top-level ``promptab:`` mapping
(which configurable-agents ignores) adds promptab's own keys. What does not
map (``loop``, ``parallel``, ``tools``, ``code``, ``memory``, a route back) is
a located error, so nothing runs wrongly.
"""

from __future__ import annotations

import os
import re
from typing import Any

from ..schema import BASE_METRICS
from . import ca_parts, ca_routes, ca_templates
from .ca_parts import Loc, Located

PROMPTAB_KEYS = ("cases", "checks", "objective", "pricing", "alpha", "regression", "provider", "max_error_rate")
"""Keys a top-level ``promptab:`` mapping may hold."""
_CONTENT = "<content>"  # marked_yaml.CONTENT
_LINE = re.compile(r"^(schema_version|flow)[ \t]*:", re.MULTILINE)
_AB_LINE = re.compile(r"^[ \t]*ab_test[ \t]*:", re.MULTILINE)


def is_ca_data(data: Any) -> bool:
    """The top level has ``schema_version``, ``flow``, ``nodes`` and
    ``config.ab_test``, and no ``ab_test`` of its own."""
    return (isinstance(data, dict) and "ab_test" not in data
            and all(k in data for k in ("schema_version", "flow", "nodes"))
            and isinstance(data.get("config"), dict) and "ab_test" in data["config"])


def looks_like_ca_text(text: str) -> bool:
    """For a file that does not parse: top-level ``schema_version:`` and
    ``flow:`` lines and an ``ab_test:`` line at any indentation."""
    found = {m.group(1) for m in _LINE.finditer(text)}
    return found == {"schema_version", "flow"} and bool(_AB_LINE.search(text))


class _Marks:
    def __init__(self, old: dict[Loc, Any]) -> None:
        self.old, self.new = old, {}  # type: dict[Loc, Any], dict[Loc, Any]

    def put(self, new: Loc, old: Loc) -> None:
        """Every mark at or below ``old`` again at or below ``new``."""
        n = len(old)
        for loc, line in self.old.items():
            if loc[:n] == old:
                self.new[new + loc[n:]] = line

    def at(self, new: Loc, old: Loc) -> None:
        """``new`` marked at the line of ``old`` (or of its nearest parent)."""
        line = self.line(old)
        if line is not None:
            self.new[new] = line

    def line(self, loc: Loc) -> int | None:
        while loc:
            if loc in self.old:
                value = self.old[loc]
                return int(value)
            loc = loc[:-1]
        return None


class Translation:
    """The promptab data, its marks, and what was accepted but not used."""

    def __init__(self, data: dict[str, Any], marks: dict[Loc, Any], notes: list[str],
                 source_prompts: dict[str, dict[str, str]], case_defaults: dict[str, Any] | None = None) -> None:
        self.data, self.marks, self.notes = data, marks, notes
        self.source_prompts = source_prompts
        """Per variant name: node id -> the prompt as the file writes it."""
        self.case_defaults = case_defaults or {}
        """For the cases of a ``promptab: {cases: FILE}``: the input of every
        field a case does not give (state defaults, ``webhook.default_inputs``)."""


def translate(data: dict[str, Any], marks: dict[Loc, Any],
              env: os._Environ[str] | dict[str, str] = os.environ) -> Translation:
    """Raises :class:`Located` (message and path in the original file)."""
    m = _Marks(marks)
    notes: list[str] = []
    config = data.get("config") or {}
    promptab = data.get("promptab") or {}
    if not isinstance(promptab, dict):
        raise Located("promptab: must be a mapping of promptab keys: " + ", ".join(PROMPTAB_KEYS), ("promptab",))
    for key in promptab:
        if key not in PROMPTAB_KEYS:
            raise Located(f"unknown key {key!r} in promptab; valid keys: {', '.join(PROMPTAB_KEYS)}",
                          ("promptab", key))
    if data.get("memory") is not None:
        raise Located("memory is not supported by promptab (runs must be independent samples)", ("memory",),
                      "remove 'memory:' for the A/B test")
    for key in data:
        if key not in ("schema_version", "flow", "state", "nodes", "edges", "config", "promptab"):
            notes.append(f"{key}: ignored (configurable-agents ignores it too)" if key != "optimization"
                         else "optimization (DSPy): ignored")
    flow = data.get("flow") or {}
    if not isinstance(flow, dict) or not str(flow.get("name") or "").strip():
        raise Located("flow.name is required", ("flow",))
    out: dict[str, Any] = {"name": str(flow["name"]).strip()}
    m.put(("name",), ("flow", "name"))
    if flow.get("description"):
        out["description"] = str(flow["description"])
    notes += [f"flow.{k}: ignored" for k in flow if k not in ("name", "description", "version")]

    state = _state(data.get("state"))
    file_nodes = data.get("nodes")
    if not isinstance(file_nodes, list) or not file_nodes:
        raise Located("nodes must be a non-empty list", ("nodes",))
    by_id = {}
    for index, node in enumerate(file_nodes):
        if not isinstance(node, dict) or not isinstance(node.get("id"), str):
            raise Located("each node needs 'id:'", ("nodes", index))
        by_id[node["id"]] = index
    fields = data["state"]["fields"]
    graph = ca_routes.flow(data.get("edges"), by_id, {str(k): str(v["type"]) for k, v in fields.items()})
    order = graph.order

    global_llm = ca_parts.llm_keys(config.get("llm"), ("config", "llm"))
    provider = promptab.get("provider") or ca_parts.provider_for(global_llm, env)
    m.put(("provider",), ("promptab", "provider") if "provider" in promptab else ("config", "llm"))
    if "pricing" in promptab:
        provider = {**provider, "pricing": promptab["pricing"]}
        m.put(("provider", "pricing"), ("promptab", "pricing"))
    out["provider"] = provider
    priced = "pricing" in provider

    nodes: list[dict[str, Any]] = []
    metrics: set[str] = set()
    for new_index, index in enumerate(order):
        node = _node(file_nodes[index], index, state, global_llm, env, "provider" in promptab)
        metrics |= set(node.get("metrics", ()))
        nodes.append(node)
        m.put(("nodes", new_index), ("nodes", index))
        if index in graph.routes:
            node["routes"] = [route for route, _ in graph.routes[index]]
            for r_index, (route, where) in enumerate(graph.routes[index]):
                m.at(("nodes", new_index, "routes", r_index), where)
                m.at(("nodes", new_index, "routes", r_index, "to"), where)
                m.at(("nodes", new_index, "routes", r_index, "when"),
                     where[:-1] + ("condition", "logic") if "routes" in where else where)
        m.put(("nodes", new_index, "settings"), ("nodes", index, "output_schema"))
        m.put(("nodes", new_index, "provider"), ("nodes", index, "llm"))
    out["nodes"] = nodes

    defaults = _inputs(out, m, data, promptab, state, notes)
    if "checks" in promptab:
        out["checks"] = promptab["checks"]
        m.put(("checks",), ("promptab", "checks"))

    ab, source = _ab_test(config.get("ab_test"), file_nodes, state, out, m, notes, global_llm)
    gate_list, gate_notes = ca_parts.gates(config.get("gates"), metrics, priced, ("config", "gates"))
    notes += gate_notes
    ab["gates"] = [item for _, item in gate_list]
    for g_index, (where, _) in enumerate(gate_list):
        m.put(("ab_test", "gates", g_index), where)
    objective = promptab.get("objective")
    if objective is not None:
        if isinstance(objective, dict) and isinstance(objective.get("metric"), str):
            metric = objective["metric"]
            if "." not in metric:
                metric = ca_parts.gate_metric(metric, metrics, ("promptab", "objective", "metric"))
            objective = {**objective, "metric": metric}
        ab["objective"] = objective
        m.put(("ab_test", "objective"), ("promptab", "objective"))
    elif priced:
        ab["objective"] = {"metric": "cost_usd.mean", "goal": "min"}
    for key in ("alpha", "max_error_rate", "regression"):
        if key in promptab:
            ab[key] = promptab[key]
            m.put(("ab_test", key), ("promptab", key))
    out["ab_test"] = ab
    for key in config:
        if key not in ("llm", "ab_test", "gates"):
            notes.append(f"config.{key}: ignored")
    return Translation(out, m.new, notes, source, defaults if isinstance(out.get("cases"), str) else None)


def _state(raw: Any) -> dict[str, Any]:
    """State field -> default (None when it has none)."""
    fields = raw.get("fields") if isinstance(raw, dict) else None
    if not isinstance(fields, dict) or not fields:
        raise Located("state.fields must be a non-empty mapping of field: {type, default}", ("state",))
    out: dict[str, Any] = {}
    for name, spec in fields.items():
        if not isinstance(spec, dict) or "type" not in spec:
            raise Located(f"state field {name!r} needs 'type:'", ("state", "fields", name))
        ca_parts.json_type(str(spec["type"]), ("state", "fields", name, "type"))
        if spec.get("required") and spec.get("default") is not None:
            raise Located("Cannot have both required=true and a default value", ("state", "fields", name))
        out[str(name)] = spec.get("default")
    return out


def _node(node: dict[str, Any], index: int, state: dict[str, Any], global_llm: dict[str, Any],
          env: Any, fixed_provider: bool) -> dict[str, Any]:
    loc = ("nodes", index)
    for key, what in (("tools", "tools"), ("code", "code nodes"), ("memory", "memory")):
        if node.get(key) is not None:
            raise Located(f"{what} are not supported by promptab" if key != "memory" else
                          "memory is not supported by promptab (runs must be independent samples)", loc + (key,))
    for key in ("prompt", "outputs", "output_schema"):
        if key not in node:
            raise Located(f"node {node['id']!r} needs {key!r}", loc)
    outputs = node["outputs"]
    if not isinstance(outputs, list) or not outputs or not all(isinstance(o, str) for o in outputs):
        raise Located("outputs must be a non-empty list of state field names", loc + ("outputs",))
    settings, types = ca_parts.output_schema(node["id"], node["output_schema"], outputs, loc + ("output_schema",))
    out: dict[str, Any] = {"id": node["id"], "prompt": _prompt(node, node["prompt"], state, loc + ("prompt",))}
    if settings:
        out.update(parse="json", outputs=outputs, settings=settings)
    else:
        out["output"] = outputs[0]
        if types[outputs[0]].split("[")[0] != "str":
            out["parse"] = "json"
    numbers = [name for name in outputs if types[name] in ca_parts.NUMBER_TYPES]
    for name in numbers:
        if name in BASE_METRICS:
            raise Located(f"output {name!r} would be a per-run metric, but {name!r} is a built-in metric "
                          f"({', '.join(BASE_METRICS)})", loc + ("outputs", outputs.index(name)),
                          "rename the output (and its state field)")
    if numbers:
        out["metrics"] = numbers
    if node.get("llm") is not None and not fixed_provider:
        own = ca_parts.llm_keys(node["llm"], loc + ("llm",))
        out["provider"] = ca_parts.provider_for({**global_llm, **{k: v for k, v in own.items() if v is not None}}, env)
    return out


def _prompt(node: dict[str, Any], text: Any, state: dict[str, Any], loc: Loc) -> str:
    if not isinstance(text, str):
        raise Located("prompt must be text", loc)
    inputs = node.get("inputs") or {}
    if not isinstance(inputs, dict):
        raise Located("inputs must be a mapping {local_name: state reference}", ("nodes",) + loc[1:2] + ("inputs",))
    try:
        return ca_templates.translate(text, {str(k): str(v) for k, v in inputs.items()}, set(state))
    except ca_templates.UnknownName as exc:
        raise Located(str(exc), loc + (_CONTENT, exc.line_offset)) from None


def _inputs(out: dict[str, Any], m: _Marks, data: dict[str, Any], promptab: dict[str, Any],
            state: dict[str, Any], notes: list[str]) -> dict[str, Any]:
    """Sets the cases (or the single case's inputs); returns the defaults of
    every input (state defaults, ``webhook.default_inputs``, ``config.ab_test.inputs``)."""
    webhook = data.get("webhook")
    given = webhook.get("default_inputs") if isinstance(webhook, dict) else None
    ab = (data.get("config") or {}).get("ab_test")
    ab_inputs = ab.get("inputs") if isinstance(ab, dict) else None
    base = {**state, **(given if isinstance(given, dict) else {}), **(ab_inputs if isinstance(ab_inputs, dict) else {})}
    if "cases" in promptab:
        cases = promptab["cases"]
        if isinstance(cases, list):
            cases = [{**c, "inputs": {**base, **(c.get("inputs") or {})}} if isinstance(c, dict) else c for c in cases]
        out["cases"] = cases
        m.put(("cases",), ("promptab", "cases"))
        return base
    out["inputs"] = base
    m.put(("inputs",), ("webhook", "default_inputs") if given is not None else ("state", "fields"))
    return base


def _override_provider(global_llm: dict[str, Any], llm: dict[str, Any]) -> dict[str, Any]:
    """The provider keys a variant's ``config.llm.*`` overrides change."""
    full = ca_parts.provider_for({**global_llm, **llm})
    out: dict[str, Any] = {}
    if "model" in llm:
        out["model"] = full["model"]
    if llm.keys() & {"provider", "api_base"}:
        out.update(model=full["model"], base_url=full["base_url"], api_key_env=full["api_key_env"])
    settings = {k: llm[k] for k in ("temperature", "max_tokens") if k in llm}
    if settings:
        out["settings"] = settings
    return out


def _ab_test(raw: Any, file_nodes: list[Any], state: dict[str, Any], out: dict[str, Any], m: _Marks,
             notes: list[str], global_llm: dict[str, Any]) -> tuple[dict[str, Any], dict[str, dict[str, str]]]:
    loc = ("config", "ab_test")
    if not isinstance(raw, dict):
        raise Located("config.ab_test must be a mapping (experiment, variants, run_count)", loc)
    m.put(("ab_test",), loc)
    name = str(raw.get("experiment") or out["name"])
    ab: dict[str, Any] = {"name": name, "runs": raw.get("run_count", 3)}
    m.put(("ab_test", "runs"), loc + ("run_count",))
    out["mlflow"] = {"experiment": name}
    notes += [f"config.ab_test.{k}: ignored" for k in raw if k not in ("experiment", "variants", "run_count", "inputs")]
    variants = []
    source: dict[str, dict[str, str]] = {}
    by_id = {n["id"]: n for n in file_nodes}
    for index, variant in enumerate(raw.get("variants") or []):
        vloc = loc + ("variants", index)
        if not isinstance(variant, dict) or "name" not in variant or "prompt" not in variant:
            raise Located("each variant needs 'name:' and 'prompt:'", vloc)
        node_id = variant.get("node_id") or file_nodes[0]["id"]
        if node_id not in by_id:
            close = ca_templates.difflib.get_close_matches(str(node_id), list(by_id), n=1)
            raise Located(f"variant node_id {node_id!r} is not a node" + (f" (did you mean {close[0]!r}?)" if close else ""),
                          vloc + ("node_id",))
        prompt = _prompt(by_id[node_id], variant["prompt"], state, vloc + ("prompt",))
        item: dict[str, Any] = {"name": str(variant["name"]), "prompts": {node_id: prompt}}
        overrides = variant.get("config_overrides") or {}
        llm: dict[str, Any] = {}
        for key, value in overrides.items() if isinstance(overrides, dict) else ():
            parts = str(key).split(".")
            if parts[:2] != ["config", "llm"] or len(parts) != 3 or parts[2] not in ca_parts.LLM_KEYS:
                raise Located(f"config_overrides key {key!r} is not supported: promptab applies "
                              f"config.llm.<{'|'.join(ca_parts.LLM_KEYS)}> only", vloc + ("config_overrides", key))
            llm[parts[2]] = value
        if llm:
            item["provider"] = _override_provider(global_llm, llm)
        variants.append(item)
        source[item["name"]] = {node_id: variant["prompt"]}
        m.put(("ab_test", "variants", index), vloc)
        m.put(("ab_test", "variants", index, "prompts", node_id), vloc + ("prompt",))
    ab["variants"] = variants
    return ab, source


def source_change(text: str, variant: str) -> tuple[dict[str, str], dict[str, Any]] | None:
    """For apply-best: what the file must say for its baseline to become
    ``variant``: node id -> the variant's prompt as the file writes it
    (``{state.x}`` templates, not their translation), and the variant's
    ``config_overrides`` as nested keys from the top level
    (``config.llm.temperature: 0.1`` -> ``{"config": {"llm": {"temperature": 0.1}}}``),
    which is where configurable-agents applies them. None when ``text`` is
    not a configurable-agents file; the baseline is ``({}, {})``."""
    from ..marked_yaml import parse_yaml

    data, _ = parse_yaml(text, "<file>")
    if not is_ca_data(data):
        return None
    ab = data["config"]["ab_test"] or {}
    nodes = data.get("nodes") or []
    for item in ab.get("variants") or []:
        if isinstance(item, dict) and str(item.get("name")) == variant:
            keys: dict[str, Any] = {}
            for dotted, value in (item.get("config_overrides") or {}).items():
                *parents, last = str(dotted).split(".")
                here = keys
                for part in parents:
                    here = here.setdefault(part, {})
                here[last] = value
            return {item.get("node_id") or nodes[0]["id"]: item["prompt"]}, keys
    return {}, {}

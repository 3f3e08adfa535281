"""configurable-agents pieces that map one to one: providers (``config.llm``,
a node's ``llm``), output schemas (OpenAI structured output) and gates (both
dialects: the schema's ``{gates: [...], on_fail}`` and the published
example's list with ``threshold`` / ``min_threshold`` / ``action``).

Each function raises :class:`Located` with the path below the original file
at which the problem is, so the loader can name its line.
"""

from __future__ import annotations

import os
import re
from typing import Any

Loc = tuple[Any, ...]

VENDORS: dict[str, tuple[str, tuple[str, ...]]] = {
    "openai": ("https://api.openai.com/v1", ("OPENAI_API_KEY",)),
    "anthropic": ("https://api.anthropic.com/v1", ("ANTHROPIC_API_KEY",)),
    "google": ("https://generativelanguage.googleapis.com/v1beta/openai", ("GOOGLE_API_KEY", "GEMINI_API_KEY")),
    "ollama": ("http://localhost:11434/v1", ("OLLAMA_API_KEY",)),
}
"""Each vendor's OpenAI-compatible endpoint and its usual key variables."""
DEFAULT_VENDOR = "google"
DEFAULT_MODEL = "gemini-2.5-flash-lite"
"""configurable-agents' runtime defaults (``llm/provider.py``, ``llm/google.py``)."""
LLM_KEYS = ("provider", "model", "temperature", "max_tokens", "api_base")


class Located(Exception):
    def __init__(self, message: str, loc: Loc, hint: str | None = None) -> None:
        super().__init__(message)
        self.message, self.loc, self.hint = message, loc, hint


def llm_keys(llm: Any, loc: Loc) -> dict[str, Any]:
    if llm is None:
        return {}
    if not isinstance(llm, dict):
        raise Located("llm must be a mapping (provider, model, temperature, max_tokens, api_base)", loc)
    for key in llm:
        if key not in LLM_KEYS:
            raise Located(f"unknown key {key!r} in llm; valid keys: {', '.join(LLM_KEYS)}", loc + (key,))
    vendor = llm.get("provider")
    if vendor is not None and vendor not in VENDORS:
        raise Located(f"llm provider {vendor!r} is not one of {', '.join(VENDORS)}", loc + ("provider",))
    return dict(llm)


def provider_for(llm: dict[str, Any], env: os._Environ[str] | dict[str, str] = os.environ) -> dict[str, Any]:
    """A promptab ``provider:`` mapping for a merged configurable-agents ``llm``."""
    vendor = llm.get("provider") or DEFAULT_VENDOR
    url, keys = VENDORS[vendor]
    key_env = next((k for k in keys if env.get(k)), keys[0])
    out: dict[str, Any] = {"type": "openai", "model": llm.get("model") or DEFAULT_MODEL,
                           "base_url": llm.get("api_base") or url, "api_key_env": key_env}
    settings = {k: llm[k] for k in ("temperature", "max_tokens") if llm.get(k) is not None}
    if settings:
        out["settings"] = settings
    return out


_JSON_TYPES = {"str": "string", "int": "integer", "float": "number", "bool": "boolean",
               "list": "array", "dict": "object", "object": "object"}
NUMBER_TYPES = {"int", "float"}


def json_type(type_name: str, loc: Loc) -> dict[str, Any]:
    base = type_name.strip().split("[", 1)[0].strip()
    if base not in _JSON_TYPES:
        raise Located(f"unknown type {type_name!r}; types are: {', '.join(_JSON_TYPES)}, list[T], dict[K, V]", loc)
    return {"type": _JSON_TYPES[base]}


def output_schema(node_id: str, schema: Any, outputs: list[str], loc: Loc) -> tuple[dict[str, Any], dict[str, str]]:
    """``response_format`` for the node, and each output's type name."""
    if not isinstance(schema, dict) or "type" not in schema:
        raise Located("output_schema needs 'type:' (str, int, float, bool, object, ...)", loc)
    kind = str(schema["type"])
    if kind != "object":
        if len(outputs) != 1:
            raise Located(f"an output_schema of type {kind!r} fills one output; outputs lists {len(outputs)}",
                          loc + ("type",))
        json_type(kind, loc + ("type",))
        return {}, {outputs[0]: kind}
    fields = schema.get("fields")
    if not isinstance(fields, list) or not fields:
        raise Located("an output_schema of type 'object' needs a non-empty 'fields:' list", loc)
    props: dict[str, Any] = {}
    types: dict[str, str] = {}
    for index, item in enumerate(fields):
        if not isinstance(item, dict) or "name" not in item or "type" not in item:
            raise Located("each output_schema field needs 'name:' and 'type:'", loc + ("fields", index))
        prop = json_type(str(item["type"]), loc + ("fields", index, "type"))
        if item.get("description"):
            prop["description"] = str(item["description"])
        props[str(item["name"])] = prop
        types[str(item["name"])] = str(item["type"]).strip()
    for index, name in enumerate(outputs):
        if name not in props:
            raise Located(f"output {name!r} is not a field of output_schema; fields: {', '.join(props)}",
                          ("outputs", index))
    response_format = {"type": "json_schema", "json_schema": {
        "name": re.sub(r"[^A-Za-z0-9_-]", "_", node_id)[:64] or "output", "strict": True,
        "schema": {"type": "object", "properties": props, "required": list(props), "additionalProperties": False}}}
    return {"response_format": response_format}, types


_STATS = {"avg": "mean", "mean": "mean", "min": "min", "max": "max", "p50": "p50", "p95": "p95", "p99": "p99",
          "std": "std"}
_METRICS = {"cost_usd": "cost_usd", "duration_ms": "latency_ms", "total_tokens": "tokens_total",
            "tokens": "tokens_total", "latency_ms": "latency_ms"}
_ACTIONS = {"warn": "WARN", "fail": "FAIL", "block_deploy": "BLOCK_DEPLOY"}


def gate_metric(metric: str, outputs: set[str], loc: Loc) -> str:
    """``cost_usd_avg``, ``avg_cost_usd``, ``quality_score_p95``,
    ``duration_ms_p99``, ``success_rate`` -> promptab's ``cost_usd.mean``,
    ``quality_score.p95``, ``latency_ms.p99``, ``pass_rate``."""
    if metric in ("success_rate", "pass_rate"):
        return "pass_rate"
    base, stat = metric, "mean"
    prefix = re.match(r"^(avg|min|max|p50|p95|p99)_(.+)$", metric)
    suffix = re.match(r"^(.+)_(avg|mean|min|max|p50|p95|p99|std)$", metric)
    if suffix:
        base, stat = suffix.group(1), _STATS[suffix.group(2)]
    elif prefix:
        base, stat = prefix.group(2), _STATS[prefix.group(1)]
    name = _METRICS.get(base, base)
    if name not in _METRICS.values() and name not in outputs:
        known = sorted(set(_METRICS) | outputs)
        raise Located(f"gate metric {metric!r}: {base!r} is not a metric of this workflow; "
                      f"known: {', '.join(known)} (a number-typed node output is one)", loc)
    return f"{name}.{stat}"


def gates(raw: Any, outputs: set[str], priced: bool, loc: Loc) -> tuple[list[tuple[Loc, dict[str, Any]]], list[str]]:
    """promptab gates for ``config.gates`` in either dialect, and notes
    (disabled gates, cost gates not judged)."""
    if raw is None:
        return [], []
    notes: list[str] = []
    out: list[tuple[Loc, dict[str, Any]]] = []
    if isinstance(raw, dict):  # the schema's dialect
        action_raw = raw.get("on_fail", "warn")
        action = _ACTIONS.get(str(action_raw).lower(), "WARN")
        items = raw.get("gates") or []
        base_loc = loc + ("gates",)
        if not isinstance(items, list):
            raise Located("config.gates.gates must be a list of {metric, max, min}", base_loc)
        entries = [(i, g, action, g.get("max") if isinstance(g, dict) else None) for i, g in enumerate(items)]
    elif isinstance(raw, list):  # the published example's dialect
        base_loc = loc
        entries = []
        for i, g in enumerate(raw):
            if isinstance(g, dict) and g.get("enabled", True) is False:
                notes.append(f"gate {g.get('name') or g.get('metric')!r} is disabled (enabled: false)")
                continue
            act = str(g.get("action", "WARN")) if isinstance(g, dict) else "WARN"
            entries.append((i, g, _ACTIONS.get(act.lower(), "WARN"),
                            (g.get("threshold", g.get("max")) if isinstance(g, dict) else None)))
    else:
        raise Located("config.gates must be {gates: [...], on_fail: ...} or a list of gates", loc)
    for index, gate, action, maximum in entries:
        where = base_loc + (index,)
        if not isinstance(gate, dict) or not isinstance(gate.get("metric"), str):
            raise Located("a gate needs 'metric:'", where)
        minimum = gate.get("min_threshold", gate.get("min"))
        if minimum is None and maximum is None:
            raise Located("a gate needs a bound: threshold / max, or min_threshold / min", where)
        metric = gate_metric(gate["metric"], outputs, where + ("metric",))
        name = str(gate.get("name") or gate["metric"])
        item: dict[str, Any] = {"metric": metric, "action": action, "name": name}
        if metric.startswith("cost_usd.") and not priced:
            notes.append(f"gate {name!r}: not judged: no prices (add promptab: {{pricing: ...}}); a warning only")
            item.update(action="WARN", not_judged="no prices (add 'promptab: {pricing: ...}')")
        if minimum is not None:
            item["min"] = minimum
        if maximum is not None:
            item["max"] = maximum
        out.append((where, item))
    return out, notes

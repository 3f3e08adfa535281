"""What apply-best puts in MLflow's prompt registry, as plain data: which
nodes changed, each version's model config, the alias, the prompt names and
the tags of the run whose prompts were applied. No mlflow import (the client
calls are :func:`pytest_promptab.tracking.log.register_prompts`)."""

from __future__ import annotations

import json
import re
from typing import Any

from ..analysis.summary import ABTestSummary, VariantSummary
from .layout import MAX_TAG_VALUE, cap, flatten


def prompt_name(name: str) -> str:
    """A valid MLflow prompt name: letters, digits, ``_ - .`` only."""
    return re.sub(r"[^A-Za-z0-9_.\-]", "_", name).strip(".") or "prompt"


def applied_tags(linked_prompts: str | None, versions: list[tuple[str, str]], uris: list[str]) -> dict[str, str]:
    """Tags marking the run whose prompts were applied: ``linked_prompts`` (the
    run's ``mlflow.linkedPrompts`` JSON) plus the (name, version) registered."""
    try:
        linked = json.loads(linked_prompts or "[]")
    except ValueError:
        linked = []
    linked = linked if isinstance(linked, list) else []
    for name, version in versions:
        entry = {"name": name, "version": version}
        if entry not in linked:
            linked.append(entry)
    return {
        "mlflow.linkedPrompts": json.dumps(linked),
        "promptab.applied": "true",
        "promptab.applied_prompts": cap(" ".join(uris), MAX_TAG_VALUE),
    }


PROMPT_ALIAS = "promptab-best"
"""The registry alias apply-best moves to the version it registers."""
_CONFIG_FIELDS = {"temperature": "temperature", "max_tokens": "max_tokens", "top_p": "top_p", "top_k": "top_k",
                  "frequency_penalty": "frequency_penalty", "presence_penalty": "presence_penalty"}  # fmt: skip


def changed_nodes(ab: ABTestSummary, variant: str) -> list[str]:
    """The nodes whose prompt, system message or settings ``variant``
    changed from the baseline: the ones apply-best writes and registers."""
    v, base = ab.variant(variant), ab.variant(ab.baseline)
    return [
        node
        for node in v.prompts
        if v.prompts[node] != base.prompts.get(node)
        or v.system.get(node) != base.system.get(node)
        or v.settings.get(node) != base.settings.get(node)
    ]


def prompt_model_config(v: VariantSummary, node: str) -> dict[str, Any]:
    """A node's model, settings (no secrets) and system message as an MLflow
    prompt version's ``model_config``: known settings in their fields, the
    rest and the system message in ``extra_params``."""
    settings: dict[str, Any] = {}
    flatten("", v.settings.get(node, {}), settings)
    config: dict[str, Any] = {"provider": v.provider.get("type"), "model_name": v.model}
    extra: dict[str, Any] = {}
    for name, text in settings.items():
        name = name.lstrip(".")
        try:
            value = json.loads(text)
        except ValueError:
            value = text
        if name in _CONFIG_FIELDS and isinstance(value, (int, float)) and not isinstance(value, bool):
            config[_CONFIG_FIELDS[name]] = value
        elif name == "stop" and isinstance(value, list) and all(isinstance(s, str) for s in value):
            config["stop_sequences"] = value
        else:
            extra[name] = value
    if node in v.system:
        extra["system"] = v.system[node]
    config["extra_params"] = extra
    return {k: value for k, value in config.items() if value not in (None, {})}

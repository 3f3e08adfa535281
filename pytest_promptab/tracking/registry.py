"""What apply-best puts in MLflow's prompt registry, as plain data: which
nodes changed, each version's model config, the alias, the prompt names and
the tags of the run whose prompts were applied. No mlflow import (the client
calls are :func:`pytest_promptab.tracking.log.register_prompts`)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from ..analysis.summary import ABTestSummary, VariantSummary
from .layout import MAX_TAG_VALUE, cap, flatten


def prompt_name(name: str) -> str:
    """A valid MLflow prompt name: letters, digits, ``_ - .`` only."""
    return re.sub(r"[^A-Za-z0-9_.\-]", "_", name).strip(".") or "prompt"


def linked_prompts(linked_prompts: str | None, versions: list[tuple[str, str]]) -> str:
    """A run's ``mlflow.linkedPrompts`` JSON (``linked_prompts``, as it is)
    with the (name, version) pairs added: what MLflow's run page lists as the
    run's prompts."""
    try:
        linked = json.loads(linked_prompts or "[]")
    except ValueError:
        linked = []
    linked = linked if isinstance(linked, list) else []
    for name, version in versions:
        entry = {"name": name, "version": version}
        if entry not in linked:
            linked.append(entry)
    return json.dumps(linked)


def applied_tags(linked: str | None, versions: list[tuple[str, str]], uris: list[str]) -> dict[str, str]:
    """Tags marking the run whose prompts were applied: ``linked`` (the
    run's ``mlflow.linkedPrompts`` JSON) plus the (name, version) registered."""
    return {
        "mlflow.linkedPrompts": linked_prompts(linked, versions),
        "promptab.applied": "true",
        "promptab.applied_prompts": cap(" ".join(uris), MAX_TAG_VALUE),
    }


PROMPT_ALIAS = "promptab-best"
"""The registry alias apply-best moves to the version it registers (the
default of ini ``promptab_registry_alias`` / ``--promptab-registry-alias``)."""
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


@dataclass
class Registration:
    """One prompt version apply-best registers: ``text`` under ``name`` (None:
    the default ``<workflow>.<ab test>.<node>``), with ``model_config``, also
    moving ``aliases`` (a ``name@alias`` reference's own alias) to it.
    ``reference``: the ``{registry: ...}`` it came from, if any."""

    key: str
    text: str
    name: str | None = None
    model_config: dict[str, Any] | None = None
    aliases: list[str] = field(default_factory=list)
    reference: str | None = None


def registrations(ab: ABTestSummary, variant: str, refs: dict[str, dict[str, str]]) -> list[Registration]:
    """What apply-best registers for the applied ``variant``: each changed
    node's prompt (with its model config); for a node whose prompt comes from
    the registry (``refs[node]["prompt"]``), under that prompt's name, moving
    its alias; a changed system text that comes from the registry
    (``refs[node]["system"]``) as a version of its own prompt."""
    v, base = ab.variant(variant), ab.variant(ab.baseline)
    out: list[Registration] = []
    for node in changed_nodes(ab, variant):
        node_refs = refs.get(node, {})
        ref = node_refs.get("prompt")
        name, alias = _ref_parts(ref) if ref else (None, None)
        out.append(Registration(node, v.prompts[node], name, prompt_model_config(v, node),
                                [alias] if alias else [], ref))
        system_ref = node_refs.get("system")
        if system_ref and v.system.get(node) is not None and v.system.get(node) != base.system.get(node):
            name, alias = _ref_parts(system_ref)
            out.append(Registration(f"{node}.system", v.system[node], name, None, [alias] if alias else [], system_ref))
    return out


def _ref_parts(reference: str) -> tuple[str, str | None]:
    """``name@alias`` -> (name, alias); ``name/3`` -> (name, None)."""
    name, sep, alias = reference.partition("@")
    return (name, alias) if sep else (reference.rpartition("/")[0], None)


def registry_notes(done: list[tuple[Registration, str]], alias: str) -> list[str]:
    """What the terminal says about registry references after registering
    (``done``: each registration with its ``prompts:/name/<version>`` URI):
    an alias moved, or a pinned version the file still names."""
    notes = []
    for item, uri in done:
        if item.reference is None:
            continue
        version = uri.rsplit("/", 1)[-1]
        if item.aliases:
            notes.append(f"{item.name}@{item.aliases[0]} now points at version {version}")
        else:
            notes.append(f"the file still pins {item.reference}: write {item.name}/{version} "
                         f"(or {item.name}@{alias}) to run the winner")
    return notes

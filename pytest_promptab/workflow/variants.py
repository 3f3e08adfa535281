"""Applying a variant to the workflow: the effective nodes a run executes.

A variant overrides prompts, settings and system messages per node id, and may
override provider keys; the baseline's config is never mutated (the models
are frozen, and every merge builds new objects).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError
from .loader import LoadedWorkflow
from .marked_yaml import CONTENT
from .schema import ProviderConfig, VariantConfig


@dataclass(frozen=True)
class ResolvedNode:
    id: str
    prompt: str
    system: str | None
    settings: dict[str, Any]
    provider: ProviderConfig
    parse: str
    output_key: str
    prompt_line: int | None
    system_line: int | None
    outputs: tuple[str, ...] = ()
    """State keys filled from the parsed JSON object (empty: ``output_key``)."""
    metrics: tuple[str, ...] = ()
    """State keys recorded as per-run metrics."""
    routes: tuple[tuple[str | None, str], ...] = ()
    """(condition or None for the default, target node id or END), in the
    file's order; empty: on to the next node."""

    @property
    def state_keys(self) -> tuple[str, ...]:
        return self.outputs or (self.output_key,)


def find_variant(loaded: LoadedWorkflow, name: str) -> VariantConfig | None:
    """The challenger called ``name``, or None for the baseline."""
    ab = loaded.config.ab_test
    if name == ab.baseline:
        return None
    for variant in ab.variants:
        if variant.name == name:
            return variant
    raise ConfigError(f"no variant {name!r} in A/B test {ab.name!r}", path=str(loaded.path))


def resolve_nodes(loaded: LoadedWorkflow, variant_name: str) -> list[ResolvedNode]:
    config = loaded.config
    variant = find_variant(loaded, variant_name)
    v_index = config.ab_test.variants.index(variant) if variant else -1
    base_provider = config.provider.model_dump(exclude_unset=True) if config.provider else {}
    if variant and variant.provider:
        base_provider = merge(base_provider, variant.provider)
    nodes = []
    for index, node in enumerate(config.nodes):
        provider_data = merge(base_provider, node.provider or {})
        try:
            provider = ProviderConfig.model_validate(provider_data)
        except Exception as exc:
            raise ConfigError(f"node {node.id!r}: invalid provider: {exc}", path=str(loaded.path),
                              line=loaded.line("nodes", index, "provider")) from None
        settings = merge(provider.settings, node.settings)
        prompt, prompt_line = node.prompt_text, loaded.line("nodes", index, "prompt", CONTENT)
        system, system_line = node.system_text, loaded.line("nodes", index, "system", CONTENT)
        refs = node.registry_refs  # a registry text's errors point at its `registry:` line
        if "prompt" in refs:
            prompt_line = loaded.line("nodes", index, "prompt", "registry")
        if "system" in refs:
            system_line = loaded.line("nodes", index, "system", "registry")
        if variant:
            if node.id in variant.prompts:
                prompt = variant.prompts[node.id]
                prompt_line = loaded.line("ab_test", "variants", v_index, "prompts", node.id, CONTENT)
            if node.id in variant.system:
                system = variant.system[node.id]
                system_line = loaded.line("ab_test", "variants", v_index, "system", node.id, CONTENT)
            settings = merge(settings, variant.settings.get(node.id, {}))
        nodes.append(
            ResolvedNode(
                id=node.id,
                prompt=prompt,
                system=system,
                settings=settings,
                provider=provider,
                parse=node.parse,
                output_key=node.output_key,
                prompt_line=prompt_line,
                system_line=system_line,
                outputs=tuple(node.outputs or ()),
                metrics=tuple(node.metrics),
                routes=tuple((r.when, r.to) for r in node.routes or ()),
            )
        )
    return nodes


def merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """A new dict: ``override`` over ``base``, nested mappings merged key by key."""
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out

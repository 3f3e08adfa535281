"""The provider interface: a request of rendered messages in, text out.

Providers are synchronous and must be safe to call from several threads at
once: the runner calls them from a thread pool (``--promptab-concurrency``).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Protocol, runtime_checkable

from ..workflow.schema import Pricing


@dataclass(frozen=True)
class ProviderRequest:
    """Everything a provider needs for one call, already rendered."""

    messages: list[dict[str, str]]
    """OpenAI-style ``[{"role": "system"|"user", "content": "..."}]``."""
    model: str | None
    settings: dict[str, Any]
    node_id: str
    case_id: str
    run: int
    seed: int
    """Stable for (case, run, node): the same across variants, so variants
    see common random numbers, and different across runs."""
    variant: str = ""
    workflow: str = ""

    @property
    def prompt(self) -> str:
        """The last user message: what simple callables usually want."""
        for message in reversed(self.messages):
            if message.get("role") == "user":
                return message.get("content", "")
        return ""

    @property
    def system(self) -> str | None:
        for message in self.messages:
            if message.get("role") == "system":
                return message.get("content")
        return None


@dataclass
class ProviderResponse:
    text: str
    tokens_in: int | None = None
    tokens_out: int | None = None
    cost_usd: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    """Kept in the run's results (must be plain JSON data, no secrets)."""
    queued_s: float = 0.0
    """Seconds the call waited for a free slot of the provider's
    ``max_concurrency`` before it was sent: client-side queueing, which the
    engine leaves out of latency. Never recorded in the cache."""

    def with_cost(self, pricing: Pricing | None) -> ProviderResponse:
        """Fill ``cost_usd`` from token usage and pricing when not given."""
        if self.cost_usd is not None or pricing is None:
            return self
        if self.tokens_in is None and self.tokens_out is None:
            return self
        cost = ((self.tokens_in or 0) * pricing.input_per_mtok + (self.tokens_out or 0) * pricing.output_per_mtok) / 1e6
        return replace(self, cost_usd=cost)


@runtime_checkable
class Provider(Protocol):
    def complete(self, request: ProviderRequest) -> ProviderResponse:
        """Send one request; raise :class:`~pytest_promptab.errors.ProviderError`
        when it fails for good."""
        ...

    def close(self) -> None:
        """Release connections; called once at session end."""
        ...

"""Provider types by name, and one live provider per distinct config.

Built-in types are ``python`` and ``openai``; other plugins add theirs through
the ``pytest_promptab_register_providers`` hook. Factories are imported lazily
so that e.g. httpx is imported only when an ``openai`` provider is used.

A config with ``max_concurrency: N`` gets its live provider wrapped in a
:class:`ConcurrencyLimitedProvider`: at most N of its calls are in flight,
whatever ``--promptab-concurrency`` says. The limit belongs to the endpoint
(:func:`limit_key`: type, ``base_url``, ``api_key_env``, ``callable``,
``options``), so nodes and variants that only change the model or the
settings of that provider share the same N slots.
"""

from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Callable, Hashable

from ..errors import ConfigError
from ..workflow.schema import USERINFO_HINT, ProviderConfig, url_has_userinfo
from .base import Provider, ProviderRequest, ProviderResponse

ProviderFactory = Callable[[ProviderConfig, Path], Provider]
"""Builds a provider from its config and the workflow file's folder."""


def _python_factory(config: ProviderConfig, base_dir: Path) -> Provider:
    from .python import PythonProvider

    return PythonProvider(config, base_dir)


def _openai_factory(config: ProviderConfig, base_dir: Path) -> Provider:
    from .openai import BASE_URL_ENV, OpenAIProvider

    if not config.base_url and url_has_userinfo(os.environ.get(BASE_URL_ENV) or ""):
        # the file's own base_url is refused at load; the variable is only seen here (never shown)
        raise ConfigError(
            f"${BASE_URL_ENV} must not hold a user name or password (user:password@host): they would be "
            "sent in place of the API key",
            hint=USERINFO_HINT,
        )
    return OpenAIProvider(config, base_dir)


def limit_key(config: ProviderConfig, base_dir: Path) -> Hashable:
    """What shares one ``max_concurrency`` budget: the same type, server,
    credentials variable, callable (and its folder) and plugin options, with
    the same limit. Model and settings are left out: they do not change which
    server takes the load."""
    return (
        config.type,
        (config.base_url or "").strip().rstrip("/"),
        config.api_key_env or "",
        config.callable or "",
        str(base_dir) if config.callable else "",
        json.dumps(config.options, sort_keys=True, default=str),
        config.max_concurrency,
    )


class ConcurrencyLimitedProvider:
    """Lets at most ``limit`` calls through to ``inner`` at a time (a
    semaphore shared with the other configs of the same :func:`limit_key`).

    The time a call waits for a slot is returned in
    :attr:`ProviderResponse.queued_s`, so that it is not counted as the
    provider's latency. Retries happen inside ``inner``: a call keeps its
    slot while it backs off, so a rate-limited server is not hit harder.
    """

    def __init__(self, inner: Provider, semaphore: threading.Semaphore, limit: int) -> None:
        self.inner = inner
        self.limit = limit
        self._semaphore = semaphore

    def complete(self, request: ProviderRequest) -> ProviderResponse:
        asked = time.perf_counter()
        with self._semaphore:
            waited = time.perf_counter() - asked
            response = self.inner.complete(request)
        if waited <= 0:
            return response
        return replace(response, queued_s=response.queued_s + waited)

    def close(self) -> None:
        self.inner.close()

    def __repr__(self) -> str:
        return f"ConcurrencyLimitedProvider({self.inner!r}, limit={self.limit})"


_IDENTITY_CACHE_SIZE = 256


class ProviderRegistry:
    def __init__(self) -> None:
        self._factories: dict[str, ProviderFactory] = {
            "python": _python_factory,
            "openai": _openai_factory,
        }
        self._live: dict[tuple[str, str], Provider] = {}
        self._by_identity: dict[int, tuple[ProviderConfig, Path, Provider]] = {}
        """id(config) -> (config, base_dir, provider): spares the JSON dump of
        the config on every call for the config objects the engine reuses."""
        self._semaphores: dict[Hashable, threading.Semaphore] = {}
        self._lock = threading.Lock()

    def register(self, type_name: str, factory: ProviderFactory) -> None:
        self._factories[type_name] = factory

    @property
    def types(self) -> list[str]:
        return sorted(self._factories)

    def get(self, config: ProviderConfig, base_dir: Path) -> Provider:
        """The live provider for ``config`` (created once, then shared),
        limited to ``config.max_concurrency`` calls in flight when set."""
        known = self._by_identity.get(id(config))
        if known is not None and known[0] is config and known[1] == base_dir:
            return known[2]
        key = (config.model_dump_json(), str(base_dir))
        with self._lock:
            provider = self._live.get(key)
            if provider is None:
                factory = self._factories.get(config.type)
                if factory is None:
                    raise ConfigError(
                        f"unknown provider type {config.type!r}; known: {', '.join(self.types)}",
                        hint="provider types from other plugins need that plugin installed",
                    )
                provider = factory(config, base_dir)
                if config.max_concurrency is not None:
                    provider = ConcurrencyLimitedProvider(
                        provider, self._semaphore(config, base_dir), config.max_concurrency
                    )
                self._live[key] = provider
            if len(self._by_identity) >= _IDENTITY_CACHE_SIZE:
                self._by_identity.clear()  # configs built per call (llm_judge) must not pile up
            self._by_identity[id(config)] = (config, base_dir, provider)
            return provider

    def _semaphore(self, config: ProviderConfig, base_dir: Path) -> threading.Semaphore:
        """The shared semaphore of ``config``'s endpoint (call with the lock held)."""
        assert config.max_concurrency is not None
        key = limit_key(config, base_dir)
        semaphore = self._semaphores.get(key)
        if semaphore is None:
            semaphore = self._semaphores[key] = threading.Semaphore(config.max_concurrency)
        return semaphore

    def close_all(self) -> None:
        with self._lock:
            live, self._live = list(self._live.values()), {}
            self._by_identity = {}
        for provider in live:
            try:
                provider.close()
            except Exception:  # closing must never fail a session
                pass

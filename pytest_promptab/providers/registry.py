"""Provider types by name, and one live provider per distinct config.

Built-in types are ``python`` and ``openai``; other plugins add theirs through
the ``pytest_promptab_register_providers`` hook. Factories are imported lazily
so that e.g. httpx is imported only when an ``openai`` provider is used.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Callable

from ..errors import ConfigError
from ..schema import ProviderConfig
from .base import Provider

ProviderFactory = Callable[[ProviderConfig, Path], Provider]
"""Builds a provider from its config and the workflow file's folder."""


def _python_factory(config: ProviderConfig, base_dir: Path) -> Provider:
    from .python import PythonProvider

    return PythonProvider(config, base_dir)


def _openai_factory(config: ProviderConfig, base_dir: Path) -> Provider:
    from .openai import OpenAIProvider

    return OpenAIProvider(config, base_dir)


class ProviderRegistry:
    def __init__(self) -> None:
        self._factories: dict[str, ProviderFactory] = {
            "python": _python_factory,
            "openai": _openai_factory,
        }
        self._live: dict[tuple[str, str], Provider] = {}
        self._lock = threading.Lock()

    def register(self, type_name: str, factory: ProviderFactory) -> None:
        self._factories[type_name] = factory

    @property
    def types(self) -> list[str]:
        return sorted(self._factories)

    def get(self, config: ProviderConfig, base_dir: Path) -> Provider:
        """The live provider for ``config`` (created once, then shared)."""
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
                self._live[key] = provider
            return provider

    def close_all(self) -> None:
        with self._lock:
            live, self._live = list(self._live.values()), {}
        for provider in live:
            try:
                provider.close()
            except Exception:  # closing must never fail a session
                pass

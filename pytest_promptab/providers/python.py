"""The ``python`` provider: any function, SDK or local model.

``callable:`` gets a :class:`~.base.ProviderRequest` and returns a string, a
:class:`~.base.ProviderResponse`, or a dict with ``text`` and optionally
``tokens_in``, ``tokens_out``, ``cost_usd``.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from ..errors import ProviderError
from ..textsafe import clean, clean_data
from ..workflow.callables import load_callable
from ..workflow.schema import ProviderConfig
from .base import ProviderRequest, ProviderResponse


class PythonProvider:
    def __init__(self, config: ProviderConfig, base_dir: Path) -> None:
        assert config.callable  # the schema guarantees it
        self._ref = config.callable
        self._func = load_callable(config.callable, base_dir, what="provider callable")
        self._pricing = config.pricing

    def complete(self, request: ProviderRequest) -> ProviderResponse:
        try:
            result = self._func(request)
        except Exception as exc:  # the user's function failed
            raise ProviderError(f"provider callable {self._ref} raised {type(exc).__name__}: {exc}") from exc
        response = to_response(result, self._ref).with_cost(self._pricing)
        # a lone surrogate ("\ud800") cannot be written as UTF-8: results, recordings and MLflow would fail
        if isinstance(response.text, str):
            response = replace(response, text=clean(response.text), extra=clean_data(response.extra))
        return response

    def close(self) -> None:
        pass


def to_response(result: Any, ref: str) -> ProviderResponse:
    if isinstance(result, ProviderResponse):
        return result
    if isinstance(result, str):
        return ProviderResponse(text=result)
    if isinstance(result, dict) and isinstance(result.get("text"), str):
        known = {"text", "tokens_in", "tokens_out", "cost_usd"}
        extra = {k: v for k, v in result.items() if k not in known}
        return ProviderResponse(
            text=result["text"],
            tokens_in=result.get("tokens_in"),
            tokens_out=result.get("tokens_out"),
            cost_usd=result.get("cost_usd"),
            extra=extra,
        )
    raise ProviderError(
        f"provider callable {ref} returned {type(result).__name__}; "
        "return a string, a dict with 'text', or a ProviderResponse"
    )

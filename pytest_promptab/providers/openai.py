"""The ``openai`` provider: OpenAI-compatible ``/chat/completions`` over HTTP.

Works with OpenAI, Azure OpenAI (v1 API), Ollama, vLLM, llama.cpp server, LM
Studio, OpenRouter, Groq, Together, Mistral and anything else that speaks the
same protocol. One :class:`OpenAIProvider` (one pool of keep-alive
connections, :mod:`.transport`) exists per distinct provider config and is
shared by the runner's threads. The request body is encoded once per call;
each attempt is one ``Transport.send``. Transient failures are retried by
:mod:`.retry`.

Secrets: the API key is read from the environment variable named by
``api_key_env`` and only ever put in the ``Authorization`` header. Error
messages never contain the key, the server's host or URL credentials:
everything taken from the server or from the transport passes through
:func:`.redact.scrub_and_clip` (scrubbed first, cut after).

Bounds: each attempt gets ``provider.timeout_s`` as a whole (or what is left
of ``provider.retry.max_total_s``, when less), and an answer over
``provider.max_response_bytes`` fails the run at once, without a retry.
This module imports httpcore (httpx only for https or a proxy), so it is
only imported when an ``openai`` provider is used (see :mod:`.registry`).
"""

from __future__ import annotations

import json
import os
import ssl
import threading
import time
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlsplit

from .. import __version__
from ..errors import ConfigError, ProviderError
from ..textsafe import clean
from ..workflow.schema import ProviderConfig
from .base import ProviderRequest, ProviderResponse
from .redact import REDACTED, scrub_and_clip
from .retry import (
    TransientFailure,
    is_retryable_status,
    parse_retry_after,
    run_with_retries,
)
from .transport import Answer, Endpoint, Transport, TransportError, make_transport

DEFAULT_BASE_URL = "https://api.openai.com/v1"
DEFAULT_API_KEY_ENV = "OPENAI_API_KEY"
BASE_URL_ENV = "OPENAI_BASE_URL"
USER_AGENT = f"pytest-promptab/{__version__}"

MESSAGE_LIMIT = 300
"""Longest server message kept in an error (after scrubbing)."""
SNIPPET_LIMIT = 80
"""Longest quote of a malformed 200 kept in an error."""
FIELD_LIMIT = 200
"""Longest ``model`` kept in a run's ``extra``; ``refusal`` keeps MESSAGE_LIMIT."""


class OpenAIProvider:
    """Sends each request to ``{base_url}/chat/completions``.

    ``request.settings`` (temperature, max_tokens, seed, response_format,
    ...), over ``provider.settings``, are sent as they are, next to
    ``model`` and ``messages``.
    """

    def __init__(self, config: ProviderConfig, base_dir: Path) -> None:
        self.config = config
        self.base_dir = base_dir
        key_env = config.api_key_env or DEFAULT_API_KEY_ENV
        self._key_env = key_env
        self._api_key = os.environ.get(key_env) or None
        base_url = config.base_url or os.environ.get(BASE_URL_ENV) or DEFAULT_BASE_URL
        self._base_url = base_url
        self._url = _endpoint(base_url)
        self._secrets = _secret_strings(self._api_key, base_url, self._url)
        headers = [("Accept", "application/json"), ("Content-Type", "application/json"), ("User-Agent", USER_AGENT)]
        if self._api_key:
            headers.append(("Authorization", f"Bearer {self._api_key}"))
        self._headers = headers
        self._transport: Transport = make_transport(_ssl_context)
        self.sleep: Callable[[float], None] = time.sleep
        """Used between attempts; tests may replace it."""
        self.clock: Callable[[], float] = time.monotonic

    # -- Provider protocol -------------------------------------------------

    def complete(self, request: ProviderRequest) -> ProviderResponse:
        model = request.model or self.config.model
        if not model:
            raise ProviderError(
                "openai provider: no model given",
                hint="set 'model:' under 'provider:' (or in the node's or variant's provider override)",
            )
        # the engine already merges provider settings into the node's; merging here
        # too keeps direct callers (e.g. the llm_judge grader) consistent
        payload: dict[str, Any] = {
            **self.config.settings,
            **request.settings,
            "model": model,
            "messages": request.messages,
        }
        if payload.get("stream"):
            payload["stream"] = False  # one JSON answer is what we parse
        what = f"openai provider (model {model!r})"
        try:
            # encoded once for every attempt, as httpx's json= would (compact, UTF-8)
            body = json.dumps(payload, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode("utf-8")
        except (TypeError, ValueError) as exc:
            raise ProviderError(
                f"{what}: the request cannot be sent as JSON ({exc})",
                hint="settings must be JSON values: no NaN or infinity, no objects YAML cannot write as JSON",
            ) from None
        response = run_with_retries(
            lambda time_left: self._attempt(body, what, time_left),
            self.config.retry,
            what=what,
            sleep=self.sleep,
            clock=self.clock,
        )
        return response.with_cost(self.config.pricing)

    def close(self) -> None:
        self._transport.close()

    def __repr__(self) -> str:  # never shows the key or the host
        return f"OpenAIProvider(model={self.config.model!r})"

    # -- one attempt -------------------------------------------------------

    def _attempt(self, body: bytes, what: str, time_left: float) -> ProviderResponse:
        """One attempt, given ``time_left`` of the retry policy's total time."""
        timeout_s = self.config.timeout_s
        limit = self.config.max_response_bytes
        try:
            answer = self._transport.send(self._url, self._headers, body, min(timeout_s, time_left), limit)
        except TransportError as exc:
            detail = self._scrub(exc.message)
            if exc.kind == "timeout":
                if time_left < timeout_s:
                    raise TransientFailure(
                        f"the attempt was stopped after {time_left:.1f} s, when provider.retry.max_total_s "
                        f"ran out, before the answer was complete ({exc.name})"
                    ) from None
                raise TransientFailure(
                    f"the attempt exceeded provider.timeout_s ({timeout_s:g} s, for connecting, sending and the "
                    f"whole answer) before the answer was complete ({exc.name})"
                ) from None
            if exc.kind == "too_large":
                raise ProviderError(
                    f"{what}: the answer is larger than provider.max_response_bytes ({limit} bytes; {detail}): "
                    "the run fails without a retry",
                    hint="raise provider.max_response_bytes if answers this large are expected, "
                    "or lower max_tokens",
                ) from None
            if exc.kind == "disconnected":
                raise TransientFailure(
                    f"the server closed the connection without a valid answer ({detail or exc.name})"
                ) from None
            if exc.kind == "network":
                raise TransientFailure(f"network error talking to the server at base_url ({exc.name}: {detail})") from None
            # a proxy or protocol problem: configuration, not luck
            raise ProviderError(
                f"{what}: request failed ({exc.name}: {detail})",
                hint=f"check provider.base_url (or ${BASE_URL_ENV}): it must be an http(s) URL of an "
                "OpenAI-compatible API, e.g. http://localhost:11434/v1",
            ) from None
        if answer.status != 200:
            self._raise_for_status(answer, what)
        return self._parse(answer)

    def _raise_for_status(self, answer: Answer, what: str) -> None:
        status = answer.status
        message, code = _error_details(answer)
        cause = f"HTTP {status}"
        if answer.reason:
            cause += f" {answer.reason}"
        if message:
            cause += f": {self._scrub(message, MESSAGE_LIMIT)}"
        if is_retryable_status(status, code):
            raise TransientFailure(cause, status=status, retry_after=parse_retry_after(answer.headers))
        raise ProviderError(f"{what}: {cause}", status=status, hint=self._hint(status, code))

    def _hint(self, status: int, code: str | None) -> str | None:
        if status == 401:
            if self._api_key is None:
                return f"no API key sent: ${self._key_env} is not set (provider.api_key_env names the variable)"
            return f"the server refused the key in ${self._key_env}: check that it is valid for this server"
        if status == 403:
            return f"the key in ${self._key_env} is not allowed to use this model or endpoint"
        if status == 404:
            return (
                f"check the model name and provider.base_url (or ${BASE_URL_ENV}): "
                "the URL should end before /chat/completions, e.g. https://api.openai.com/v1"
            )
        if status == 429 and code == "insufficient_quota":
            return "the account behind the key has no quota left: check its plan and billing"
        if status in (400, 422):
            return "the server rejected the request: check the model name and provider/node settings"
        return None

    def _parse(self, answer: Answer) -> ProviderResponse:
        try:
            data = json.loads(answer.content)
        except (ValueError, UnicodeDecodeError):
            snippet = self._scrub(answer.text, SNIPPET_LIMIT) if answer.content else "an empty body"
            raise TransientFailure(f"the server answered 200 with malformed JSON ({snippet!r})", status=200) from None
        if not isinstance(data, dict):
            raise TransientFailure("the server answered 200 with JSON that is not an object", status=200)
        choices = data.get("choices")
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            error = data.get("error")
            if isinstance(error, dict) and error.get("message"):
                # some gateways (e.g. OpenRouter) report upstream errors inside a 200
                status = error.get("code") if isinstance(error.get("code"), int) else None
                cause = f"the server answered 200 with an error: {self._scrub(str(error['message']), MESSAGE_LIMIT)}"
                if status is not None and not is_retryable_status(status):
                    raise ProviderError(f"openai provider: {cause}", status=status)
                raise TransientFailure(cause, status=status)
            raise TransientFailure("the server answered 200 without 'choices'", status=200)
        choice = choices[0]
        raw_message = choice.get("message")
        message: dict[str, Any] = raw_message if isinstance(raw_message, dict) else {}
        content = message.get("content")
        if isinstance(content, list):  # content parts
            content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
        text = content if isinstance(content, str) else ""
        if self._api_key and len(self._api_key) >= 8 and self._api_key in text:  # an answer echoing the key
            text = text.replace(self._api_key, REDACTED)
        raw_usage = data.get("usage")
        usage: dict[str, Any] = raw_usage if isinstance(raw_usage, dict) else {}
        extra: dict[str, Any] = {}
        if choice.get("finish_reason") is not None:
            extra["finish_reason"] = self._scrub(str(choice["finish_reason"]), FIELD_LIMIT)
        if isinstance(data.get("model"), str):
            extra["model"] = self._scrub(data["model"], FIELD_LIMIT)
        if isinstance(message.get("refusal"), str) and message["refusal"]:
            extra["refusal"] = self._scrub(message["refusal"], MESSAGE_LIMIT)
        return ProviderResponse(
            text=clean(text),  # a lone surrogate becomes U+FFFD, as for every provider
            tokens_in=_int_or_none(usage.get("prompt_tokens")),
            tokens_out=_int_or_none(usage.get("completion_tokens")),
            extra=extra,
        )

    def _scrub(self, text: str, limit: int = MESSAGE_LIMIT) -> str:
        """Scrubbed, then cut to ``limit``: the one way a server's text enters a report."""
        return scrub_and_clip(text, limit, self._secrets, key=self._api_key)


def _secret_strings(api_key: str | None, base_url: str, url: Endpoint) -> list[str]:
    """What must never appear in a message: the key, the URLs, the host and
    any credentials written into the URL."""
    parsed = urlsplit(base_url.strip())
    candidates = [base_url, url.url, url.host, url.host_header, parsed.hostname, parsed.netloc,
                  parsed.username, parsed.password]
    # short strings would mangle ordinary words; the key (passed apart) is removed whatever its length
    return [s for s in candidates if s and len(s) >= 4]


_ssl_lock = threading.Lock()
_ssl_contexts: dict[tuple[str | None, str | None], ssl.SSLContext] = {}


def _ssl_context() -> ssl.SSLContext:
    """httpx's default TLS context (certifi, or $SSL_CERT_FILE / $SSL_CERT_DIR),
    built once, at the first https connection: loading the CA bundle (and
    httpx) is slow, and plain-http local servers never need it."""
    key = (os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR"))
    with _ssl_lock:
        context = _ssl_contexts.get(key)
        if context is None:
            import httpx

            context = _ssl_contexts[key] = httpx.create_ssl_context(trust_env=True)
        return context


def _endpoint(base_url: str) -> Endpoint:
    """``base_url`` + ``/chat/completions`` (kept when already there), with
    any query string (e.g. Azure's ``api-version``) preserved."""
    try:
        parts = urlsplit(base_url.strip())
        path = parts.path.rstrip("/")
        if not path.endswith("/chat/completions"):
            path += "/chat/completions"
        return Endpoint.from_split(parts._replace(path=path, fragment=""))
    except (ValueError, UnicodeError):
        raise ConfigError(
            "provider.base_url must be an http:// or https:// URL",
            hint=f"use e.g. http://localhost:11434/v1 (it may come from ${BASE_URL_ENV})",
        ) from None


def _error_details(answer: Answer) -> tuple[str | None, str | None]:
    """The provider's own error message and code, from an OpenAI-style body
    ``{"error": {"message": ..., "code"/"type": ...}}`` or a plain text body;
    uncut and unscrubbed (the caller scrubs, then cuts)."""
    try:
        body = json.loads(answer.content)
    except (ValueError, UnicodeDecodeError):
        text = answer.text.strip() if answer.content else ""
        return (text or None), None
    message: Any = None
    code: Any = None
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict):
            message = error.get("message")
            code = error.get("code") or error.get("type")
            if code != "insufficient_quota" and error.get("type") == "insufficient_quota":
                code = "insufficient_quota"
        elif isinstance(error, str):
            message = error
        else:
            message = body.get("message") or body.get("detail")
    if message is not None and not isinstance(message, str):
        message = json.dumps(message)
    return (message or None), (str(code) if code is not None else None)


def _int_or_none(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None

"""Record and replay of provider responses (``--promptab-cache``).

:class:`ResponseCache` keeps one pretty-printed JSON file per request under
``.promptab/cache/<2 hex>/<sha256>.json``: sorted keys, two-space indent and
a trailing newline, so recordings diff well and can be committed for CI.
Files are written to a temporary file and moved into place with
``os.replace``, so concurrent writers and readers never see half a file.

:class:`CachingProvider` wraps a provider according to the mode:

- ``replay``: answers from the cache only; it never builds the real provider
  nor touches the network, and a miss raises :class:`ReplayMissError` saying
  how to record it.
- ``auto``: answers hits from the cache, calls the real provider for misses
  and records them.
- ``record``: calls the real provider and (re)records every response.
- ``off``: not wrapped at all; the plugin uses the real provider directly.

The key is the SHA-256 of canonical JSON of: the provider type, the model,
the messages, the settings, the node id, the case id and the run number, plus
what tells two providers of one type apart (:func:`provider_identity`: the
``base_url`` as written in the workflow file, a ``python`` provider's
``callable``, a plugin provider's ``options``), so that a variant sending the
same prompt to another server or another local model gets its own answers.

- Different runs are different keys, so repeated runs stay independent
  samples.
- The variant's name is not part of it: two variants that send the very same
  request share its answer, as the common seed of
  :class:`~pytest_promptab.providers.base.ProviderRequest` intends. A session
  calls each key live at most once (the :class:`ResponseCache` remembers what
  it recorded), so a replay gives exactly what the recording session saw.
- A ``base_url`` taken from ``$OPENAI_BASE_URL`` is not part of it: it is set
  per machine and differs between the developer who records and the CI job
  that replays. A ``base_url`` written in the workflow file is the same
  everywhere, so it is part of it (hashed only; credentials removed).
- Timeouts, retries, pricing and the API key's variable are not part of it:
  they do not change the answer.

Lone surrogates (a provider answering ``"\\ud800"``) are stored and returned
as U+FFFD, so that recording never fails on them and a replay gives what
the recording session saw.

Nothing secret is stored: no API key, header, host or URL, only the request
fields listed in :func:`request_fields` and the response (text, tokens, cost,
extra). Changing the server behind a model name set by ``$OPENAI_BASE_URL``
needs ``--promptab-cache record`` to refresh the recordings.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import threading
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlsplit, urlunsplit

from ..errors import ConfigError, ProviderError, ReplayMissError
from ..textsafe import clean, clean_data
from ..workflow.schema import ProviderConfig
from .base import Provider, ProviderRequest, ProviderResponse

CACHE_MODES = ("off", "record", "replay", "auto")
KEY_VERSION = 1
"""Part of every key: bumping it invalidates old recordings on purpose."""


def request_fields(request: ProviderRequest, provider_type: str) -> dict[str, Any]:
    """The request as it is keyed and stored."""
    return {
        "provider": provider_type,
        "model": request.model,
        "messages": request.messages,
        "settings": request.settings,
        "node": request.node_id,
        "case": request.case_id,
        "run": request.run,
    }


def provider_identity(config: ProviderConfig | None) -> dict[str, Any]:
    """What tells providers of one type apart, for the key (never stored):
    the ``base_url`` written in the workflow file (without credentials), the
    ``callable`` and the ``options``; empty values are left out."""
    if config is None:
        return {}
    identity: dict[str, Any] = {}
    if config.base_url:
        identity["base_url"] = _without_credentials(config.base_url)
    if config.callable:
        identity["callable"] = config.callable
    if config.options:
        identity["options"] = config.options
    return identity


def _without_credentials(url: str) -> str:
    parts = urlsplit(url.strip())
    netloc = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme.lower(), netloc.lower(), parts.path.rstrip("/"), parts.query, ""))


def cache_key(request: ProviderRequest, provider_type: str, identity: dict[str, Any] | None = None) -> str:
    """SHA-256 hex digest of the canonical JSON of the request's key fields
    and the provider's :func:`provider_identity`."""
    fields = {"v": KEY_VERSION, **request_fields(request, provider_type)}
    if identity:
        fields["provider_identity"] = identity
    canonical = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    # surrogatepass: a lone surrogate in a prompt still keys (valid text keys exactly as before)
    return hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest()


class ResponseCache:
    """Recorded responses under ``root`` (the plugin passes
    ``<rootdir>/.promptab/cache``)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._lock = threading.Lock()
        self._key_locks: dict[str, threading.Lock] = {}
        self._recorded: set[str] = set()
        """Keys recorded by this session (one cache object per session)."""

    def key_lock(self, key: str) -> threading.Lock:
        """One lock per key: a key is fetched live by one thread at a time."""
        with self._lock:
            lock = self._key_locks.get(key)
            if lock is None:
                lock = self._key_locks[key] = threading.Lock()
            return lock

    def recorded_now(self, key: str) -> bool:
        """True when this session already recorded ``key``."""
        with self._lock:
            return key in self._recorded

    def path_for(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.json"

    def get(self, key: str) -> ProviderResponse | None:
        """The recorded response, None when there is none; a file that is not
        a recording (a merge conflict, a hand edit gone wrong) raises
        :class:`ProviderError` naming it."""
        path = self.path_for(key)
        try:
            raw = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise ProviderError(f"cannot read the recorded response {path}: {exc.strerror or exc}") from None
        try:
            data = json.loads(raw)
            answer = data["response"]
            return ProviderResponse(
                text=str(answer["text"]),
                tokens_in=answer.get("tokens_in"),
                tokens_out=answer.get("tokens_out"),
                cost_usd=answer.get("cost_usd"),
                extra=dict(answer.get("extra") or {}),
            )
        except (ValueError, KeyError, TypeError, AttributeError):
            raise ProviderError(
                f"the recorded response {path} is not a valid recording",
                hint="delete it (or fix a merge conflict in it) and record again with --promptab-cache record",
            ) from None

    def put(self, key: str, request: dict[str, Any], response: ProviderResponse) -> Path:
        """Store one entry atomically; returns its path. Lone surrogates are
        stored as U+FFFD (:func:`~pytest_promptab.textsafe.clean`): pass a
        response cleaned the same way, so that a replay gives what the
        recording session saw."""
        entry = clean_data({
            "key_version": KEY_VERSION,
            "request": request,
            "response": {
                "text": response.text,
                "tokens_in": response.tokens_in,
                "tokens_out": response.tokens_out,
                "cost_usd": response.cost_usd,
                "extra": response.extra,
            },
        })  # fmt: skip
        text = json.dumps(entry, sort_keys=True, indent=2, ensure_ascii=False, default=str) + "\n"
        path = self.path_for(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{key[:12]}.", suffix=".tmp")
            try:
                with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as handle:
                    handle.write(text)
                os.replace(tmp, path)
            except BaseException:
                try:
                    os.unlink(tmp)
                except OSError:
                    pass
                raise
        except OSError as exc:
            raise ProviderError(
                f"cannot record the response in {path}: {exc.strerror or exc}",
                hint="check that the cache folder is writable, or run with --promptab-cache off",
            ) from None
        with self._lock:
            self._recorded.add(key)
        return path


class CachingProvider:
    """A provider answering from a :class:`ResponseCache` in ``mode``
    (``record``, ``replay`` or ``auto``; ``off`` is never wrapped).

    ``factory`` builds the real provider; it is called at most once, lazily,
    and never in ``replay`` mode. ``config``, when given, adds its
    :func:`provider_identity` to the keys (pass it: without it two variants
    that differ only in ``base_url`` or ``callable`` share answers). A
    replayed response is the recorded one, cost included. Pass one
    :class:`ResponseCache` to every wrapper of a session.
    """

    def __init__(
        self,
        factory: Callable[[], Provider],
        cache: ResponseCache,
        mode: str,
        provider_type: str,
        *,
        config: ProviderConfig | None = None,
    ) -> None:
        if mode not in ("record", "replay", "auto"):
            raise ConfigError(
                f"cache mode {mode!r} cannot wrap a provider",
                hint="--promptab-cache takes off, record, replay or auto; 'off' means: use the provider directly",
            )
        self.cache = cache
        self.mode = mode
        self.provider_type = provider_type
        self.identity = provider_identity(config)
        self._factory = factory
        self._inner: Provider | None = None
        self._lock = threading.Lock()

    def complete(self, request: ProviderRequest) -> ProviderResponse:
        key = cache_key(request, self.provider_type, self.identity)
        if self.mode == "replay":
            return self._replay(key, request)
        with self.cache.key_lock(key):
            if self.mode == "auto" or self.cache.recorded_now(key):
                try:
                    hit = self.cache.get(key)
                except ProviderError:
                    hit = None  # not a valid recording: record it again
                if hit is not None:
                    return hit
            response = self._live().complete(request)
            if isinstance(response.text, str):  # what is stored is what this session sees, as a replay will
                response = replace(response, text=clean(response.text), extra=clean_data(response.extra))
            self.cache.put(key, request_fields(request, self.provider_type), response)
            return response

    def close(self) -> None:
        with self._lock:
            inner, self._inner = self._inner, None
        if inner is not None:
            inner.close()

    def _replay(self, key: str, request: ProviderRequest) -> ProviderResponse:
        hit = self.cache.get(key)
        if hit is None:
            raise ReplayMissError(
                f"--promptab-cache replay: no recorded response for node {request.node_id!r}, "
                f"case {request.case_id!r}, run {request.run} (model {request.model!r}) in {self.cache.root}",
                hint="run once with --promptab-cache record (or auto) to record it; "
                "a changed prompt, setting, model or run count also needs a new recording",
            )
        return hit

    def _live(self) -> Provider:
        with self._lock:
            if self._inner is None:
                self._inner = self._factory()
            return self._inner

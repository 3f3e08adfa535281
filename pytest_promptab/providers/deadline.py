"""The deadline of one HTTP attempt, enforced on every network operation.

:class:`attempt_deadline` sets, for the calling thread, the
``time.monotonic()`` by which its attempt must be complete (each call of the
``openai`` provider owns its connection in one thread, from the request to
the end of the answer). :class:`DeadlineBackend` is httpcore's sync network
backend with streams that give each connect, TLS handshake, write and read
at most the time left of it, and raise httpcore's timeout errors when none
is left: a timeout per read alone would let a server that dribbles a byte
every half second keep an attempt alive for as long as the bytes keep coming.
Name resolution (``getaddrinfo``) is the one step it cannot interrupt.
"""

from __future__ import annotations

import ssl
import threading
import time
from typing import Any, Iterable

import httpcore

WRITE_CHUNK = 65536
"""Writes go out in pieces this large, each with the time left of the attempt."""


_attempt = threading.local()
"""``deadline``: the ``time.monotonic()`` by which the calling thread's
attempt must be complete (each call owns its connection in one thread)."""


class attempt_deadline:
    """Sets the calling thread's deadline ``timeout_s`` from now for the
    ``with`` block; yields it."""

    def __init__(self, timeout_s: float) -> None:
        self.deadline = time.monotonic() + timeout_s

    def __enter__(self) -> float:
        self._outer = getattr(_attempt, "deadline", None)
        _attempt.deadline = self.deadline
        return self.deadline

    def __exit__(self, *exc: object) -> None:
        _attempt.deadline = self._outer


def _time_left(timeout: float | None, error: type[Exception]) -> float | None:
    """``timeout`` cut to what is left of the thread's deadline; ``error``
    (an httpcore timeout) when nothing is left."""
    deadline: float | None = getattr(_attempt, "deadline", None)
    if deadline is None:
        return timeout
    left = deadline - time.monotonic()
    if left <= 0:
        raise error("the attempt's deadline passed")
    return left if timeout is None else min(timeout, left)


class DeadlineStream(httpcore.NetworkStream):
    """A network stream whose every operation gets at most the time left of
    the calling thread's attempt."""

    def __init__(self, stream: httpcore.NetworkStream) -> None:
        self._stream = stream

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._stream.read(max_bytes, _time_left(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        for start in range(0, len(buffer), WRITE_CHUNK):  # a server that reads slowly is bounded too
            self._stream.write(buffer[start:start + WRITE_CHUNK], _time_left(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._stream.close()

    def start_tls(self, ssl_context: ssl.SSLContext, server_hostname: str | None = None,
                  timeout: float | None = None) -> httpcore.NetworkStream:
        tls = self._stream.start_tls(ssl_context, server_hostname, _time_left(timeout, httpcore.ConnectTimeout))
        return DeadlineStream(tls)

    def get_extra_info(self, info: str) -> Any:
        return self._stream.get_extra_info(info)


class DeadlineBackend(httpcore.NetworkBackend):
    """httpcore's sync backend with :class:`DeadlineStream` streams."""

    def __init__(self) -> None:
        self._backend = httpcore.SyncBackend()

    def connect_tcp(self, host: str, port: int, timeout: float | None = None, local_address: str | None = None,
                    socket_options: Iterable[Any] | None = None) -> httpcore.NetworkStream:
        stream = self._backend.connect_tcp(host, port, _time_left(timeout, httpcore.ConnectTimeout), local_address,
                                           socket_options)
        return DeadlineStream(stream)

    def connect_unix_socket(self, path: str, timeout: float | None = None,
                            socket_options: Iterable[Any] | None = None) -> httpcore.NetworkStream:
        stream = self._backend.connect_unix_socket(path, _time_left(timeout, httpcore.ConnectTimeout), socket_options)
        return DeadlineStream(stream)

    def sleep(self, seconds: float) -> None:
        self._backend.sleep(seconds)


DEADLINE_BACKEND = DeadlineBackend()


def use_deadline_backend(client: Any) -> bool:
    """Puts :data:`DEADLINE_BACKEND` under every pool of an ``httpx.Client``
    (its default transport and its proxy mounts). httpx has no public way to
    choose the network backend, so this reaches its transports' ``_pool``;
    False when that is not possible (the deadline is then checked between
    body chunks only)."""
    transports = [getattr(client, "_transport", None), *getattr(client, "_mounts", {}).values()]
    done = True
    for transport in transports:
        if transport is None:
            continue
        pool = getattr(transport, "_pool", None)
        if pool is None or not hasattr(pool, "_network_backend"):
            done = False
            continue
        pool._network_backend = DEADLINE_BACKEND
    return done

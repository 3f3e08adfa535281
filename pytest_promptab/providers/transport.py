"""The HTTP transport of the ``openai`` provider: httpx requests over a
stack of keep-alive HTTP/1.1 connections.

Why not httpx's default pool: httpcore's ``ConnectionPool`` rescans every
connection, under one pool-wide lock, each time a request is queued or a
response is closed (``is_idle`` is called about connections squared times),
and polls each idle socket. With 32-64 calls in flight that was the largest
part of promptab's CPU per call, and its lock made the runner's threads queue
(measured in ``benchmarks/bench_concurrency.py --profile``). Here each call
owns its connection from the request to the end of the response (one thread,
one request at a time), so the pool only needs a stack of idle connections:

- a call takes the most recently used idle connection (the least likely to
  have been closed by the server), checked for expiry and for a server that
  hung up, or opens a new one: it never waits for a connection;
- the response's ``close`` puts the connection back when it can carry another
  request, or closes it.

Connections in use are not limited here: the runner bounds the calls in
flight (``--promptab-concurrency``, ``max_concurrency``), so the number of
open connections follows the concurrency, and so does the number kept idle.

:class:`PooledTransport` is an ``httpx.BaseTransport``: it takes an
``httpx.Request`` and returns a streaming ``httpx.Response`` whose errors are
httpx's (``httpx.ConnectError``, ``httpx.ReadTimeout``, ...), as with
httpx's own transport. Proxies from the environment are not its business:
:func:`environment_proxies` tells the provider to use an ``httpx.Client``
(which honours them) instead.
"""

from __future__ import annotations

import ssl
import threading
import urllib.request
from contextlib import contextmanager
from typing import Callable, Iterable, Iterator

import httpcore
import httpx

KEEPALIVE_EXPIRY_S = 5.0
"""An idle connection unused for this long is closed (httpx's default)."""


def environment_proxies() -> bool:
    """True when ``HTTP(S)_PROXY`` / ``ALL_PROXY`` (any case) are set: then
    requests go through an ``httpx.Client``, which applies them and
    ``NO_PROXY``."""
    proxies = urllib.request.getproxies()
    return any(proxies.get(scheme) for scheme in ("http", "https", "all"))


class PooledTransport(httpx.BaseTransport):
    """HTTP/1.1 over reused connections; ``ssl_context`` is called once, at
    the first ``https`` connection."""

    def __init__(self, ssl_context: Callable[[], ssl.SSLContext], keepalive_expiry: float = KEEPALIVE_EXPIRY_S) -> None:
        self._ssl_factory = ssl_context
        self._ssl: ssl.SSLContext | None = None
        self._keepalive_expiry = keepalive_expiry
        self._idle: list[httpcore.HTTPConnection] = []
        self._lock = threading.Lock()
        self._closed = False

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        core = httpcore.Request(
            method=request.method,
            url=httpcore.URL(scheme=url.raw_scheme, host=url.raw_host, port=url.port, target=url.raw_path),
            headers=request.headers.raw,
            content=request.stream,  # type: ignore[arg-type]
            extensions=request.extensions,
        )
        connection = self._checkout(core.url.origin)
        try:
            with _httpx_errors():
                answer = connection.handle_request(core)
        except BaseException:
            connection.close()
            raise
        return httpx.Response(
            status_code=answer.status,
            headers=answer.headers,
            stream=_ResponseStream(answer.stream, self, connection),  # type: ignore[arg-type]  # httpcore's stream is an Iterable
            extensions=answer.extensions,
        )

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for connection in idle:
            connection.close()

    @property
    def idle_connections(self) -> int:
        return len(self._idle)

    def _checkout(self, origin: httpcore.Origin) -> httpcore.HTTPConnection:
        stale = []
        found = None
        with self._lock:
            while self._idle:
                connection = self._idle.pop()
                if connection.can_handle_request(origin) and connection.is_idle() and not connection.has_expired():
                    found = connection
                    break
                stale.append(connection)
        for connection in stale:
            connection.close()
        if found is not None:
            return found
        context = None
        if origin.scheme == b"https":
            if self._ssl is None:
                self._ssl = self._ssl_factory()
            context = self._ssl
        return httpcore.HTTPConnection(origin=origin, ssl_context=context, keepalive_expiry=self._keepalive_expiry)

    def _checkin(self, connection: httpcore.HTTPConnection) -> None:
        if connection.is_idle():
            with self._lock:
                if not self._closed:
                    self._idle.append(connection)
                    return
        connection.close()


class _ResponseStream(httpx.SyncByteStream):
    """The body of one response; closing it hands the connection back."""

    def __init__(self, stream: Iterable[bytes], pool: PooledTransport, connection: httpcore.HTTPConnection) -> None:
        self._stream = stream
        self._pool = pool
        self._connection: httpcore.HTTPConnection | None = connection

    def __iter__(self) -> Iterator[bytes]:
        with _httpx_errors():
            yield from self._stream

    def close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is None:
            return
        try:
            with _httpx_errors():
                close = getattr(self._stream, "close", None)
                if close is not None:
                    close()
        finally:
            self._pool._checkin(connection)


_ERRORS: list[tuple[type[Exception], type[httpx.HTTPError]]] = [
    (httpcore.ConnectTimeout, httpx.ConnectTimeout),
    (httpcore.ReadTimeout, httpx.ReadTimeout),
    (httpcore.WriteTimeout, httpx.WriteTimeout),
    (httpcore.PoolTimeout, httpx.PoolTimeout),
    (httpcore.TimeoutException, httpx.TimeoutException),
    (httpcore.ConnectError, httpx.ConnectError),
    (httpcore.ReadError, httpx.ReadError),
    (httpcore.WriteError, httpx.WriteError),
    (httpcore.NetworkError, httpx.NetworkError),
    (httpcore.ProxyError, httpx.ProxyError),
    (httpcore.UnsupportedProtocol, httpx.UnsupportedProtocol),
    (httpcore.LocalProtocolError, httpx.LocalProtocolError),
    (httpcore.RemoteProtocolError, httpx.RemoteProtocolError),
    (httpcore.ProtocolError, httpx.ProtocolError),
]
"""httpcore's errors as httpx's, the most specific first."""


@contextmanager
def _httpx_errors() -> Iterator[None]:
    try:
        yield
    except Exception as exc:
        for core_error, httpx_error in _ERRORS:
            if isinstance(exc, core_error):
                raise httpx_error(str(exc)) from exc
        raise

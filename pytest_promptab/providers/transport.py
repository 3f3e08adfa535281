"""The HTTP transport of the ``openai`` provider: one POST, one whole answer.

:func:`make_transport` gives a :class:`PooledTransport` (httpcore over a
stack of keep-alive HTTP/1.1 connections), or, when ``HTTP(S)_PROXY`` /
``ALL_PROXY`` are set, a :class:`ProxiedTransport` (an ``httpx.Client``,
which applies them and ``NO_PROXY``). Both take an :class:`Endpoint`, headers
and the encoded body, and return an :class:`Answer` with the whole body, or
raise a :class:`TransportError` whose kind says what went wrong (a timeout, a
dropped connection, another network error, a setup that can never work).
Both transports read the body through :func:`read_body`, chunk by chunk,
which enforces the size limit (``max_bytes``) and the attempt's deadline.

One attempt is bounded as a whole by ``timeout_s``: :meth:`Transport.send`
sets a deadline for the calling thread, and the network streams of
:mod:`.deadline` (under httpcore's connections and httpx's pools) give every
connect, TLS handshake, write and read only the time left of it.

Why not httpx's client and pool (measured with
``benchmarks/bench_concurrency.py --profile``): httpcore's ``ConnectionPool``
rescans every connection under one pool-wide lock each time a request is
queued or a response closed (``is_idle`` about connections squared times) and
polls each idle socket, which made up most of the client's CPU per call at 32
to 64 calls in flight and made the runner's threads queue for the lock;
``httpx.Client.post`` adds request building, cookies, auth and redirect
handling that promptab does not use, and importing httpx delays the first
call by some 30-60 ms. Here each call owns its connection from the request
to the end of the response (one thread, one request at a time), so the pool
is a stack: a call takes the most recently used idle connection (the least
likely to have been closed by the server), checked for expiry and for a
server that hung up, or opens a new one, and never waits; the connection goes
back on the stack when the answer is complete and it can carry another
request. Connections in use are not limited here: the runner bounds the calls
in flight (``--promptab-concurrency``, ``max_concurrency``), so the number of
open and of idle connections follows the concurrency.
"""

from __future__ import annotations

import http
import os
import ssl
import sys
import threading
import time
import zlib
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Protocol
from urllib.parse import SplitResult, quote

import httpcore

from .deadline import DEADLINE_BACKEND, attempt_deadline, use_deadline_backend

KEEPALIVE_EXPIRY_S = 5.0
"""An idle connection unused for this long is closed (httpx's default)."""



_PATH_SAFE = "/%:@!$&'()*+,;=-._~"
_QUERY_SAFE = _PATH_SAFE + "?"


class TransportError(Exception):
    """One attempt failed below HTTP. ``kind``: ``timeout`` (the attempt's
    deadline passed), ``disconnected`` (the server closed the connection
    without a valid answer), ``network`` (refused, reset, DNS...),
    ``too_large`` (the body is over ``max_bytes``) or ``setup`` (a proxy or
    protocol problem that no retry fixes). ``name`` is the underlying error's
    class name."""

    def __init__(self, kind: str, name: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.name = name
        self.message = message


@dataclass(frozen=True)
class Endpoint:
    """A parsed ``http(s)`` URL, ready for both transports."""

    url: str
    scheme: str
    host: str
    """Without IPv6 brackets; IDNA-encoded."""
    port: int
    target: str
    """Path and query."""

    @classmethod
    def from_split(cls, parts: SplitResult) -> Endpoint:
        """Raises ValueError for a URL without an http(s) scheme and a host."""
        scheme = parts.scheme.lower()
        if scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("not an http(s) URL with a host")
        host = parts.hostname.encode("idna").decode("ascii")
        port = parts.port or (443 if scheme == "https" else 80)  # .port raises ValueError when invalid
        path = quote(parts.path or "/", safe=_PATH_SAFE)  # spaces, non-ASCII: percent-encoded, as httpx does
        target = path + (f"?{quote(parts.query, safe=_QUERY_SAFE)}" if parts.query else "")
        netloc = parts.netloc.rpartition("@")[2]  # no credentials in the URL we send
        return cls(url=f"{scheme}://{netloc}{target}", scheme=scheme, host=host, port=port, target=target)

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.scheme == "https" else 80
        return host if self.port == default else f"{host}:{self.port}"


@dataclass
class Answer:
    """A whole HTTP response."""

    status: int
    reason: str
    headers: dict[str, str]
    """Lower-case names (the last value of a repeated header)."""
    content: bytes

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")


class Transport(Protocol):
    def send(self, endpoint: Endpoint, headers: list[tuple[str, str]], body: bytes, timeout_s: float,
             max_bytes: int | None = None) -> Answer:
        """POST ``body``; the whole answer within ``timeout_s`` (for the whole
        attempt), its body no larger than ``max_bytes``, or
        :class:`TransportError`."""
        ...

    def close(self) -> None: ...


def environment_proxies() -> bool:
    """True when ``HTTP(S)_PROXY`` or ``ALL_PROXY`` (any case) is set, or, on
    macOS and Windows, a system proxy (what httpx would apply)."""
    if any(os.environ.get(name) for name in _PROXY_VARIABLES):
        return True
    if sys.platform in ("darwin", "win32"):
        import urllib.request  # reads the system settings there

        proxies = urllib.request.getproxies()
        return any(proxies.get(scheme) for scheme in ("http", "https", "all"))
    return False


_PROXY_VARIABLES = tuple(name for base in ("http_proxy", "https_proxy", "all_proxy") for name in (base, base.upper()))


def make_transport(ssl_context: Callable[[], ssl.SSLContext]) -> Transport:
    """A :class:`ProxiedTransport` when the environment names a proxy, else a
    :class:`PooledTransport`; ``ssl_context`` is called when first needed."""
    if environment_proxies():
        return ProxiedTransport(ssl_context())
    return PooledTransport(ssl_context)


class PooledTransport:
    """HTTP/1.1 over a stack of keep-alive connections (httpcore)."""

    def __init__(self, ssl_context: Callable[[], ssl.SSLContext], keepalive_expiry: float = KEEPALIVE_EXPIRY_S) -> None:
        self._ssl_factory = ssl_context
        self._ssl: ssl.SSLContext | None = None
        self._keepalive_expiry = keepalive_expiry
        self._idle: list[httpcore.HTTPConnection] = []
        self._lock = threading.Lock()
        self._closed = False

    def send(self, endpoint: Endpoint, headers: list[tuple[str, str]], body: bytes, timeout_s: float,
             max_bytes: int | None = None) -> Answer:
        with attempt_deadline(timeout_s) as deadline:
            return self._send(endpoint, headers, body, timeout_s, max_bytes, deadline)

    def _send(self, endpoint: Endpoint, headers: list[tuple[str, str]], body: bytes, timeout_s: float,
              max_bytes: int | None, deadline: float) -> Answer:
        origin = httpcore.Origin(endpoint.scheme.encode("ascii"), endpoint.host.encode("ascii"), endpoint.port)
        raw_headers = [(b"Host", endpoint.host_header.encode("ascii"))]
        raw_headers += [(name.encode("ascii"), value.encode("latin-1")) for name, value in headers]
        raw_headers.append((b"Content-Length", str(len(body)).encode("ascii")))
        request = httpcore.Request(
            b"POST",
            httpcore.URL(scheme=origin.scheme, host=origin.host, port=origin.port, target=endpoint.target.encode("ascii")),
            headers=raw_headers,
            content=body,
            extensions={"timeout": {"connect": timeout_s, "read": timeout_s, "write": timeout_s, "pool": timeout_s}},
        )
        connection = self._checkout(origin)
        try:
            with _mapped_errors():
                response = connection.handle_request(request)
                stream: Any = response.stream
                try:
                    answer_headers = {name.decode("latin-1").lower(): value.decode("latin-1")
                                      for name, value in response.headers}
                    check_length(answer_headers, max_bytes)
                    content = read_body(stream, deadline=deadline, max_bytes=max_bytes)
                finally:
                    stream.close()  # the connection is idle again, or closed (a body not read to its end)
        finally:
            self._checkin(connection)
        raw_reason = response.extensions.get("reason_phrase", b"")
        reason = raw_reason.decode("latin-1") if isinstance(raw_reason, bytes) else ""
        return Answer(response.status, reason or _phrase(response.status), answer_headers,
                      _decoded(content, answer_headers.get("content-encoding", ""), max_bytes))

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
        return httpcore.HTTPConnection(origin=origin, ssl_context=context, keepalive_expiry=self._keepalive_expiry,
                                       network_backend=DEADLINE_BACKEND)

    def _checkin(self, connection: httpcore.HTTPConnection) -> None:
        if connection.is_idle() and not connection.is_closed():  # a failed connect is "idle" and closed
            with self._lock:
                if not self._closed:
                    self._idle.append(connection)
                    return
        connection.close()


class ProxiedTransport:
    """Through an ``httpx.Client`` (imported only here), for proxies from the
    environment."""

    def __init__(self, ssl_context: ssl.SSLContext) -> None:
        import httpx

        self._httpx = httpx
        self._client = httpx.Client(
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=64),
            follow_redirects=False,
            trust_env=True,
            verify=ssl_context,
        )
        self.deadline_on_streams = use_deadline_backend(self._client)
        """False when this httpx no longer lets promptab reach its pools: the
        deadline is then checked between body chunks only."""

    def send(self, endpoint: Endpoint, headers: list[tuple[str, str]], body: bytes, timeout_s: float,
             max_bytes: int | None = None) -> Answer:
        httpx = self._httpx
        with attempt_deadline(timeout_s) as deadline:
            try:
                request = self._client.build_request("POST", endpoint.url, headers=headers, content=body,
                                                     timeout=httpx.Timeout(timeout_s))
                answer = self._client.send(request, stream=True)
                try:
                    answer_headers = {k.lower(): v for k, v in answer.headers.items()}
                    if not answer_headers.get("content-encoding", "").strip():
                        check_length(answer_headers, max_bytes)
                    content = read_body(answer.iter_bytes(), deadline=deadline, max_bytes=max_bytes)  # decoded by httpx
                finally:
                    answer.close()
            except httpx.HTTPError as exc:
                raise _httpx_error(httpx, exc) from None
            except httpx.InvalidURL as exc:
                raise TransportError("setup", type(exc).__name__, str(exc)) from None
            except httpcore.TimeoutException as exc:  # raised by the deadline streams under httpx
                raise TransportError("timeout", type(exc).__name__, str(exc)) from None
        return Answer(answer.status_code, answer.reason_phrase, answer_headers, content)

    def close(self) -> None:
        self._client.close()


def read_body(chunks: Iterable[bytes], *, deadline: float | None = None, max_bytes: int | None = None) -> bytes:
    """The whole body from its chunks, as they arrive: both transports read
    through here. Stops with :class:`TransportError` (``too_large``) as soon
    as the body is over ``max_bytes``, and (``timeout``) when a chunk arrives
    after ``deadline`` (a ``time.monotonic()`` value)."""
    parts: list[bytes] = []
    size = 0
    for chunk in chunks:
        size += len(chunk)
        if max_bytes is not None and size > max_bytes:
            raise TransportError("too_large", "ResponseTooLarge", f"stopped reading after {size} bytes")
        if deadline is not None and time.monotonic() > deadline:
            raise TransportError("timeout", "ReadTimeout", "the attempt's deadline passed while reading the answer")
        parts.append(chunk)
    return b"".join(parts)


def check_length(headers: dict[str, str], max_bytes: int | None) -> None:
    """Refuse at once an answer whose ``Content-Length`` is over ``max_bytes``."""
    if max_bytes is None:
        return
    try:
        declared = int(headers.get("content-length", "").strip())
    except ValueError:
        return
    if declared > max_bytes:
        raise TransportError("too_large", "ResponseTooLarge", f"it announces {declared} bytes (Content-Length)")


def _httpx_error(httpx: Any, exc: Exception) -> TransportError:
    name = type(exc).__name__
    if isinstance(exc, httpx.TimeoutException):
        return TransportError("timeout", name, str(exc))
    if isinstance(exc, httpx.RemoteProtocolError):
        return TransportError("disconnected", name, str(exc))
    if isinstance(exc, httpx.NetworkError):
        return TransportError("network", name, str(exc))
    return TransportError("setup", name, str(exc))


class _mapped_errors:
    """httpcore's errors as :class:`TransportError`."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        if exc is None or not isinstance(exc, Exception):
            return
        name = type(exc).__name__
        if isinstance(exc, httpcore.TimeoutException):
            raise TransportError("timeout", name, str(exc)) from None
        if isinstance(exc, httpcore.RemoteProtocolError):
            raise TransportError("disconnected", name, str(exc)) from None
        if isinstance(exc, httpcore.NetworkError):
            raise TransportError("network", name, str(exc)) from None
        if isinstance(exc, (httpcore.ProtocolError, httpcore.ProxyError, httpcore.UnsupportedProtocol)):
            raise TransportError("setup", name, str(exc)) from None


def _decoded(content: bytes, encoding: str, max_bytes: int | None = None) -> bytes:
    """The body without a ``gzip`` or ``deflate`` content coding (promptab
    asks for none, but some servers compress anyway), no larger than
    ``max_bytes`` once decompressed."""
    coding = encoding.strip().lower()
    if not coding or coding == "identity" or not content:
        return content
    try:
        if coding in ("gzip", "x-gzip"):
            return _inflate(content, 16 + zlib.MAX_WBITS, max_bytes)
        if coding == "deflate":
            try:
                return _inflate(content, zlib.MAX_WBITS, max_bytes)
            except zlib.error:
                return _inflate(content, -zlib.MAX_WBITS, max_bytes)
    except zlib.error as exc:
        raise TransportError("disconnected", "DecodingError", f"the {coding} answer does not decompress ({exc})") from None
    raise TransportError("setup", "DecodingError", f"the server answered in an unsupported content coding ({coding!r})")


def _inflate(content: bytes, wbits: int, max_bytes: int | None) -> bytes:
    inflater = zlib.decompressobj(wbits)
    out = inflater.decompress(content) if max_bytes is None else inflater.decompress(content, max_bytes + 1)
    if max_bytes is not None and len(out) > max_bytes:
        raise TransportError("too_large", "ResponseTooLarge", "it decompresses to more")
    if not inflater.eof:
        raise zlib.error("incomplete or truncated stream")
    return out


def _phrase(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return ""


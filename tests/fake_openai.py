"""An OpenAI-compatible chat completions server for the test suite.

A real HTTP server (stdlib ``ThreadingHTTPServer``) on 127.0.0.1 and a free
port, in a background thread. By default it answers every
``POST .../chat/completions`` with ``echo: <last user message>`` and token
usage counted in words, so tests can assert on what came back; a request asking for structured
output (``response_format: {type: json_schema}``) gets a JSON object that
fits its schema. Tests script
what the next requests get, in order, with the reply helpers below (429
with or without ``Retry-After``, exhausted quota, 500, 503, 401, 404, an
answer slower than the client's timeout, a dropped connection, malformed
JSON, a missing ``usage``, an answer dribbled a byte at a time, a flood of
hundreds of megabytes streamed from a generator), and read what the server
received in ``.requests``.

It is loaded for the whole suite as a pytest plugin (``pytest_plugins`` in
``tests/conftest.py``), so tests just ask for the fixture::

    def test_x(fake_openai):
        fake_openai.queue(error(503), ok("hi"))
        ...  # point a provider at fake_openai.base_url

``fake_openai_server`` is one server per session; ``fake_openai`` is the same
server, reset before and after each test. :class:`FakeOpenAI` is also a
context manager, for a test that needs a server of its own (e.g. to stop it).
:class:`InFlight` measures how many requests the server holds at once.
"""

from __future__ import annotations

import json
import socket
import threading
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Iterator

import pytest


@dataclass
class Reply:
    """What the server does with one request."""

    kind: str = "ok"
    """ok, error, drop, malformed, dribble, flood."""
    status: int = 200
    text: str | None = None
    """The answer's content; None: the default (echo) answer."""
    usage: bool = True
    body: Any = None
    """For errors: the JSON (or str) body."""
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0
    """Wait before answering (on top of the server's ``delay_s``)."""
    interval_s: float = 0.0
    """dribble: the pause between two bytes."""
    size: int = 0
    """flood: the body's size in bytes."""
    declare_length: bool = True
    """flood: send ``Content-Length`` (else the body ends when the connection closes)."""
    head_too: bool = False
    """dribble: the status line and headers are dribbled too."""


def ok(text: str | None = None, *, delay_s: float = 0.0) -> Reply:
    return Reply(text=text, delay_s=delay_s)


def no_usage(text: str | None = None) -> Reply:
    """A normal answer without the ``usage`` object (as some servers do)."""
    return Reply(text=text, usage=False)


def error(
    status: int,
    message: str | None = None,
    *,
    code: str | None = None,
    type: str | None = None,
    retry_after: str | None = None,
    headers: dict[str, str] | None = None,
) -> Reply:
    """An OpenAI-style error: ``{"error": {"message", "type", "code"}}``."""
    extra = dict(headers or {})
    if retry_after is not None:
        extra["Retry-After"] = retry_after
    body = {
        "error": {
            "message": message if message is not None else f"fake server error {status}",
            "type": type or ("rate_limit_error" if status == 429 else "server_error" if status >= 500 else "invalid_request_error"),
            "param": None,
            "code": code,
        }
    }
    return Reply(kind="error", status=status, body=body, headers=extra)


def rate_limited(retry_after: str | None = None) -> Reply:
    """429 Too Many Requests, with ``Retry-After`` when given."""
    return error(429, "Rate limit reached for requests", code="rate_limit_exceeded", retry_after=retry_after)


def quota_exhausted() -> Reply:
    """429 as OpenAI sends it when the account has no credit left."""
    return error(
        429,
        "You exceeded your current quota, please check your plan and billing details.",
        code="insufficient_quota",
        type="insufficient_quota",
    )


def slow(seconds: float, text: str | None = None) -> Reply:
    """An answer that comes after ``seconds`` (past a short client timeout)."""
    return Reply(text=text, delay_s=seconds)


def drop() -> Reply:
    """Close the connection without answering."""
    return Reply(kind="drop")


def malformed(body: str = '{"id": "chatcmpl-1", "choices": [') -> Reply:
    """200 with a body that is not JSON."""
    return Reply(kind="malformed", body=body)


def dribble(interval_s: float = 0.5, text: str = "slowly", *, head_too: bool = False) -> Reply:
    """A valid answer sent one byte every ``interval_s`` (the body only, or
    the status line and headers too): each read gets a byte well within a
    per-read timeout, and the whole answer takes minutes."""
    return Reply(kind="dribble", text=text, interval_s=interval_s, head_too=head_too)


def flood(size: int = 200_000_000, *, declare_length: bool = True) -> Reply:
    """A 200 whose body is ``size`` bytes of one answer's content, written in
    64 KB pieces from a generator (never held in memory), with or without a
    ``Content-Length``."""
    return Reply(kind="flood", size=size, declare_length=declare_length)


def echoing_key(key: str, *, status: int = 500, after: int = 255) -> Reply:
    """An error whose message quotes ``key`` after ``after`` characters of
    text: past a cut at 300, a key there would be cut in two."""
    filler = ("upstream request failed; " * 20)[:after]
    return error(status, f"{filler}api key {key} rejected by upstream")


@dataclass
class Received:
    """One request as the server saw it."""

    method: str
    path: str
    headers: dict[str, str]
    """Lower-case names."""
    body: Any
    """Parsed JSON, or the raw text when it is not JSON."""


def default_text(body: Any) -> str:
    """``echo: <last user message>``: deterministic and prompt-dependent."""
    messages = body.get("messages") if isinstance(body, dict) else None
    for message in reversed(messages or []):
        if isinstance(message, dict) and message.get("role") == "user":
            return f"echo: {message.get('content', '')}"
    return "echo:"


STRUCTURED_NUMBER = 0.75
"""What a number field of a structured-output answer holds by default."""


def structured_text(body: Any) -> str | None:
    """For a request with ``response_format: {type: json_schema, ...}``: a JSON
    object that fits the schema (strings echo the last user message, numbers
    are :data:`STRUCTURED_NUMBER`); None for any other request."""
    fmt = body.get("response_format") if isinstance(body, dict) else None
    if not isinstance(fmt, dict) or fmt.get("type") != "json_schema":
        return None
    schema = (fmt.get("json_schema") or {}).get("schema") or {}
    return json.dumps(_fill(schema, default_text(body)))


def _fill(schema: Any, echo: str) -> Any:
    kind = schema.get("type") if isinstance(schema, dict) else None
    if kind == "object":
        return {name: _fill(sub, echo) for name, sub in (schema.get("properties") or {}).items()}
    if kind in ("number", "integer"):
        return STRUCTURED_NUMBER if kind == "number" else 1
    if kind == "boolean":
        return True
    if kind == "array":
        return []
    return echo


def _words(body: Any) -> int:
    messages = body.get("messages") if isinstance(body, dict) else None
    return sum(len(str(m.get("content", "")).split()) for m in messages or [] if isinstance(m, dict))


class FakeOpenAI:
    """The server. ``base_url`` ends in ``/v1``, like OpenAI's."""

    def __init__(self) -> None:
        self.requests: list[Received] = []
        self.delay_s = 0.0
        """Fixed delay before every answer (the benchmark uses 0.1)."""
        self.responder: Callable[[Any], str] | None = None
        """Computes the default answer's text from the request body."""
        self.fallback: Reply | None = None
        """What requests get once the queue is empty (default: ``ok()``)."""
        self.in_flight = 0
        self.max_in_flight = 0
        """The most chat requests being answered at once since the last reset."""
        self._queue: deque[Reply] = deque()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.fake = self  # type: ignore[attr-defined]
        self._server.handle_error = lambda request, address: None  # type: ignore[method-assign]
        self.port = self._server.server_address[1]
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-openai", daemon=True
        )
        self._thread.start()

    def queue(self, *replies: Reply) -> None:
        """The next requests get these replies, in order."""
        with self._lock:
            self._queue.extend(replies)

    def reset(self) -> None:
        with self._lock:
            self._queue.clear()
            self.requests = []
            self.max_in_flight = 0
            self.delay_s = 0.0
            self.responder = None
            self.fallback = None
            wake, self._wake = self._wake, threading.Event()
        wake.set()  # slow answers still waiting give up now

    @property
    def completions(self) -> list[Received]:
        """The chat completion requests received."""
        return [r for r in self.requests if r.path.split("?")[0].endswith("/chat/completions")]

    def stop(self) -> None:
        self._wake.set()
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> FakeOpenAI:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- used by the handler ----------------------------------------------

    def _enter(self, delta: int) -> None:
        with self._lock:
            self.in_flight += delta
            self.max_in_flight = max(self.max_in_flight, self.in_flight)

    def _take(self, received: Received) -> tuple[Reply, float, threading.Event]:
        with self._lock:
            self.requests.append(received)
            reply = self._queue.popleft() if self._queue else (self.fallback or Reply())
            return reply, self.delay_s, self._wake

    def _text(self, body: Any, reply: Reply) -> str:
        if reply.text is not None:
            return reply.text
        if self.responder is None:
            structured = structured_text(body)
            if structured is not None:
                return structured
        return (self.responder or default_text)(body)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    request_queue_size = 256
    """The stdlib's 5 makes concurrent clients wait for a SYN retry (1 s)."""


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "FakeOpenAI/1.0"
    disable_nagle_algorithm = True  # else each answer waits ~40 ms for a delayed ACK

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def do_GET(self) -> None:
        fake: FakeOpenAI = self.server.fake  # type: ignore[attr-defined]
        fake._take(Received("GET", self.path, self._headers(), None))
        if self.path.rstrip("/").endswith("/models"):
            self._send(200, {"object": "list", "data": [{"id": "fake-model", "object": "model"}]})
        else:
            self._send(404, {"error": {"message": f"no route {self.path}", "type": "invalid_request_error"}})

    def do_POST(self) -> None:
        fake: FakeOpenAI = self.server.fake  # type: ignore[attr-defined]
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length).decode("utf-8", "replace") if length else ""
        try:
            body: Any = json.loads(raw)
        except ValueError:
            body = raw
        reply, delay, wake = fake._take(Received("POST", self.path, self._headers(), body))
        fake._enter(1)
        try:
            self._answer(fake, body, raw, reply, delay, wake)
        finally:
            fake._enter(-1)

    def _answer(self, fake: FakeOpenAI, body: Any, raw: str, reply: Reply, delay: float,
                wake: threading.Event) -> None:
        if delay + reply.delay_s > 0 and wake.wait(delay + reply.delay_s):
            self._drop()  # reset while waiting
            return
        if not self.path.split("?")[0].rstrip("/").endswith("/chat/completions"):
            self._send(404, {"error": {"message": f"Unknown request URL: POST {self.path}", "code": "unknown_url"}})
            return
        if reply.kind == "drop":
            self._drop()
            return
        if reply.kind == "malformed":
            self._send(200, reply.body, raw=True)
            return
        if reply.kind == "error":
            self._send(reply.status, reply.body, headers=reply.headers)
            return
        if reply.kind == "flood":
            self._flood(reply.size, reply.declare_length)
            return
        if reply.kind == "dribble":
            self._dribble(reply, fake._text(body, reply), wake)
            return
        text = fake._text(body, reply)
        answer: dict[str, Any] = {
            "id": f"chatcmpl-{len(fake.requests)}",
            "object": "chat.completion",
            "created": 1700000000,
            "model": body.get("model", "") if isinstance(body, dict) else "",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        }
        if reply.usage:
            tokens_in, tokens_out = _words(body), len(text.split())
            answer["usage"] = {
                "prompt_tokens": tokens_in,
                "completion_tokens": tokens_out,
                "total_tokens": tokens_in + tokens_out,
            }
        self._send(200, answer, headers=reply.headers)

    def _headers(self) -> dict[str, str]:
        return {k.lower(): v for k, v in self.headers.items()}

    def _send(self, status: int, body: Any, *, headers: dict[str, str] | None = None, raw: bool = False) -> None:
        data = (body if raw else json.dumps(body)).encode("utf-8")
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)
            self.wfile.flush()
        except OSError:  # the client gave up (timeout): nothing to tell it
            self.close_connection = True

    def _flood(self, size: int, declare_length: bool) -> None:
        head = b'{"choices": [{"index": 0, "message": {"role": "assistant", "content": "'
        tail = b'"}, "finish_reason": "stop"}]}'
        piece = b"x" * 65536
        self.close_connection = True
        try:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            if declare_length:
                self.send_header("Content-Length", str(size))
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(head)
            left = size - len(head) - len(tail)
            while left > 0:
                chunk = piece if left >= len(piece) else piece[:left]
                self.wfile.write(chunk)
                left -= len(chunk)
            self.wfile.write(tail)
            self.wfile.flush()
        except OSError:  # the client stopped reading
            pass

    def _dribble(self, reply: Reply, text: str, wake: threading.Event) -> None:
        body = json.dumps(
            {"choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}]}
        ).encode("utf-8")
        head = (f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
                "Connection: close\r\n\r\n").encode("ascii")
        self.close_connection = True
        try:
            if not reply.head_too:
                self.wfile.write(head)
                self.wfile.flush()
                head = b""
            for byte in head + body:
                self.wfile.write(bytes([byte]))
                self.wfile.flush()
                if wake.wait(reply.interval_s):  # reset: stop
                    return
        except OSError:  # the client gave up
            pass

    def _drop(self) -> None:
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


@pytest.fixture(scope="session")
def fake_openai_server() -> Iterator[FakeOpenAI]:
    """One fake server for the whole session (see :func:`fake_openai`)."""
    server = FakeOpenAI()
    yield server
    server.stop()


@pytest.fixture
def fake_openai(fake_openai_server: FakeOpenAI) -> Iterator[FakeOpenAI]:
    """The fake OpenAI-compatible server, with no scripted replies, no delay
    and no recorded requests at the start of the test."""
    fake_openai_server.reset()
    yield fake_openai_server
    fake_openai_server.reset()


class InFlight:
    """Measures how many requests the server holds at once, from its public
    hooks: a request is counted when it arrives (``requests``) and released
    when its answer is computed (``responder``, after the server's delay)."""

    def __init__(self, fake: FakeOpenAI) -> None:
        self.fake = fake
        self.answered = 0
        self.max = 0
        self._lock = threading.Lock()
        fake.responder = self

    def __call__(self, body: Any) -> str:
        with self._lock:
            self.max = max(self.max, len(self.fake.requests) - self.answered)
            self.answered += 1
        return default_text(body)

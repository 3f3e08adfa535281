"""The openai provider's HTTP transport: connection reuse, connections the
server closes, proxies from the environment, URLs and content codings."""

from __future__ import annotations

import gzip
import json
import socket
import ssl
import subprocess
import sys
import threading
import zlib
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from pytest_promptab.providers.openai import _endpoint
from pytest_promptab.providers.transport import (
    Endpoint,
    PooledTransport,
    TransportError,
    _decoded,
    environment_proxies,
)
from tests.fake_openai import FakeOpenAI, InFlight, Reply, ok
from tests.test_openai_provider import make_provider, make_request

BODY = json.dumps({"model": "fake-model", "messages": [{"role": "user", "content": "hi"}]}).encode()
HEADERS = [("Content-Type", "application/json")]


@pytest.fixture(autouse=True)
def _no_proxies(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL"):
        monkeypatch.delenv(name, raising=False)


def no_ssl() -> ssl.SSLContext:
    raise AssertionError("a plain-http transport must not build a TLS context")


def test_connections_are_reused_and_as_many_kept_as_were_in_flight(fake_openai: FakeOpenAI) -> None:
    fake_openai.delay_s = 0.3
    gauge = InFlight(fake_openai)
    transport = PooledTransport(no_ssl)
    endpoint = _endpoint(fake_openai.base_url)
    answers = []
    threads = [
        threading.Thread(target=lambda: answers.append(transport.send(endpoint, HEADERS, BODY, 10.0)))
        for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [a.status for a in answers] == [200] * 8
    # one connection per call in flight at once (the client's window of a call holds the server's)
    kept = transport.idle_connections
    assert 1 < gauge.max <= kept <= 8

    fake_openai.delay_s = 0.0
    for _ in range(5):
        assert transport.send(endpoint, HEADERS, BODY, 10.0).status == 200
    assert transport.idle_connections == kept  # reused: no new connection for calls one at a time
    transport.close()
    assert transport.idle_connections == 0


def test_an_answer_with_connection_close_is_not_reused(fake_openai: FakeOpenAI) -> None:
    fake_openai.queue(Reply(text="last on this connection", headers={"Connection": "close"}), ok("next"))
    transport = PooledTransport(no_ssl)
    endpoint = _endpoint(fake_openai.base_url)
    first = transport.send(endpoint, HEADERS, BODY, 10.0)
    assert json.loads(first.content)["choices"][0]["message"]["content"] == "last on this connection"
    assert transport.idle_connections == 0
    second = transport.send(endpoint, HEADERS, BODY, 10.0)
    assert json.loads(second.content)["choices"][0]["message"]["content"] == "next"
    assert transport.idle_connections == 1


class HangUpServer:
    """Answers one request per connection, announcing keep-alive, then
    closes the connection: what a server with a short idle timeout does."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self.closed = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            with conn:
                data = b""
                while b"\r\n\r\n" not in data:
                    data += conn.recv(65536)
                head, _, rest = data.partition(b"\r\n\r\n")
                length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length"))
                while len(rest) < length:
                    rest += conn.recv(65536)
                body = json.dumps({"choices": [{"message": {"content": f"connection {self.connections}"}}]}).encode()
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: keep-alive\r\n"
                             b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
            self.closed.set()

    def stop(self) -> None:
        self.sock.close()


def test_an_idle_connection_the_server_closed_is_not_used() -> None:
    server = HangUpServer()
    try:
        provider = make_provider(f"http://127.0.0.1:{server.port}/v1", retry={"max_attempts": 1})
        assert provider.complete(make_request()).text == "connection 1"
        assert server.closed.wait(5)
        # without the check at checkout this attempt would fail on the dead connection (no retry allowed)
        assert provider.complete(make_request()).text == "connection 2"
        assert server.connections == 2
        provider.close()
    finally:
        server.stop()


def test_a_proxy_from_the_environment_is_used(fake_openai: FakeOpenAI, monkeypatch: pytest.MonkeyPatch) -> None:
    parts = urlsplit(fake_openai.base_url)
    monkeypatch.setenv("HTTP_PROXY", f"http://{parts.netloc}")
    assert environment_proxies()
    provider = make_provider("http://promptab-via-proxy.invalid/v1")
    assert provider.complete(make_request("through the proxy")).text == "echo: through the proxy"
    [sent] = fake_openai.requests
    assert sent.path == "http://promptab-via-proxy.invalid/v1/chat/completions"  # absolute form: sent to a proxy
    assert sent.headers["host"] == "promptab-via-proxy.invalid"
    provider.close()


def test_a_plain_http_provider_imports_neither_httpx_nor_ssl_setup(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "from pytest_promptab.providers.openai import OpenAIProvider\n"
        "from pytest_promptab.workflow.schema import ProviderConfig\n"
        "OpenAIProvider(ProviderConfig(type='openai', model='m', base_url='http://127.0.0.1:9/v1'), Path('.'))\n"
        "print('httpx' in sys.modules)\n"
    )
    root = Path(__file__).resolve().parent.parent
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=root, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize(
    ("base_url", "url", "host", "port", "target", "host_header"),
    [
        ("http://127.0.0.1:11434/v1", "http://127.0.0.1:11434/v1/chat/completions", "127.0.0.1", 11434,
         "/v1/chat/completions", "127.0.0.1:11434"),
        ("https://api.example.com/v1/", "https://api.example.com/v1/chat/completions", "api.example.com", 443,
         "/v1/chat/completions", "api.example.com"),
        ("HTTPS://res.example.com/openai/v1?api-version=2024-10", "https://res.example.com/openai/v1/chat/completions?api-version=2024-10",
         "res.example.com", 443, "/openai/v1/chat/completions?api-version=2024-10", "res.example.com"),
        ("http://[::1]:8080/v1/chat/completions", "http://[::1]:8080/v1/chat/completions", "::1", 8080,
         "/v1/chat/completions", "[::1]:8080"),
        ("http://user:pw@localhost/v1", "http://localhost/v1/chat/completions", "localhost", 80,
         "/v1/chat/completions", "localhost"),
        ("http://bücher.example/v1", "http://bücher.example/v1/chat/completions", "xn--bcher-kva.example", 80,
         "/v1/chat/completions", "xn--bcher-kva.example"),
        ("http://localhost:8000/my models/v1?tag=ä b", "http://localhost:8000/my%20models/v1/chat/completions?tag=%C3%A4%20b",
         "localhost", 8000, "/my%20models/v1/chat/completions?tag=%C3%A4%20b", "localhost:8000"),
    ],
)
def test_endpoint(base_url: str, url: str, host: str, port: int, target: str, host_header: str) -> None:
    endpoint = _endpoint(base_url)
    assert endpoint == Endpoint(url=url, scheme=urlsplit(url).scheme, host=host, port=port, target=target)
    assert endpoint.host_header == host_header


def test_content_codings() -> None:
    body = b'{"choices": []}'
    assert _decoded(gzip.compress(body), "gzip") == body
    assert _decoded(zlib.compress(body), "deflate") == body
    raw = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    assert _decoded(raw.compress(body) + raw.flush(), "deflate") == body
    assert _decoded(body, "") == body
    assert _decoded(body, "identity") == body
    with pytest.raises(TransportError) as info:
        _decoded(body, "br")
    assert info.value.kind == "setup" and "'br'" in info.value.message
    with pytest.raises(TransportError) as info:
        _decoded(b"not gzip", "gzip")
    assert info.value.kind == "disconnected"


@pytest.mark.parametrize("name", ["http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"])
def test_proxy_variables_are_seen_in_any_case(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    assert not environment_proxies()
    monkeypatch.setenv(name, "http://127.0.0.1:3128")
    assert environment_proxies()

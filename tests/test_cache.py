"""Record and replay of provider responses (``--promptab-cache``)."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

import pytest

from pytest_promptab.errors import ConfigError, ProviderError, ReplayMissError
from pytest_promptab.providers.base import Provider, ProviderRequest, ProviderResponse
from pytest_promptab.providers.cache import (
    CachingProvider,
    ResponseCache,
    cache_key,
    provider_identity,
)
from pytest_promptab.providers.openai import OpenAIProvider
from pytest_promptab.workflow.schema import Pricing, ProviderConfig, RetryConfig
from tests.fake_openai import FakeOpenAI

KEY = "sk-cache-test-Hq4Wm7Zx2Kp9Lr5T"


def make_request(prompt: str = "hello", **overrides: Any) -> ProviderRequest:
    fields: dict[str, Any] = {
        "messages": [{"role": "user", "content": prompt}],
        "model": "fake-model",
        "settings": {"temperature": 0.7},
        "node_id": "reply",
        "case_id": "c1",
        "run": 1,
        "seed": 11,
        "variant": "baseline",
        "workflow": "wf",
    }
    fields.update(overrides)
    return ProviderRequest(**fields)


class CountingProvider:
    """A provider that answers ``<prompt> #<call number>`` and counts calls."""

    def __init__(self) -> None:
        self.calls: list[ProviderRequest] = []
        self.closed = False
        self._lock = threading.Lock()

    def complete(self, request: ProviderRequest) -> ProviderResponse:
        with self._lock:
            self.calls.append(request)
            number = len(self.calls)
        return ProviderResponse(f"{request.prompt} #{number}", 3, 5, 0.25, {"finish_reason": "stop"})

    def close(self) -> None:
        self.closed = True


def never_called() -> Provider:
    raise AssertionError("replay must not build the real provider")


def openai_factory(base_url: str) -> Any:
    config = ProviderConfig(
        type="openai",
        model="fake-model",
        base_url=base_url,
        pricing=Pricing(input_per_mtok=1.0, output_per_mtok=2.0),
        retry=RetryConfig(max_attempts=1),
    )
    return lambda: OpenAIProvider(config, Path("."))


# -- the key ------------------------------------------------------------------------


def test_key_separates_runs_cases_nodes_settings_models_and_messages() -> None:
    base = make_request()
    key = cache_key(base, "openai")
    different = [
        make_request(run=2),
        make_request(case_id="c2"),
        make_request(node_id="classify"),
        make_request(settings={"temperature": 0.2}),
        make_request(model="other-model"),
        make_request("hello!"),
    ]
    keys = {cache_key(r, "openai") for r in different}
    assert key not in keys and len(keys) == len(different)
    assert cache_key(base, "python") != key


def test_key_ignores_what_does_not_change_the_request() -> None:
    key = cache_key(make_request(), "openai")
    # the same request sent by another variant (a node it does not override) shares the answer
    assert cache_key(make_request(variant="terse", workflow="other", seed=99), "openai") == key
    # settings order does not matter
    a = make_request(settings={"temperature": 0.7, "max_tokens": 10})
    b = make_request(settings={"max_tokens": 10, "temperature": 0.7})
    assert cache_key(a, "openai") == cache_key(b, "openai")


def test_provider_identity_tells_servers_and_callables_apart() -> None:
    def identity(**fields: Any) -> dict[str, Any]:
        return provider_identity(ProviderConfig(**fields))

    request = make_request()
    plain = cache_key(request, "openai", identity(type="openai", model="m"))
    # base_url from $OPENAI_BASE_URL (not in the file) and non-answer fields do not count
    assert plain == cache_key(request, "openai")
    assert plain == cache_key(
        request, "openai", identity(type="openai", model="m", timeout_s=5, api_key_env="X", pricing=Pricing())
    )
    # a base_url written in the file does, without case or trailing slash (credentials are refused at load)
    local = cache_key(request, "openai", identity(type="openai", base_url="http://localhost:11434/v1"))
    assert local != plain
    assert local == cache_key(request, "openai", identity(type="openai", base_url="HTTP://LocalHost:11434/v1/"))
    assert local != cache_key(request, "openai", identity(type="openai", base_url="http://localhost:8000/v1"))
    # two local models behind python callables
    a = cache_key(request, "python", identity(type="python", callable="models.py:small"))
    b = cache_key(request, "python", identity(type="python", callable="models.py:large"))
    assert a != b


def test_variants_on_two_servers_do_not_share_answers(tmp_path: Path) -> None:
    cache = ResponseCache(tmp_path)
    live_a, live_b = CountingProvider(), CountingProvider()
    live_b.calls.append(make_request("offset"))
    config_a = ProviderConfig(type="openai", model="m", base_url="http://a.example/v1")
    config_b = ProviderConfig(type="openai", model="m", base_url="http://b.example/v1")
    via_a = CachingProvider(lambda: live_a, cache, "auto", "openai", config=config_a)
    via_b = CachingProvider(lambda: live_b, cache, "auto", "openai", config=config_b)
    assert via_a.complete(make_request()).text == "hello #1"
    assert via_b.complete(make_request()).text == "hello #2"
    stored = "".join(p.read_text(encoding="utf-8") for p in tmp_path.rglob("*.json"))
    assert "example" not in stored  # hosts are keyed, never stored


def test_one_cache_calls_a_key_once_across_wrappers(tmp_path: Path) -> None:
    """Two configs that differ only in what does not change the answer (here
    the timeout) share recordings, and within one session a key goes live once."""
    cache = ResponseCache(tmp_path)
    live_a, live_b = CountingProvider(), CountingProvider()
    a = CachingProvider(lambda: live_a, cache, "record", "openai", config=ProviderConfig(model="m", timeout_s=5))
    b = CachingProvider(lambda: live_b, cache, "record", "openai", config=ProviderConfig(model="m", timeout_s=9))
    assert a.complete(make_request()).text == b.complete(make_request()).text == "hello #1"
    assert (len(live_a.calls), len(live_b.calls)) == (1, 0)


# -- the files ------------------------------------------------------------------------


def test_entry_file_layout_and_format(tmp_path: Path) -> None:
    cache = ResponseCache(tmp_path / "cache")
    provider = CachingProvider(CountingProvider, cache, "record", "openai")
    provider.complete(make_request("hello"))
    key = cache_key(make_request("hello"), "openai")
    path = tmp_path / "cache" / key[:2] / f"{key}.json"
    assert sorted(p.name for p in (tmp_path / "cache").rglob("*") if p.is_file()) == [f"{key}.json"]
    text = path.read_text(encoding="utf-8")
    data = json.loads(text)
    assert text == json.dumps(data, sort_keys=True, indent=2, ensure_ascii=False) + "\n"
    assert data["request"] == {
        "provider": "openai",
        "model": "fake-model",
        "messages": [{"role": "user", "content": "hello"}],
        "settings": {"temperature": 0.7},
        "node": "reply",
        "case": "c1",
        "run": 1,
    }
    assert data["response"] == {
        "text": "hello #1",
        "tokens_in": 3,
        "tokens_out": 5,
        "cost_usd": 0.25,
        "extra": {"finish_reason": "stop"},
    }


def test_non_ascii_is_kept_readable(tmp_path: Path) -> None:
    cache = ResponseCache(tmp_path)
    CachingProvider(CountingProvider, cache, "record", "openai").complete(make_request("café ☕"))
    [path] = tmp_path.rglob("*.json")
    assert "café ☕ #1" in path.read_text(encoding="utf-8")


# -- modes ----------------------------------------------------------------------------


def test_record_then_replay_with_the_server_gone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    cache = ResponseCache(tmp_path / ".promptab" / "cache")
    requests = [make_request(f"prompt {i}", run=run) for i in range(3) for run in (1, 2)]
    with FakeOpenAI() as server:
        server.responder = lambda body: "answer to " + body["messages"][-1]["content"] + f" t={body['temperature']}"
        recorder = CachingProvider(openai_factory(server.base_url), cache, "record", "openai")
        recorded = [recorder.complete(r) for r in requests]
        recorder.close()
        assert len(server.completions) == 6
        base_url = server.base_url
    # the server is stopped: nothing answers at base_url any more
    with pytest.raises(ProviderError):
        openai_factory(base_url)().complete(requests[0])

    replayer = CachingProvider(never_called, cache, "replay", "openai")
    replayed = [replayer.complete(r) for r in requests]
    replayer.close()
    assert [r.text for r in replayed] == [r.text for r in recorded]
    assert replayed[0].text == "answer to prompt 0 t=0.7"
    assert [(r.tokens_in, r.tokens_out, r.cost_usd) for r in replayed] == [
        (r.tokens_in, r.tokens_out, r.cost_usd) for r in recorded
    ]
    assert recorded[0].cost_usd is not None


def test_replay_miss_says_how_to_record(tmp_path: Path) -> None:
    provider = CachingProvider(never_called, ResponseCache(tmp_path), "replay", "openai")
    with pytest.raises(ReplayMissError) as info:
        provider.complete(make_request(node_id="classify", case_id="double-charge", run=3))
    text = str(info.value)
    assert "no recorded response for node 'classify', case 'double-charge', run 3" in text
    assert "run once with --promptab-cache record (or auto) to record it" in text
    assert isinstance(info.value, ProviderError)


def test_auto_replays_hits_and_records_misses(tmp_path: Path) -> None:
    cache = ResponseCache(tmp_path)
    live = CountingProvider()
    first = CachingProvider(lambda: live, cache, "auto", "openai")
    assert first.complete(make_request("a")).text == "a #1"
    assert first.complete(make_request("a")).text == "a #1"  # hit
    assert first.complete(make_request("a", run=2)).text == "a #2"  # another sample: live
    assert len(live.calls) == 2
    # a later session: everything recorded is replayed
    later_live = CountingProvider()
    later = CachingProvider(lambda: later_live, ResponseCache(tmp_path), "auto", "openai")
    assert later.complete(make_request("a", run=2)).text == "a #2"
    assert later.complete(make_request("b")).text == "b #1"
    assert [r.prompt for r in later_live.calls] == ["b"]


def test_auto_with_everything_recorded_never_builds_the_provider(tmp_path: Path) -> None:
    cache = ResponseCache(tmp_path)
    CachingProvider(CountingProvider, cache, "record", "openai").complete(make_request())
    assert CachingProvider(never_called, cache, "auto", "openai").complete(make_request()).text == "hello #1"


def test_record_calls_live_and_overwrites(tmp_path: Path) -> None:
    CachingProvider(CountingProvider, ResponseCache(tmp_path), "record", "openai").complete(make_request())
    second = CountingProvider()
    second.calls.append(make_request("earlier"))  # so its answer is "#2"
    # a later session (a new cache object) records again
    again = CachingProvider(lambda: second, ResponseCache(tmp_path), "record", "openai")
    assert again.complete(make_request()).text == "hello #2"
    replay = CachingProvider(never_called, ResponseCache(tmp_path), "replay", "openai")
    assert replay.complete(make_request()).text == "hello #2"


def test_record_calls_each_request_once_per_session(tmp_path: Path) -> None:
    """Two variants sending the very same request share one recorded answer,
    so a later replay gives exactly what the recording session saw."""
    live = CountingProvider()
    provider = CachingProvider(lambda: live, ResponseCache(tmp_path), "record", "openai")
    texts = [provider.complete(make_request(variant=v)).text for v in ("baseline", "terse", "empathetic")]
    assert texts == ["hello #1"] * 3
    assert len(live.calls) == 1


def test_provider_errors_are_not_recorded(tmp_path: Path) -> None:
    class Failing(CountingProvider):
        def complete(self, request: ProviderRequest) -> ProviderResponse:
            raise ProviderError("HTTP 503", status=503)

    cache = ResponseCache(tmp_path)
    with pytest.raises(ProviderError, match="HTTP 503"):
        CachingProvider(Failing, cache, "auto", "openai").complete(make_request())
    assert list(tmp_path.rglob("*.json")) == []


def test_off_is_not_a_wrapping_mode(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="off"):
        CachingProvider(CountingProvider, ResponseCache(tmp_path), "off", "openai")


def test_close_closes_the_real_provider_only_when_built(tmp_path: Path) -> None:
    live = CountingProvider()
    provider = CachingProvider(lambda: live, ResponseCache(tmp_path), "auto", "openai")
    provider.close()  # nothing built yet: fine
    provider.complete(make_request())
    provider.close()
    assert live.closed


def test_a_broken_recording_is_named_in_replay_and_rerecorded_in_auto(tmp_path: Path) -> None:
    CachingProvider(CountingProvider, ResponseCache(tmp_path), "record", "openai").complete(make_request())
    cache = ResponseCache(tmp_path)  # a later session
    [path] = tmp_path.rglob("*.json")
    path.write_text("<<<<<<< HEAD\n{}\n=======\n", encoding="utf-8")
    with pytest.raises(ProviderError) as info:
        CachingProvider(never_called, cache, "replay", "openai").complete(make_request())
    assert str(path) in str(info.value) and "not a valid recording" in str(info.value)
    assert CachingProvider(CountingProvider, cache, "auto", "openai").complete(make_request()).text == "hello #1"
    assert json.loads(path.read_text(encoding="utf-8"))["response"]["text"] == "hello #1"


# -- concurrency and secrets ------------------------------------------------------------


def test_concurrent_writes_from_threads(tmp_path: Path) -> None:
    cache = ResponseCache(tmp_path)
    live = CountingProvider()
    provider = CachingProvider(lambda: live, cache, "auto", "openai")
    requests = [make_request(f"p{i % 40}", run=1 + i % 3) for i in range(480)]  # 120 keys, each 4 times
    errors: list[BaseException] = []

    def worker(chunk: list[ProviderRequest]) -> None:
        try:
            for request in chunk:
                provider.complete(request)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(requests[i::16],)) for i in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(live.calls) == 120  # each key called live exactly once
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert len(files) == 120 and all(p.suffix == ".json" for p in files)  # no temp files left
    for path in files:
        assert json.loads(path.read_text(encoding="utf-8"))["response"]["text"].startswith("p")


def test_concurrent_puts_of_one_key_leave_a_whole_file(tmp_path: Path) -> None:
    cache = ResponseCache(tmp_path)
    key = cache_key(make_request(), "openai")
    barrier = threading.Barrier(12)

    def writer(i: int) -> None:
        barrier.wait()
        for j in range(20):
            cache.put(key, {"n": i}, ProviderResponse("x" * (1000 * (i + 1)) + str(j)))
            assert cache.get(key) is not None

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert os.listdir(tmp_path / key[:2]) == [f"{key}.json"]
    hit = cache.get(key)
    assert hit is not None and hit.text.startswith("x")


def test_no_key_or_host_is_stored(fake_openai: FakeOpenAI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    cache = ResponseCache(tmp_path)
    provider = CachingProvider(openai_factory(fake_openai.base_url), cache, "record", "openai")
    provider.complete(make_request("what is my key?"))
    provider.close()
    assert fake_openai.requests[0].headers["authorization"] == f"Bearer {KEY}"
    [path] = tmp_path.rglob("*.json")
    stored = path.read_text(encoding="utf-8")
    assert "echo: what is my key?" in stored
    assert KEY not in stored and "authorization" not in stored.lower()
    assert "127.0.0.1" not in stored and str(fake_openai.port) not in stored

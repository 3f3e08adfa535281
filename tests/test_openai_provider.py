"""The openai provider against a real local HTTP server, and the retry policy."""

from __future__ import annotations

import email.utils
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from pytest_promptab.errors import ConfigError, ProviderError
from pytest_promptab.providers.base import ProviderRequest
from pytest_promptab.providers.openai import OpenAIProvider
from pytest_promptab.providers.registry import ProviderRegistry
from pytest_promptab.providers.retry import (
    TransientFailure,
    backoff_delay,
    is_retryable_status,
    parse_retry_after,
    run_with_retries,
)
from pytest_promptab.workflow.schema import Pricing, ProviderConfig, RetryConfig
from tests.fake_openai import (
    FakeOpenAI,
    Reply,
    drop,
    error,
    malformed,
    no_usage,
    ok,
    quota_exhausted,
    rate_limited,
    slow,
)

KEY = "sk-test-Zq8Xv3Lm9Pw2Rt7Yk4Hn"
FAST_RETRY = RetryConfig(max_attempts=4, max_total_s=10, backoff_initial_s=0.01, backoff_max_s=0.02)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "MY_LLM_KEY"):
        monkeypatch.delenv(name, raising=False)


def make_provider(base_url: str | None, **overrides: Any) -> OpenAIProvider:
    fields: dict[str, Any] = {"type": "openai", "model": "fake-model", "base_url": base_url, "retry": FAST_RETRY}
    fields.update(overrides)
    return OpenAIProvider(ProviderConfig(**fields), Path("."))


def make_request(prompt: str = "hello there", **overrides: Any) -> ProviderRequest:
    fields: dict[str, Any] = {
        "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": prompt}],
        "model": None,
        "settings": {"temperature": 0.2, "max_tokens": 50},
        "node_id": "reply",
        "case_id": "c1",
        "run": 1,
        "seed": 7,
    }
    fields.update(overrides)
    return ProviderRequest(**fields)


def free_port_url() -> str:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


# -- the happy path -------------------------------------------------------------


def test_answer_tokens_cost_and_what_is_sent(fake_openai: FakeOpenAI, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    provider = make_provider(fake_openai.base_url, pricing=Pricing(input_per_mtok=1.0, output_per_mtok=2.0))
    response = provider.complete(make_request("hello there"))
    provider.close()

    assert response.text == "echo: hello there"
    assert (response.tokens_in, response.tokens_out) == (4, 3)  # the fake counts words
    assert response.cost_usd == pytest.approx((4 * 1.0 + 3 * 2.0) / 1e6)
    assert response.extra["finish_reason"] == "stop"
    [sent] = fake_openai.requests
    assert sent.path == "/v1/chat/completions"
    assert sent.headers["authorization"] == f"Bearer {KEY}"
    assert sent.body == {
        "model": "fake-model",
        "messages": make_request("hello there").messages,
        "temperature": 0.2,
        "max_tokens": 50,
    }


def test_request_settings_override_provider_settings(fake_openai: FakeOpenAI) -> None:
    provider = make_provider(fake_openai.base_url, settings={"temperature": 1.0, "seed": 3})
    provider.complete(make_request(settings={"temperature": 0.1}))
    body = fake_openai.requests[0].body
    assert (body["temperature"], body["seed"]) == (0.1, 3)


def test_request_model_overrides_config_model(fake_openai: FakeOpenAI) -> None:
    provider = make_provider(fake_openai.base_url)
    provider.complete(make_request(model="other-model"))
    assert fake_openai.requests[0].body["model"] == "other-model"


def test_no_key_sends_no_authorization_header(fake_openai: FakeOpenAI) -> None:
    response = make_provider(fake_openai.base_url).complete(make_request())
    assert response.text == "echo: hello there"
    assert "authorization" not in fake_openai.requests[0].headers


def test_key_comes_from_the_named_env_var(fake_openai: FakeOpenAI, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-not-this-one-000000")
    monkeypatch.setenv("MY_LLM_KEY", KEY)
    make_provider(fake_openai.base_url, api_key_env="MY_LLM_KEY").complete(make_request())
    assert fake_openai.requests[0].headers["authorization"] == f"Bearer {KEY}"


def test_base_url_defaults_to_the_env_var(fake_openai: FakeOpenAI, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", fake_openai.base_url)
    assert make_provider(None).complete(make_request()).text == "echo: hello there"
    assert len(fake_openai.requests) == 1


@pytest.mark.parametrize(
    ("suffix", "path"),
    [("/", "/v1/chat/completions"), ("/chat/completions", "/v1/chat/completions"), ("?api-version=2024", "/v1/chat/completions?api-version=2024")],
)
def test_base_url_forms(fake_openai: FakeOpenAI, suffix: str, path: str) -> None:
    make_provider(fake_openai.base_url + suffix).complete(make_request())
    assert fake_openai.requests[0].path == path


def test_missing_usage_is_not_an_error(fake_openai: FakeOpenAI) -> None:
    fake_openai.queue(no_usage("fine"))
    provider = make_provider(fake_openai.base_url, pricing=Pricing(input_per_mtok=1.0, output_per_mtok=1.0))
    response = provider.complete(make_request())
    assert (response.text, response.tokens_in, response.tokens_out, response.cost_usd) == ("fine", None, None, None)


def test_no_model_is_a_clear_error(fake_openai: FakeOpenAI) -> None:
    with pytest.raises(ProviderError, match="no model given"):
        make_provider(fake_openai.base_url, model=None).complete(make_request())
    assert fake_openai.requests == []


@pytest.mark.parametrize("url", ["localhost:11434/v1", "ftp://example.com/v1", "not a url"])
def test_bad_base_url_is_a_config_error(url: str) -> None:
    with pytest.raises(ConfigError, match="base_url") as info:
        make_provider(url)
    assert "example.com" not in str(info.value)


def test_registry_builds_one_openai_provider_per_config(fake_openai: FakeOpenAI) -> None:
    registry = ProviderRegistry()
    config = ProviderConfig(type="openai", model="fake-model", base_url=fake_openai.base_url)
    provider = registry.get(config, Path("."))
    assert isinstance(provider, OpenAIProvider)
    assert registry.get(config, Path(".")) is provider
    assert provider.complete(make_request("hi")).text == "echo: hi"
    registry.close_all()


def test_registry_shares_providers_by_config_value_and_folder(fake_openai: FakeOpenAI, tmp_path: Path) -> None:
    registry = ProviderRegistry()
    config = ProviderConfig(type="openai", model="fake-model", base_url=fake_openai.base_url)
    provider = registry.get(config, Path("."))
    assert registry.get(config, Path(".")) is provider  # the same object, asked again
    assert registry.get(ProviderConfig(type="openai", model="fake-model", base_url=fake_openai.base_url), Path(".")) is provider
    assert registry.get(config, tmp_path) is not provider  # another folder: another provider
    assert registry.get(config.model_copy(update={"model": "other"}), Path(".")) is not provider
    registry.close_all()


def test_concurrent_calls_share_one_client_without_queueing(fake_openai: FakeOpenAI) -> None:
    fake_openai.delay_s = 0.2
    provider = make_provider(fake_openai.base_url)
    results: dict[int, str] = {}

    def call(i: int) -> None:
        results[i] = provider.complete(make_request(f"prompt {i}", run=i)).text

    threads = [threading.Thread(target=call, args=(i,)) for i in range(32)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    provider.close()
    assert results == {i: f"echo: prompt {i}" for i in range(32)}
    assert fake_openai.max_in_flight == 32, "calls were queued behind one another"


# -- faults: retried, then success or a clear final error -------------------------


def test_429_without_retry_after_is_retried_with_backoff(fake_openai: FakeOpenAI) -> None:
    fake_openai.queue(rate_limited(), rate_limited(), ok("third time"))
    provider = make_provider(fake_openai.base_url)
    waits: list[float] = []
    provider.sleep = waits.append
    assert provider.complete(make_request()).text == "third time"
    assert len(fake_openai.requests) == 3
    assert len(waits) == 2 and all(0 <= w <= FAST_RETRY.backoff_max_s for w in waits)


def test_429_retry_after_seconds_is_honoured(fake_openai: FakeOpenAI) -> None:
    fake_openai.queue(rate_limited(retry_after="3"), ok("done"))
    provider = make_provider(fake_openai.base_url)
    waits: list[float] = []
    provider.sleep = waits.append
    assert provider.complete(make_request()).text == "done"
    assert waits == [3.0]
    assert len(fake_openai.requests) == 2


def test_429_retry_after_http_date_is_honoured(fake_openai: FakeOpenAI) -> None:
    when = email.utils.formatdate(time.time() + 5, usegmt=True)
    fake_openai.queue(rate_limited(retry_after=when), ok("done"))
    provider = make_provider(fake_openai.base_url)
    waits: list[float] = []
    provider.sleep = waits.append
    assert provider.complete(make_request()).text == "done"
    assert len(waits) == 1 and 3.0 <= waits[0] <= 5.0


def test_retry_after_beyond_the_budget_gives_up_at_once(fake_openai: FakeOpenAI) -> None:
    fake_openai.queue(rate_limited(retry_after="600"))
    provider = make_provider(fake_openai.base_url)
    provider.sleep = lambda s: pytest.fail("must not wait 600 s")
    with pytest.raises(ProviderError) as info:
        provider.complete(make_request())
    assert info.value.status == 429
    assert len(fake_openai.requests) == 1
    text = str(info.value)
    assert "gave up after 1 attempt " in text
    assert "HTTP 429" in text and "Rate limit reached for requests" in text
    assert "Retry-After" in text and "max_total_s" in text


def test_429_insufficient_quota_fails_at_once(fake_openai: FakeOpenAI) -> None:
    fake_openai.queue(quota_exhausted(), ok("never reached"))
    with pytest.raises(ProviderError) as info:
        make_provider(fake_openai.base_url).complete(make_request())
    assert len(fake_openai.requests) == 1
    assert info.value.status == 429
    assert "You exceeded your current quota" in str(info.value)
    assert "billing" in (info.value.hint or "")
    assert "gave up" not in str(info.value)


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_5xx_is_retried_then_succeeds(fake_openai: FakeOpenAI, status: int) -> None:
    fake_openai.queue(error(status, "upstream is having a moment"), ok("recovered"))
    assert make_provider(fake_openai.base_url).complete(make_request()).text == "recovered"
    assert len(fake_openai.requests) == 2


def test_persistent_503_exhausts_attempts_with_a_clear_error(fake_openai: FakeOpenAI) -> None:
    fake_openai.fallback = error(503, "The engine is currently overloaded")
    with pytest.raises(ProviderError) as info:
        make_provider(fake_openai.base_url).complete(make_request())
    assert len(fake_openai.requests) == FAST_RETRY.max_attempts == 4
    assert info.value.status == 503
    text = str(info.value)
    assert text.startswith("openai provider (model 'fake-model'): gave up after 4 attempts over ")
    assert "last error: HTTP 503 Service Unavailable: The engine is currently overloaded" in text
    assert "max_attempts is 4" in text


def test_persistent_500_is_bounded_by_total_time(fake_openai: FakeOpenAI) -> None:
    fake_openai.fallback = error(500, "boom")
    retry = RetryConfig(max_attempts=50, max_total_s=0.3, backoff_initial_s=0.05, backoff_max_s=0.05)
    start = time.monotonic()
    with pytest.raises(ProviderError, match="max_total_s") as info:
        make_provider(fake_openai.base_url, retry=retry).complete(make_request())
    elapsed = time.monotonic() - start
    assert elapsed < 2.0  # a hang guard: it gives up when the next wait would pass the 0.3 s
    assert 2 <= len(fake_openai.requests) < 50
    assert "HTTP 500 Internal Server Error: boom" in str(info.value)


@pytest.mark.parametrize(
    ("status", "message", "hint_part"),
    [
        (400, "Unsupported parameter: 'max_tokens'", "rejected the request"),
        (401, "Incorrect API key provided", "$OPENAI_API_KEY"),
        (403, "Project does not have access to model", "not allowed"),
        (404, "The model `fake-model` does not exist", "base_url"),
    ],
)
def test_client_errors_fail_at_once(fake_openai: FakeOpenAI, status: int, message: str, hint_part: str) -> None:
    fake_openai.queue(error(status, message), ok("never reached"))
    with pytest.raises(ProviderError) as info:
        make_provider(fake_openai.base_url).complete(make_request())
    assert len(fake_openai.requests) == 1
    assert info.value.status == status
    assert f"HTTP {status}" in str(info.value) and message in str(info.value)
    assert hint_part in (info.value.hint or "")


def test_401_without_key_says_the_variable_is_not_set(fake_openai: FakeOpenAI) -> None:
    fake_openai.queue(error(401, "Missing bearer authentication"))
    with pytest.raises(ProviderError) as info:
        make_provider(fake_openai.base_url, api_key_env="MY_LLM_KEY").complete(make_request())
    assert "$MY_LLM_KEY is not set" in (info.value.hint or "")


def test_slow_answer_times_out_and_is_retried(fake_openai: FakeOpenAI) -> None:
    fake_openai.queue(slow(3.0), ok("fast enough"))
    provider = make_provider(fake_openai.base_url, timeout_s=0.2)
    start = time.monotonic()
    assert provider.complete(make_request()).text == "fast enough"
    assert time.monotonic() - start < 1.5
    assert len(fake_openai.requests) == 2


def test_always_slow_fails_naming_the_timeout(fake_openai: FakeOpenAI) -> None:
    fake_openai.fallback = slow(3.0)
    retry = RetryConfig(max_attempts=2, max_total_s=10, backoff_initial_s=0.01, backoff_max_s=0.01)
    with pytest.raises(ProviderError) as info:
        make_provider(fake_openai.base_url, timeout_s=0.2, retry=retry).complete(make_request())
    assert len(fake_openai.requests) == 2
    assert "gave up after 2 attempts" in str(info.value)
    assert "the attempt exceeded provider.timeout_s (0.2 s, for connecting, sending and the whole answer)" in str(info.value)
    assert info.value.status is None


def test_dropped_connection_is_retried(fake_openai: FakeOpenAI) -> None:
    fake_openai.queue(drop(), drop(), ok("back"))
    assert make_provider(fake_openai.base_url).complete(make_request()).text == "back"
    assert len(fake_openai.requests) == 3


def test_always_dropped_fails_with_the_cause(fake_openai: FakeOpenAI) -> None:
    fake_openai.fallback = drop()
    with pytest.raises(ProviderError) as info:
        make_provider(fake_openai.base_url).complete(make_request())
    assert len(fake_openai.requests) == 4
    assert "the server closed the connection without a valid answer" in str(info.value)


def test_malformed_json_is_retried(fake_openai: FakeOpenAI) -> None:
    fake_openai.queue(malformed(), ok("valid now"))
    assert make_provider(fake_openai.base_url).complete(make_request()).text == "valid now"
    assert len(fake_openai.requests) == 2


def test_always_malformed_fails_clearly(fake_openai: FakeOpenAI) -> None:
    fake_openai.fallback = malformed()
    with pytest.raises(ProviderError) as info:
        make_provider(fake_openai.base_url).complete(make_request())
    assert len(fake_openai.requests) == 4
    assert "the server answered 200 with malformed JSON" in str(info.value)
    assert info.value.status == 200


def test_error_inside_a_200_uses_its_code(fake_openai: FakeOpenAI) -> None:
    gateway_error = Reply(kind="error", status=200, body={"error": {"message": "upstream 502", "code": 502}})
    fake_openai.queue(gateway_error, ok("ok now"))
    assert make_provider(fake_openai.base_url).complete(make_request()).text == "ok now"
    assert len(fake_openai.requests) == 2


def test_unreachable_server_is_retried_then_fails() -> None:
    with pytest.raises(ProviderError) as info:
        make_provider(free_port_url()).complete(make_request())
    text = str(info.value)
    assert "gave up after 4 attempts" in text and "network error talking to the server at base_url (ConnectError" in text
    assert "127.0.0.1" not in text


# -- secrets ------------------------------------------------------------------------


def test_the_key_and_host_never_appear_in_errors(fake_openai: FakeOpenAI, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    base_url = fake_openai.base_url
    echoes = [
        error(401, f"Incorrect API key provided: {KEY}. Bearer {KEY}"),
        error(500, f"internal error calling {base_url} with key {KEY[:12]}****{KEY[-4:]}"),
    ]
    messages: list[str] = []
    for reply in echoes:
        fake_openai.queue(reply)
        retry = RetryConfig(max_attempts=1)
        with pytest.raises(ProviderError) as info:
            make_provider(base_url, retry=retry).complete(make_request())
        messages.append(f"{info.value}\n{info.value.hint}\n{info.value!r}")
    provider = make_provider(base_url)
    messages.append(repr(provider))
    everything = "\n".join(messages)
    assert fake_openai.requests[0].headers["authorization"] == f"Bearer {KEY}"  # the key was sent...
    assert KEY not in everything  # ...but never shown
    assert KEY[:12] not in everything and KEY[-4:] not in everything
    assert "127.0.0.1" not in everything and str(fake_openai.port) not in everything
    assert "Incorrect API key provided" in everything  # the provider's message is kept


# -- the retry policy as pure logic -------------------------------------------------


@pytest.mark.parametrize(
    ("status", "code", "retryable"),
    [
        (429, None, True),
        (429, "rate_limit_exceeded", True),
        (429, "insufficient_quota", False),
        (408, None, True),
        (500, None, True),
        (502, None, True),
        (503, None, True),
        (504, None, True),
        (529, None, True),
        (400, None, False),
        (401, None, False),
        (403, None, False),
        (404, None, False),
        (422, None, False),
    ],
)
def test_is_retryable_status(status: int, code: str | None, retryable: bool) -> None:
    assert is_retryable_status(status, code) is retryable


def test_parse_retry_after() -> None:
    now = 1_700_000_000.0
    future = email.utils.formatdate(now + 30, usegmt=True)
    past = email.utils.formatdate(now - 30, usegmt=True)
    assert parse_retry_after({"retry-after": "12"}) == 12.0
    assert parse_retry_after({"Retry-After": "1.5"}) == 1.5
    assert parse_retry_after({"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    assert parse_retry_after({"retry-after": future}, now=now) == pytest.approx(30.0)
    assert parse_retry_after({"retry-after": past}, now=now) == 0.0
    assert parse_retry_after({"retry-after": "soon"}) is None
    assert parse_retry_after({"retry-after": "-3"}) is None
    assert parse_retry_after({}) is None


def test_backoff_is_exponential_capped_and_fully_jittered() -> None:
    config = RetryConfig(backoff_initial_s=0.5, backoff_max_s=3.0)
    assert [backoff_delay(n, config, rand=lambda: 1.0) for n in range(1, 6)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    assert backoff_delay(3, config, rand=lambda: 0.0) == 0.0
    assert backoff_delay(3, config, rand=lambda: 0.25) == 0.5


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0
        self.waits: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.now += seconds


def failing(outcomes: list[Any], calls: list[float], fake: FakeTime, given: list[float] | None = None) -> Any:
    def attempt(time_left: float) -> str:
        calls.append(fake.now)
        if given is not None:
            given.append(time_left)
        outcome = outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    return attempt


def test_run_with_retries_waits_then_succeeds() -> None:
    fake, calls = FakeTime(), []
    outcomes: list[Any] = [TransientFailure("HTTP 503"), TransientFailure("HTTP 429", retry_after=7.0), "done"]
    config = RetryConfig(max_attempts=5, max_total_s=60, backoff_initial_s=1.0, backoff_max_s=30)
    result = run_with_retries(
        failing(outcomes, calls, fake), config, what="p", sleep=fake.sleep, clock=fake.clock, rand=lambda: 1.0
    )
    assert result == "done"
    assert fake.waits == [1.0, 7.0]
    assert calls == [0.0, 1.0, 8.0]


def test_run_with_retries_no_attempt_after_the_budget() -> None:
    fake, calls = FakeTime(), []
    outcomes: list[Any] = [TransientFailure(f"HTTP 500 #{i}", status=500) for i in range(20)]
    config = RetryConfig(max_attempts=20, max_total_s=10, backoff_initial_s=1.0, backoff_max_s=4)
    with pytest.raises(ProviderError) as info:
        run_with_retries(
            failing(outcomes, calls, fake), config, what="p", sleep=fake.sleep, clock=fake.clock, rand=lambda: 1.0
        )
    # waits 1, 2, 4; the next wait (4 s) would use up the 3 s left: no attempt without time to succeed
    assert calls == [0.0, 1.0, 3.0, 7.0]
    assert str(info.value).startswith("p: gave up after 4 attempts over 7.0 s; last error: HTTP 500 #3")
    assert "the next wait (4.0 s) would use up the 3.0 s left of provider.retry.max_total_s" in (info.value.hint or "")
    assert info.value.status == 500


def test_run_with_retries_gives_each_attempt_the_time_left_of_the_total() -> None:
    """max_total_s bounds the attempts too, not only the waits between them."""
    fake, calls, given = FakeTime(), [], []

    def slow_failures(time_left: float) -> str:
        given.append(time_left)
        calls.append(fake.now)
        fake.now += min(4.0, time_left)  # each attempt takes its provider's whole timeout (4 s) or what is left
        raise TransientFailure("timeout")

    config = RetryConfig(max_attempts=10, max_total_s=10, backoff_initial_s=0.5, backoff_max_s=0.5)
    with pytest.raises(ProviderError) as info:
        run_with_retries(slow_failures, config, what="p", sleep=fake.sleep, clock=fake.clock, rand=lambda: 1.0)
    assert given == [10.0, 5.5, 1.0]  # 10 - 4 - 0.5, then 5.5 - 4 - 0.5
    assert fake.now == 10.0  # the run ends with its budget, not a whole attempt after it
    assert "gave up after 3 attempts over 10.0 s" in str(info.value)


def test_run_with_retries_permanent_error_is_not_retried() -> None:
    fake, calls = FakeTime(), []
    outcomes: list[Any] = [ProviderError("HTTP 401", status=401), "never"]
    with pytest.raises(ProviderError, match="HTTP 401"):
        run_with_retries(failing(outcomes, calls, fake), RetryConfig(), what="p", sleep=fake.sleep, clock=fake.clock)
    assert calls == [0.0] and fake.waits == []


def test_run_with_retries_single_attempt() -> None:
    fake, calls = FakeTime(), []
    with pytest.raises(ProviderError, match="gave up after 1 attempt over 0.0 s; last error: timeout"):
        run_with_retries(
            failing([TransientFailure("timeout")], calls, fake),
            RetryConfig(max_attempts=1),
            what="p",
            sleep=fake.sleep,
            clock=fake.clock,
        )


def test_a_lone_surrogate_in_an_answer_becomes_the_replacement_character(fake_openai: FakeOpenAI) -> None:
    # JSON may escape a lone surrogate ("\ud800"); stored as is it breaks the
    # cache, results.json readers and MLflow, so it becomes U+FFFD as for the
    # python provider
    fake_openai.queue(ok("rocket \ud800 here"))
    provider = make_provider(fake_openai.base_url)
    response = provider.complete(make_request())
    provider.close()
    assert response.text == "rocket \ufffd here"
    response.text.encode("utf-8")  # encodable: no surrogate left

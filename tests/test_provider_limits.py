"""The openai provider against a hostile or broken server (issue 12, items 1, 3, 4):
secrets echoed past a cut, answers dribbled a byte at a time, floods of
hundreds of megabytes. Against the loopback server of tests/fake_openai.py,
unit-level through the provider and end to end through ``pytest --promptab``.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from pytest_promptab.errors import ProviderError
from pytest_promptab.providers.redact import scrub, scrub_and_clip
from pytest_promptab.providers.transport import (
    PooledTransport,
    TransportError,
    _decoded,
)
from pytest_promptab.run.outputs import MAX_OUTPUT_CHARS, for_record
from pytest_promptab.workflow.schema import ProviderConfig, RetryConfig
from tests.fake_openai import FakeOpenAI, dribble, echoing_key, flood, malformed, ok
from tests.test_openai_provider import make_provider, make_request
from tests.test_providers_e2e import flow, results, run, write

HEX_KEY = "3f9a1c7e5b2d4f6a8c0e1b3d5f7a9c2e4b6d8f0a"
"""40 hex digits, as Azure and Mistral keys look (no ``sk-``)."""
SK_KEY = "sk-proj-Vq3Lm9Pw2Rt7Yk4HnZq8Xv3Lm9Pw2Rt7"
ONE_ATTEMPT = RetryConfig(max_attempts=1)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "PROMPTAB_E2E_KEY"):
        monkeypatch.delenv(name, raising=False)
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


def pieces(key: str, size: int = 8) -> list[str]:
    """Every ``size``-character piece of ``key``: none may show anywhere."""
    return [key[i:i + size] for i in range(len(key) - size + 1)]


def assert_no_part_of(key: str, text: str) -> None:
    leaked = [piece for piece in pieces(key) if piece in text]
    assert not leaked, f"part of the key leaked: {leaked[:3]}"


# -- 1. secrets: scrubbed first, cut after ------------------------------------------------


@pytest.mark.parametrize("key", [HEX_KEY, SK_KEY], ids=["hex40", "sk"])
@pytest.mark.parametrize("status", [500, 401])
def test_a_key_echoed_past_the_cut_is_scrubbed_whole(
    fake_openai: FakeOpenAI, monkeypatch: pytest.MonkeyPatch, key: str, status: int
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", key)
    fake_openai.queue(echoing_key(key, status=status, after=255))
    with pytest.raises(ProviderError) as info:
        make_provider(fake_openai.base_url, retry=ONE_ATTEMPT).complete(make_request())
    message = f"{info.value}\n{info.value.hint}"
    assert f"HTTP {status}" in message and "upstream request failed" in message
    assert_no_part_of(key, message)


def test_a_key_the_server_cut_itself_is_scrubbed(fake_openai: FakeOpenAI, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", HEX_KEY)
    fake_openai.queue(echoing_key(HEX_KEY[:20], status=400, after=10))  # a prefix of 20 of its 40 characters
    with pytest.raises(ProviderError) as info:
        make_provider(fake_openai.base_url, retry=ONE_ATTEMPT).complete(make_request())
    assert HEX_KEY[:8] not in str(info.value) and "<redacted>" in str(info.value)


def test_a_malformed_200_quoting_the_key_across_its_cut(fake_openai: FakeOpenAI, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", HEX_KEY)
    fake_openai.queue(malformed("<html>" + "x" * 60 + f" key {HEX_KEY} </html>"))  # the key straddles 80 characters
    with pytest.raises(ProviderError) as info:
        make_provider(fake_openai.base_url, retry=ONE_ATTEMPT).complete(make_request())
    assert "malformed JSON" in str(info.value)
    assert_no_part_of(HEX_KEY, str(info.value))


def test_model_and_refusal_of_a_200_are_scrubbed(fake_openai: FakeOpenAI, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", HEX_KEY)
    answer = {
        "model": f"gpt-proxy/{HEX_KEY}",
        "choices": [{"message": {"role": "assistant", "content": f"your key is {HEX_KEY}",
                                 "refusal": "r" * 290 + HEX_KEY}, "finish_reason": "stop"}],
    }
    fake_openai.queue(malformed(json.dumps(answer)))  # a raw body: here a valid one
    response = make_provider(fake_openai.base_url).complete(make_request())
    stored = json.dumps({"text": response.text, "extra": response.extra})
    assert_no_part_of(HEX_KEY, stored)
    assert response.extra["model"] == "gpt-proxy/<redacted>"
    assert len(response.extra["refusal"]) <= 300
    assert response.text == "your key is <redacted>"


def test_scrub_shapes() -> None:
    text = (f"Bearer abc.def-ghi key={'A1b2' * 6} token: \"{'Zz9_' * 5}\" id {'0f' * 16} sk-live-{'9' * 20} "
            "ok: model gpt-4o-mini, 8192 tokens")
    out = scrub(text)
    assert out == ("Bearer <redacted> key=<redacted> token: \"<redacted>\" id <redacted> sk-<redacted> "
                   "ok: model gpt-4o-mini, 8192 tokens")
    assert scrub_and_clip("x" * 290 + HEX_KEY, 300) == "x" * 290 + "<redacted>"
    assert scrub_and_clip("y" * 1000, 300) == "y" * 299 + "…"
    assert scrub(f"before {HEX_KEY[:12]}****{HEX_KEY[-4:]} after", key=HEX_KEY) == "before <redacted> after"
    assert scrub("keys: short", key="short") == "keys: <redacted>"


def test_a_key_echoed_past_the_cut_leaks_nowhere_end_to_end(
    pytester: pytest.Pytester, fake_openai: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PROMPTAB_E2E_KEY", HEX_KEY)
    fake_openai.fallback = echoing_key(HEX_KEY, status=503, after=255)  # retried, then given up
    write(pytester, flow(fake_openai.base_url, runs=1, cases=("alpha",), variant=False))
    result = run(pytester, "-rA", "--junitxml=junit.xml")
    assert result.parseoutcomes() == {"failed": 1}
    assert fake_openai.completions[0].headers["authorization"] == f"Bearer {HEX_KEY}"  # the key was in play
    result.stdout.fnmatch_lines(["node 'answer': *gave up after 3 attempts*HTTP 503*upstream request failed*"])
    (record,) = results(pytester)["abtests"][0]["runs"]
    assert record["status"] == "error" and "HTTP 503" in record["error"]
    texts = {
        "terminal": result.stdout.str() + result.stderr.str(),
        "results.json": (pytester.path / ".promptab" / "results.json").read_text(encoding="utf-8"),
        "junit.xml": (pytester.path / "junit.xml").read_text(encoding="utf-8"),
        "record": json.dumps(record),
    }
    for where, text in texts.items():
        assert HEX_KEY not in text, where
        assert_no_part_of(HEX_KEY, text)


# -- 3. stalls: an attempt bounded as a whole ---------------------------------------------


def test_a_dribbled_answer_fails_when_the_attempt_exceeds_timeout_s(fake_openai: FakeOpenAI) -> None:
    # 80+ bytes at 0.3 s each: half a minute, every read well within a per-read timeout of 1 s
    fake_openai.queue(dribble(0.3))
    with pytest.raises(ProviderError) as info:
        make_provider(fake_openai.base_url, timeout_s=1, retry=ONE_ATTEMPT).complete(make_request())
    assert "the attempt exceeded provider.timeout_s (1 s, for connecting, sending and the whole answer)" in str(
        info.value
    )
    assert "gave up after 1 attempt " in str(info.value)


def test_dribbled_headers_are_bounded_too(fake_openai: FakeOpenAI) -> None:
    fake_openai.queue(dribble(0.3, head_too=True))
    transport = PooledTransport(lambda: pytest.fail("no TLS for http"))
    from pytest_promptab.providers.openai import _endpoint

    with pytest.raises(TransportError) as info:
        transport.send(_endpoint(fake_openai.base_url), [], b"{}", 1.0)
    assert info.value.kind == "timeout"
    transport.close()


def test_a_dribbled_answer_through_a_proxy_is_bounded(fake_openai: FakeOpenAI, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTP_PROXY", f"http://{urlsplit(fake_openai.base_url).netloc}")  # the fake answers as a proxy
    fake_openai.queue(dribble(0.3, head_too=True))
    provider = make_provider("http://promptab-via-proxy.invalid/v1", timeout_s=1, retry=ONE_ATTEMPT)
    assert getattr(provider._transport, "deadline_on_streams", None) is True
    with pytest.raises(ProviderError, match="the attempt exceeded provider.timeout_s"):
        provider.complete(make_request())
    provider.close()


def test_a_dribbled_answer_is_then_retried_and_passes(fake_openai: FakeOpenAI) -> None:
    fake_openai.queue(dribble(0.3), ok("fast"))
    assert make_provider(fake_openai.base_url, timeout_s=1).complete(make_request()).text == "fast"
    assert len(fake_openai.completions) == 2


def test_the_retry_total_time_cuts_the_last_attempt(fake_openai: FakeOpenAI) -> None:
    """max_total_s bounds attempts, not only the waits: an attempt never runs past it."""
    fake_openai.fallback = dribble(0.3)
    retry = RetryConfig(max_attempts=5, max_total_s=1.5, backoff_initial_s=0.01, backoff_max_s=0.01)
    with pytest.raises(ProviderError) as info:
        make_provider(fake_openai.base_url, timeout_s=30, retry=retry).complete(make_request())
    assert "when provider.retry.max_total_s ran out, before the answer was complete" in str(info.value)
    assert "gave up after 1 attempt over 1.5 s" in str(info.value)


def test_a_dribbling_server_fails_the_item_end_to_end(pytester: pytest.Pytester, fake_openai: FakeOpenAI) -> None:
    fake_openai.fallback = dribble(0.5)
    write(pytester, flow(fake_openai.base_url, runs=1, cases=("alpha",), variant=False, timeout_s=1,
                         retry="{max_attempts: 2, backoff_initial_s: 0.01, backoff_max_s: 0.01}"))
    result = run(pytester, "-rf")
    assert result.parseoutcomes() == {"failed": 1}
    expected = ("node 'answer': openai provider (model 'fake-model'): gave up after 2 attempts over *; "
                "last error: the attempt exceeded provider.timeout_s (1 s, *")
    result.stdout.fnmatch_lines([expected])
    assert len(fake_openai.completions) == 2


# -- 4. floods: the body capped, the record capped ---------------------------------------------


@pytest.mark.parametrize("declare_length", [True, False], ids=["content-length", "until-close"])
def test_a_flood_fails_at_once_naming_max_response_bytes(fake_openai: FakeOpenAI, declare_length: bool) -> None:
    fake_openai.fallback = flood(200_000_000, declare_length=declare_length)
    provider = make_provider(fake_openai.base_url, max_response_bytes=1_000_000)
    with pytest.raises(ProviderError) as info:
        provider.complete(make_request())
    assert "the answer is larger than provider.max_response_bytes (1000000 bytes; " in str(info.value)
    assert "without a retry" in str(info.value) and "max_response_bytes" in (info.value.hint or "")
    assert len(fake_openai.completions) == 1  # not retried
    provider.close()


def test_max_response_bytes_defaults_to_10_mb() -> None:
    assert ProviderConfig().max_response_bytes == 10_000_000


def test_a_compressed_flood_is_capped_once_decompressed() -> None:
    bomb = gzip.compress(b"0" * 5_000_000)
    with pytest.raises(TransportError) as info:
        _decoded(bomb, "gzip", 1_000_000)
    assert info.value.kind == "too_large"
    assert _decoded(bomb, "gzip", 5_000_000) == b"0" * 5_000_000


def test_outputs_are_cut_in_the_record_with_a_marker() -> None:
    assert for_record("short") == "short"
    cut = for_record("z" * (MAX_OUTPUT_CHARS + 123))
    assert cut.startswith("z" * MAX_OUTPUT_CHARS) and cut.endswith("… [promptab: 123 more characters not kept]")
    assert for_record({"a": 1}) == {"a": 1}
    assert for_record({"a": "b" * 50}, limit=20).startswith('{"a": "bbbbbbbbbbbbb')
    assert for_record(3) == 3


def test_a_flood_fails_the_item_and_results_stay_small(pytester: pytest.Pytester, fake_openai: FakeOpenAI) -> None:
    fake_openai.fallback = flood(200_000_000, declare_length=False)
    write(pytester, flow(fake_openai.base_url, runs=1, cases=("alpha",), variant=False))
    result = run(pytester, "-rf", "--junitxml=junit.xml")
    assert result.parseoutcomes() == {"failed": 1}
    expected = ("node 'answer': openai provider (model 'fake-model'): the answer is larger than "
                "provider.max_response_bytes (10000000 bytes; *")
    result.stdout.fnmatch_lines([expected])
    assert len(fake_openai.completions) == 1
    for name in (".promptab/results.json", "junit.xml"):
        assert (pytester.path / name).stat().st_size < 100_000, name


def test_a_long_answer_is_checked_whole_and_stored_cut(pytester: pytest.Pytester, fake_openai: FakeOpenAI) -> None:
    fake_openai.fallback = ok("x" * 300_000 + " alpha")  # under max_response_bytes, over the record's limit
    write(pytester, flow(fake_openai.base_url, runs=1, cases=("alpha",), variant=False))
    result = run(pytester, "--junitxml=junit.xml")
    assert result.parseoutcomes() == {"passed": 1}  # the check saw "alpha" at the end
    (record,) = results(pytester)["abtests"][0]["runs"]
    answer = record["outputs"]["answer"]
    assert len(answer) < MAX_OUTPUT_CHARS + 100 and answer.endswith("more characters not kept]")
    for name in (".promptab/results.json", "junit.xml"):
        assert Path(pytester.path / name).stat().st_size < 3 * MAX_OUTPUT_CHARS, name

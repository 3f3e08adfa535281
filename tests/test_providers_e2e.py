"""End-to-end: the ``openai`` provider through ``pytest --promptab`` (pytester),
against the fake OpenAI-compatible server of tests/fake_openai.py.

What a user sees: which items pass or fail and why, which requests reach the
server (selection, -x, Ctrl-C, xdist), how many are in flight at once, what
the results file and the cache hold, and that no API key shows anywhere.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from tests.fake_openai import (
    FakeOpenAI,
    InFlight,
    Reply,
    default_text,
    drop,
    error,
    malformed,
    no_usage,
    ok,
    quota_exhausted,
    rate_limited,
    slow,
)

NO_MLFLOW = "--promptab-no-mlflow"
KEY = "sk-promptab-e2e-SECRET-4242abcdefgh"
"""A recognisable fake API key: it must never show up anywhere."""
OTHER_KEY = "sk-other-never-used-9876zyxwvuts"
QUIET_PLUGINS = ("-p", "no:hypothesispytest", "-p", "no:benchmark")
"""Unrelated installed plugins, off in the sessions under test: each inline run
would re-import hypothesis (~1 s) for its terminal summary."""


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    """``pytest --promptab --promptab-no-mlflow *args`` in the pytester folder."""
    return pytester.runpytest(*QUIET_PLUGINS, "--promptab", NO_MLFLOW, *args)


@pytest.fixture
def server() -> Iterator[FakeOpenAI]:
    """A fake server of this test's own: calls abandoned by one test (-x,
    Ctrl-C) can never be counted by the next."""
    with FakeOpenAI() as fake:
        yield fake


def flow(
    base_url: str,
    *,
    runs: int = 2,
    cases: tuple[str, ...] = ("alpha", "beta"),
    variant: bool = True,
    provider: str = "",
    timeout_s: float = 5,
    retry: str = "{max_attempts: 3, backoff_initial_s: 0.01, backoff_max_s: 0.05}",
) -> str:
    """A workflow on the fake server: the answer echoes the prompt, so case
    ``alpha`` passes the check and ``beta`` does not (XFAIL)."""
    case_lines = "\n".join(f"  - {{id: {c}, inputs: {{word: {c}}}}}" for c in cases)
    variants = '  variants:\n    - {name: polite, prompts: {answer: "Please say {{ word }}"}}\n' if variant else ""
    return (
        textwrap.dedent(
            f"""\
            name: e2e
            provider:
              type: openai
              base_url: "{base_url}"
              model: fake-model
              api_key_env: PROMPTAB_E2E_KEY
              timeout_s: {timeout_s}
              retry: {retry}
            """
        )
        + "".join(f"  {line}\n" for line in provider.splitlines() if line)
        + textwrap.dedent(
            """\
            nodes:
              - id: answer
                prompt: "Say {{ word }}"
            cases:
            """
        )
        + case_lines
        + "\n"
        + textwrap.dedent(
            f"""\
            checks:
              - {{name: has-alpha, type: contains, value: alpha}}
            ab_test:
              name: t
              runs: {runs}
            """
        )
        + variants
    )


def write(pytester: pytest.Pytester, text: str, name: str = "e2e") -> Path:
    path = pytester.path / f"{name}.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def prompts(fake: FakeOpenAI) -> list[str]:
    return [r.body["messages"][-1]["content"] for r in fake.completions]


def results(pytester: pytest.Pytester, name: str = ".promptab/results.json") -> dict[str, Any]:
    return json.loads((pytester.path / name).read_text(encoding="utf-8"))


# -- which requests are sent ------------------------------------------------------


def test_only_selected_items_call_the_provider(pytester: pytest.Pytester, server: FakeOpenAI) -> None:
    write(pytester, flow(server.base_url))  # 2 variants x 2 cases x 2 runs
    result = run(pytester, "-k", "polite and alpha")
    assert result.parseoutcomes() == {"passed": 2, "deselected": 6, "warnings": 1}
    assert prompts(server) == ["Please say alpha"] * 2

    server.reset()
    result = run(pytester, "--deselect", "e2e.yaml::t::baseline[beta-run1]")
    assert result.parseoutcomes()["deselected"] == 1
    expected = ["Say alpha"] * 2 + ["Say beta"] + ["Please say alpha", "Please say beta"] * 2
    assert sorted(prompts(server)) == sorted(expected)

    server.reset()
    for flag in ("--collect-only", "--setup-plan"):
        result = run(pytester, flag)
        assert result.ret == 0
    assert server.completions == []


def test_no_call_when_a_collection_error_stops_the_session(pytester: pytest.Pytester, server: FakeOpenAI) -> None:
    write(pytester, flow(server.base_url))
    pytester.makepyfile(test_broken="def test_x(:\n    pass\n")
    result = run(pytester)
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.stdout.fnmatch_lines(["*Interrupted: 1 error during collection*"])
    assert server.completions == []


def test_items_skipped_by_a_mark_are_never_sent(pytester: pytest.Pytester, server: FakeOpenAI) -> None:
    write(pytester, flow(server.base_url, variant=False))
    pytester.makeconftest(
        """
        import pytest

        def pytest_collection_modifyitems(items):
            for item in items:
                if "beta" in item.name:
                    item.add_marker(pytest.mark.skip(reason="no beta today"))
        """
    )
    result = run(pytester, "-rs")
    assert result.parseoutcomes() == {"passed": 2, "skipped": 2}
    result.stdout.fnmatch_lines(["SKIPPED *no beta today"])
    assert prompts(server) == ["Say alpha"] * 2


def test_calls_run_concurrently_while_items_are_reported_in_order(
    pytester: pytest.Pytester, server: FakeOpenAI
) -> None:
    server.delay_s = 0.2
    gauge = InFlight(server)
    write(pytester, flow(server.base_url, runs=8, variant=False))  # 16 runs
    result = run(pytester, "-v", "--promptab-concurrency", "8")
    assert result.parseoutcomes() == {"passed": 8, "xfailed": 8}
    result.stdout.fnmatch_lines(
        [f"e2e.yaml::t::baseline?alpha-run{r}? PASSED*" for r in range(1, 9)]
        + [f"e2e.yaml::t::baseline?beta-run{r}? XFAIL*" for r in range(1, 9)]
    )
    assert len(server.completions) == 16
    assert 6 <= gauge.max <= 8, gauge.max  # concurrent, and never more than --promptab-concurrency


def test_max_concurrency_of_a_provider_caps_calls_in_flight(pytester: pytest.Pytester, server: FakeOpenAI) -> None:
    server.delay_s = 0.05
    gauge = InFlight(server)
    write(pytester, flow(server.base_url, runs=8, variant=False, provider="max_concurrency: 2"))
    result = run(pytester, "--promptab-concurrency", "8")
    assert result.parseoutcomes() == {"passed": 8, "xfailed": 8}
    assert gauge.max == 2


def test_exit_first_cancels_the_queued_calls(pytester: pytest.Pytester, server: FakeOpenAI) -> None:
    server.delay_s = 0.05
    server.queue(error(400, "this model does not exist here"))
    write(pytester, flow(server.base_url, runs=30, cases=("alpha",), variant=False))
    # a session end that takes a while (as MLflow logging does): queued calls
    # that were not cancelled would all be sent meanwhile (30 x 0.05 s / 4)
    pytester.makeconftest(
        """
        import time

        def pytest_sessionfinish():
            time.sleep(0.6)
        """
    )
    result = run(pytester, "-x", "--promptab-concurrency", "4")
    outcomes = result.parseoutcomes()
    assert outcomes["failed"] == 1 and outcomes.get("passed", 0) <= 4, outcomes
    result.stdout.fnmatch_lines(["*stopping after 1 failures*"])
    # the failure comes among the first 4 calls; at most 4 more were in flight when it was reported
    assert len(server.completions) <= 12, len(server.completions)


def test_ctrl_c_cancels_queued_calls_without_waiting_for_those_in_flight(
    pytester: pytest.Pytester, server: FakeOpenAI
) -> None:
    """A real SIGINT to a pytest process while 4 calls hang on the server
    (concurrency 4) and 36 are queued."""
    server.fallback = slow(30)
    write(pytester, flow(server.base_url, runs=40, cases=("alpha",), variant=False, timeout_s=60))
    process = subprocess.Popen(
        [sys.executable, "-m", "pytest", *QUIET_PLUGINS, "--promptab", NO_MLFLOW, "-p", "no:cacheprovider",
         "--promptab-concurrency", "4"],
        cwd=pytester.path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while len(server.completions) < 4 and time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.02)
        time.sleep(0.3)
        assert len(server.completions) == 4  # the pool is full; the other 36 wait in its queue
        interrupted = time.monotonic()
        process.send_signal(signal.SIGINT)
        out, _ = process.communicate(timeout=20)
        took = time.monotonic() - interrupted
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == pytest.ExitCode.INTERRUPTED, out
    assert "KeyboardInterrupt" in out
    assert took < 10, f"exit took {took:.1f} s after Ctrl-C: calls in flight were awaited"
    time.sleep(0.2)
    assert len(server.completions) == 4  # none of the 36 queued calls was sent


def test_xdist_workers_run_their_items_without_prefetch_and_match_a_serial_run(
    pytester: pytest.Pytester, server: FakeOpenAI
) -> None:
    server.delay_s = 0.02
    gauge = InFlight(server)
    write(pytester, flow(server.base_url, runs=3))  # 12 runs
    serial = run(pytester, "--promptab-json=serial.json")
    assert serial.parseoutcomes() == {"passed": 6, "xfailed": 6, "warnings": 1}
    serial_prompts = sorted(prompts(server))

    server.reset()
    server.delay_s = 0.02
    gauge = InFlight(server)
    parallel = pytester.runpytest_subprocess(
        *QUIET_PLUGINS, "--promptab", NO_MLFLOW, "-n", "2", "-p", "no:cacheprovider", "--promptab-json=parallel.json",
        "--promptab-concurrency", "8",
    )
    assert parallel.parseoutcomes() == {"passed": 6, "xfailed": 6, "warnings": 1}, parallel.stdout.str()
    assert sorted(prompts(server)) == serial_prompts
    assert gauge.max <= 2  # each worker runs its items one by one: no prefetch

    def aggregates(name: str) -> dict[str, Any]:
        (ab,) = results(pytester, name)["abtests"]
        return {
            v["name"]: ({k: s for k, s in v["aggregates"].items() if "latency" not in k}, v["pass_rate"])
            for v in ab["variants"]
        } | {"winner": ab["winner"], "runs": len(ab["runs"])}

    assert aggregates("serial.json") == aggregates("parallel.json")


# -- faults, as pytest reports them ----------------------------------------------------


@pytest.mark.parametrize(
    "fault",
    [
        rate_limited(),
        rate_limited(retry_after="0.05"),
        error(500),
        error(503),
        drop(),
        slow(2.0),
        malformed(),
    ],
    ids=["429", "429-retry-after", "500", "503", "dropped", "timeout", "malformed"],
)
def test_a_transient_fault_then_success_passes(pytester: pytest.Pytester, server: FakeOpenAI, fault: Reply) -> None:
    server.queue(fault, ok())
    write(pytester, flow(server.base_url, runs=1, cases=("alpha",), variant=False, timeout_s=0.5))
    result = run(pytester, "-v")
    result.stdout.fnmatch_lines(["e2e.yaml::t::baseline?alpha-run1? PASSED*"])
    assert result.ret == 0
    assert len(server.completions) == 2  # retried once


def test_401_fails_at_once_naming_node_status_and_message_never_the_key(
    pytester: pytest.Pytester, server: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PROMPTAB_E2E_KEY", KEY)
    monkeypatch.setenv("OPENAI_API_KEY", OTHER_KEY)
    # run 1 is answered (and recorded), run 2 is refused; the server quotes the key, as some do
    server.queue(ok(), error(401, f"Incorrect API key provided: {KEY}. You can find your API key at ..."))
    write(pytester, flow(server.base_url, runs=2, cases=("alpha",), variant=False))
    result = run(pytester, "--promptab-cache", "record", "--promptab-concurrency", "1", "-rA")
    assert result.ret == 1
    assert result.parseoutcomes() == {"passed": 1, "failed": 1}
    assert len(server.completions) == 2  # the 401 was not retried
    assert server.completions[0].headers["authorization"] == f"Bearer {KEY}"  # the key was in play
    result.stdout.fnmatch_lines(
        [
            "*_ promptab baseline[[]alpha-run2[]] _*",
            "node 'answer': openai provider (model 'fake-model'): HTTP 401 Unauthorized: Incorrect API key provided*",
            "  hint: the server refused the key in $PROMPTAB_E2E_KEY*",
            "FAILED e2e.yaml::t::baseline[[]alpha-run2[]]*",
        ]
    )
    out = result.stdout.str() + result.stderr.str()
    assert "Traceback" not in out and "pytest_promptab/" not in out
    stored = [(pytester.path / ".promptab" / "results.json").read_text(encoding="utf-8")]
    cache_files = sorted((pytester.path / ".promptab" / "cache").rglob("*.json"))
    assert len(cache_files) == 1  # the answered run; the refused one is not recorded
    stored += [p.read_text(encoding="utf-8") for p in cache_files]
    for text in [out, *stored]:
        assert KEY not in text and OTHER_KEY not in text
        assert "SECRET-4242" not in text and "Bearer" not in text.replace("Bearer <redacted>", "")
    assert "127.0.0.1" not in stored[1] and str(server.port) not in stored[1]  # no host in the cache either


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        (quota_exhausted(), "*HTTP 429*You exceeded your current quota*"),
        (error(404, "The model `fake-model` does not exist"), "*HTTP 404*does not exist*"),
        (error(403, "Project does not have access to model"), "*HTTP 403*does not have access*"),
    ],
    ids=["quota", "404", "403"],
)
def test_permanent_errors_fail_at_once(
    pytester: pytest.Pytester, server: FakeOpenAI, reply: Reply, expected: str
) -> None:
    server.queue(reply)
    write(pytester, flow(server.base_url, runs=1, cases=("alpha",), variant=False))
    result = run(pytester, "-rf")
    assert result.parseoutcomes() == {"failed": 1}
    result.stdout.fnmatch_lines(
        ["*_ promptab baseline[[]alpha-run1[]] _*", f"node 'answer': {expected}", "FAILED e2e.yaml::t::baseline?alpha-run1?*"]
    )
    assert len(server.completions) == 1


def test_malformed_json_after_every_retry_fails(pytester: pytest.Pytester, server: FakeOpenAI) -> None:
    server.fallback = malformed()
    write(pytester, flow(server.base_url, runs=1, cases=("alpha",), variant=False))
    result = run(pytester, "-rf")
    assert result.parseoutcomes() == {"failed": 1}
    result.stdout.fnmatch_lines(
        [
            "*_ promptab baseline[[]alpha-run1[]] _*",
            "node 'answer': openai provider (model 'fake-model'): gave up after 3 attempts over *; "
            "last error: the server answered 200 with malformed JSON*",
            "  hint: provider.retry.max_attempts is 3*",
            "FAILED e2e.yaml::t::baseline?alpha-run1?*",
        ]
    )
    assert len(server.completions) == 3  # retry.max_attempts
    (ab,) = results(pytester)["abtests"]
    (rec,) = ab["runs"]
    assert rec["status"] == "error" and rec["error_node"] == "answer"


def test_missing_usage_passes_without_token_metrics(pytester: pytest.Pytester, server: FakeOpenAI) -> None:
    server.fallback = no_usage()
    pricing = "pricing: {input_per_mtok: 1}"
    write(pytester, flow(server.base_url, runs=2, cases=("alpha",), variant=False, provider=pricing))
    result = run(pytester)
    assert result.parseoutcomes() == {"passed": 2}
    (ab,) = results(pytester)["abtests"]
    for rec in ab["runs"]:
        assert rec["outputs"] == {"answer": "echo: Say alpha"}
        assert not {"tokens_in", "tokens_out", "tokens_total", "cost_usd"} & set(rec["metrics"])
    assert not {"tokens_in", "tokens_total", "cost_usd"} & set(ab["variants"][0]["aggregates"])


def test_token_usage_and_cost_reach_the_results(pytester: pytest.Pytester, server: FakeOpenAI) -> None:
    provider = "pricing: {input_per_mtok: 1000000, output_per_mtok: 2000000}"
    write(pytester, flow(server.base_url, runs=1, cases=("alpha",), variant=False, provider=provider))
    assert run(pytester).ret == 0
    (rec,) = results(pytester)["abtests"][0]["runs"]
    # the fake server counts words: "Say alpha" in, "echo: Say alpha" out
    assert (rec["metrics"]["tokens_in"], rec["metrics"]["tokens_out"], rec["metrics"]["tokens_total"]) == (2, 3, 5)
    assert rec["metrics"]["cost_usd"] == pytest.approx(2 * 1 + 3 * 2)


# -- record and replay -----------------------------------------------------------------


def comparable(data: dict[str, Any]) -> Any:
    """The results without what differs from one session to the next (latency)."""
    (ab,) = data["abtests"]
    variants = [
        {
            **v,
            "aggregates": {k: s for k, s in v["aggregates"].items() if "latency" not in k},
            "case_means": {c: {k: m for k, m in ms.items() if "latency" not in k} for c, ms in v["case_means"].items()},
        }
        for v in ab["variants"]
    ]
    runs = [
        {**r, "metrics": {k: m for k, m in r["metrics"].items() if "latency" not in k}}
        for r in sorted(ab["runs"], key=lambda r: (r["variant"], r["case"], r["run"]))
    ]
    return {**ab, "variants": variants, "runs": runs}


def test_record_then_replay_with_the_server_gone(pytester: pytest.Pytester) -> None:
    with FakeOpenAI() as fake:
        fake.responder = lambda body: f"{default_text(body)} #{len(fake.requests)}"  # each answer unique
        write(pytester, flow(fake.base_url))
        recorded = run(pytester, "--promptab-cache", "record", "-v")
        assert recorded.parseoutcomes() == {"passed": 4, "xfailed": 4, "warnings": 1}
        assert len(fake.completions) == 8
    cache = pytester.path / ".promptab" / "cache"
    assert len(list(cache.rglob("*.json"))) == 8  # one file per request: runs stay independent samples
    first = results(pytester)

    replayed = run(pytester, "--promptab-cache", "replay", "-v")
    assert replayed.parseoutcomes() == {"passed": 4, "xfailed": 4, "warnings": 1}
    outcome_lines = [line for line in recorded.outlines if line.startswith("e2e.yaml::")]
    assert outcome_lines and all(line in replayed.outlines for line in outcome_lines)
    assert comparable(results(pytester)) == comparable(first)


def test_replay_miss_fails_that_item_telling_how_to_record(pytester: pytest.Pytester, server: FakeOpenAI) -> None:
    write(pytester, flow(server.base_url, runs=1, cases=("alpha",)))
    assert run(pytester, "--promptab-cache", "record").ret == 0
    server.reset()
    result = run(pytester, "--promptab-cache", "replay", "--promptab-runs", "2", "-rf")
    assert result.parseoutcomes() == {"passed": 2, "failed": 2, "warnings": 1}
    result.stdout.fnmatch_lines(
        [
            "*_ promptab baseline[[]alpha-run2[]] _*",
            "node 'answer': --promptab-cache replay: no recorded response for node 'answer', case 'alpha', run 2*",
            "  hint: run once with --promptab-cache record (or auto) to record it*",
            "FAILED e2e.yaml::t::baseline?alpha-run2?*",
        ]
    )
    assert server.completions == []  # replay never calls out


def test_auto_replays_what_it_has_and_records_the_rest(pytester: pytest.Pytester, server: FakeOpenAI) -> None:
    write(pytester, flow(server.base_url, runs=1, cases=("alpha",)))
    assert run(pytester, "--promptab-cache", "auto").ret == 0
    assert len(server.completions) == 2
    server.reset()
    assert run(pytester, "--promptab-cache", "auto").ret == 0
    assert server.completions == []
    write(pytester, flow(server.base_url, runs=1, cases=("alpha", "beta")))
    result = run(pytester, "--promptab-cache", "auto")
    assert result.parseoutcomes() == {"passed": 2, "xfailed": 2, "warnings": 1}
    assert sorted(prompts(server)) == ["Please say beta", "Say beta"]  # only the new case went out


# -- the Ollama example ----------------------------------------------------------------


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


def point_ollama_example_at(examples: Path, base_url: str) -> None:
    path = examples / "ollama" / "ollama.yaml"
    text = path.read_text(encoding="utf-8")
    assert "http://localhost:11434/v1" in text
    path.write_text(text.replace("http://localhost:11434/v1", base_url), encoding="utf-8")


def test_ollama_example_is_skipped_with_a_reason_when_no_server_answers(
    pytester: pytest.Pytester, examples_dir: Path
) -> None:
    url = closed_port_url()
    point_ollama_example_at(examples_dir, url)
    result = run(pytester, "examples/ollama", "-rs")
    assert result.ret == 0
    outcomes = result.parseoutcomes()
    # 2 variants x 6 cases x 2 runs, no call made, and 2 gates x 2 variants (gates are items too)
    assert outcomes == {"skipped": 28}
    reason = f"no OpenAI-compatible server at {url}; start Ollama (ollama serve) to run this example"
    skipped = [line for line in result.outlines if line.startswith("SKIPPED ")]
    assert skipped and all(line.endswith(reason) for line in skipped), skipped


def test_ollama_example_runs_against_an_openai_compatible_server_and_replays_without_it(
    pytester: pytest.Pytester, examples_dir: Path, server: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", OTHER_KEY)
    point_ollama_example_at(examples_dir, server.base_url)
    result = run(pytester, "examples/ollama", "--promptab-cache", "record")
    outcomes = result.parseoutcomes()
    assert result.ret == 0, result.stdout.str()
    assert "failed" not in outcomes and "skipped" not in outcomes
    assert len(server.completions) == 24
    assert {r.body["model"] for r in server.completions} == {"llama3.2"}
    assert all("authorization" not in r.headers for r in server.completions)  # no key sent to a local server

    # in CI, without the server: a replay needs none, so nothing is skipped
    server.stop()
    replayed = run(pytester, "examples/ollama", "--promptab-cache", "replay")
    assert replayed.ret == 0
    assert replayed.parseoutcomes() == outcomes

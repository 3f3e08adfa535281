"""Session-level behaviour through pytest: --lf after a failed gate, Ctrl-C,
the hooks other plugins implement, and the results file."""

from __future__ import annotations

import json

import pytest

from tests.test_end_to_end import NO_MLFLOW, SIMPLE

FAILING_GATE = SIMPLE + "  gates:\n    - {metric: pass_rate, min: 0.9, action: FAIL}\n"


def test_last_failed_reruns_the_whole_ab_test_after_a_failed_gate(pytester: pytest.Pytester, echo_workflow) -> None:
    echo_workflow("flow", FAILING_GATE)
    first = pytester.runpytest("--promptab", NO_MLFLOW)
    assert first.ret == 1
    # only the gate failed; a gate needs every run, so --lf runs them all again
    # with the failed gate (the gate that passed last time is not rerun)
    again = pytester.runpytest("--promptab", NO_MLFLOW, "--lf")
    assert again.ret == 1
    assert again.parseoutcomes() == {"passed": 2, "xfailed": 6, "failed": 1, "deselected": 1, "warnings": 1}
    again.stdout.fnmatch_lines(["*run-last-failure: rerun previous 9 failures*"])
    again.stdout.fnmatch_lines(["*FAILED flow.yaml::ab::gate?baseline:pass_rate>=0.9?*"])


def test_keyboard_interrupt_keeps_exit_code_and_partial_results(pytester: pytest.Pytester, echo_workflow) -> None:
    pytester.makepyfile(
        interrupting="""
        def generate(request):
            if request.run == 2:
                raise KeyboardInterrupt
            return "yes"
        """
    )
    echo_workflow(
        "flow",
        """
        name: stop
        provider: {type: python, callable: "interrupting.py:generate"}
        nodes: [{id: a, prompt: "x"}]
        inputs: {}
        ab_test:
          name: ab
          runs: 3
          gates: [{metric: pass_rate, min: 0.99, action: BLOCK_DEPLOY}]
        """,
    )
    result = pytester.runpytest("--promptab", NO_MLFLOW, "--promptab-concurrency", "1", no_reraise_ctrlc=True)
    assert result.ret == pytest.ExitCode.INTERRUPTED
    assert "gate[" not in result.stdout.str()
    data = json.loads((pytester.path / ".promptab" / "results.json").read_text())
    assert data["interrupted"] is True
    assert [r["run"] for r in data["abtests"][0]["runs"]] == [1]


def test_plugin_hooks_add_providers_and_see_runs_and_summary(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(
        """
        from pytest_promptab.providers.base import ProviderResponse

        class Shouter:
            def __init__(self, config, base_dir):
                self.suffix = config.options.get("suffix", "!")
            def complete(self, request):
                return ProviderResponse(text=request.prompt.upper() + self.suffix, tokens_in=1, tokens_out=1)
            def close(self):
                pass

        SEEN = []

        def pytest_promptab_register_providers(registry):
            registry.register("shout", Shouter)

        def pytest_promptab_register_checks(registry):
            from pytest_promptab.checks.result import CheckResult
            def exclaims(check, ctx):
                ok = str(ctx.actual).endswith("!")
                return CheckResult(name=check.name or check.type, type=check.type, passed=ok, score=float(ok))
            registry.register("exclaims", exclaims)

        def pytest_promptab_run_finished(record):
            SEEN.append((record.variant, record.outputs["a"]))

        def pytest_promptab_session_summary(summary):
            print("SUMMARY-HOOK", summary.abtests[0].name, sorted(SEEN))
        """
    )
    pytester.path.joinpath("flow.yaml").write_text(
        "name: hooks\n"
        "provider: {type: shout, options: {suffix: '!'}}\n"
        "nodes: [{id: a, prompt: hi}]\n"
        "inputs: {}\n"
        "checks: [{type: exclaims}]\n"
        "ab_test: {name: ab, variants: [{name: v, prompts: {a: ho}}]}\n"
    )
    result = pytester.runpytest("--promptab", NO_MLFLOW, "-s")
    assert result.ret == 0, result.stdout.str()
    assert result.parseoutcomes() == {"passed": 2, "warnings": 1}
    assert "SUMMARY-HOOK ab [('baseline', 'HI!'), ('v', 'HO!')]" in result.stdout.str()


def test_results_file_has_runs_aggregates_comparisons_and_gates(pytester: pytest.Pytester, echo_workflow) -> None:
    echo_workflow("flow", SIMPLE + "  gates:\n    - {metric: tokens_out.max, max: 1, action: WARN}\n")
    result = pytester.runpytest("--promptab", NO_MLFLOW)
    assert result.ret == 0
    data = json.loads((pytester.path / ".promptab" / "results.json").read_text())
    (ab,) = data["abtests"]
    assert ab["nodeid"] == "flow.yaml::ab" and ab["file"] == "flow.yaml"
    baseline = ab["variants"][0]
    assert baseline["pass_rate"] == 0.5
    assert baseline["aggregates"]["passed"] == {
        "n": 4, "mean": 0.5, "std": pytest.approx(0.5773502691896257), "min": 0.0, "max": 1.0, "p50": 0.0, "p95": 1.0,
        "p99": 1.0,
    }  # fmt: skip
    assert baseline["aggregates"]["tokens_out"]["mean"] == 1.0
    loud = ab["variants"][1]
    assert loud["comparison"]["diff"] == -0.5 and loud["comparison"]["test"] == "sign-flip permutation on 2 paired cases (exact)"
    assert [g["outcome"] for g in ab["gates"]] == ["passed", "passed"]
    assert len(ab["runs"]) == 8
    good = next(r for r in ab["runs"] if (r["variant"], r["case"], r["run"]) == ("baseline", "good", 2))
    assert good["outputs"] == {"answer": "yes"} and good["status"] == "passed" and good["metrics"]["passed"] == 1.0


def test_collect_only_makes_no_calls_and_writes_nothing(pytester: pytest.Pytester, echo_workflow) -> None:
    pytester.makepyfile(
        counting="""
        def generate(request):
            raise AssertionError("no call may happen under --collect-only")
        """
    )
    echo_workflow("flow", SIMPLE.replace("echo_provider.py:echo", "counting.py:generate"))
    result = pytester.runpytest("--promptab", NO_MLFLOW, "--collect-only", "-q")
    assert result.ret == 0
    result.stdout.fnmatch_lines(["flow.yaml::ab::baseline[[]good-run1[]]", "*8 tests collected*"])
    assert not (pytester.path / ".promptab").exists()


def test_a_crashing_provider_plugin_fails_the_run_without_traceback(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(
        """
        class Broken:
            def __init__(self, config, base_dir):
                pass
            def complete(self, request):
                raise RuntimeError("cannot reach https://secret-host.example/v1 today")
            def close(self):
                pass

        def pytest_promptab_register_providers(registry):
            registry.register("broken", Broken)
        """
    )
    pytester.path.joinpath("flow.yaml").write_text(
        "name: crash\nprovider: {type: broken}\nnodes: [{id: a, prompt: hi}]\ninputs: {}\nab_test: {name: ab}\n"
    )
    result = pytester.runpytest("--promptab", NO_MLFLOW)
    assert result.ret == 1
    out = result.stdout.str()
    result.stdout.fnmatch_lines(["*node 'a': unexpected RuntimeError: cannot reach <url> today*"])
    assert "Traceback" not in out and "secret-host" not in out
    data = json.loads((pytester.path / ".promptab" / "results.json").read_text())
    assert data["abtests"][0]["failed_runs"] == 1


def test_results_file_has_what_a_summary_hook_noted_and_what_apply_best_decided(
    pytester: pytest.Pytester, echo_workflow
) -> None:
    # results.json is written once after the statistics; again only when a
    # plugin's summary hook or apply-best may have changed the summary
    echo_workflow("flow", SIMPLE)
    pytester.makeconftest(
        """
        def pytest_promptab_session_summary(summary):
            summary.abtests[0].winner_reason = "noted by a plugin"
        """
    )
    pytester.runpytest("--promptab", NO_MLFLOW)
    (ab,) = json.loads((pytester.path / ".promptab" / "results.json").read_text())["abtests"]
    assert ab["winner_reason"] == "noted by a plugin"
    (pytester.path / "conftest.py").unlink()
    pytester.runpytest("--promptab", NO_MLFLOW, "--promptab-apply-best")
    (ab,) = json.loads((pytester.path / ".promptab" / "results.json").read_text())["abtests"]
    assert ab["winner_reason"] != "noted by a plugin" and ab["apply_decision"]

"""History of sessions and regression against a reference (issue 13), end to
end: saved sessions, --promptab-compare, regression items and their outcomes,
bad references, and the ``promptab`` console script."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_end_to_end import NO_MLFLOW

# 4 cases x 6 runs, all pass with "{{ line }}"; "{{ alt }}" breaks c and d
FLOW = """
name: flow
provider: {type: python, callable: "echo_provider.py:echo", model: echo-1}
nodes: [{id: a, prompt: "PROMPT"}]
cases:
  - {id: a, inputs: {line: "yes", alt: "yes"}}
  - {id: b, inputs: {line: "yes", alt: "yes"}}
  - {id: c, inputs: {line: "yes", alt: "no"}}
  - {id: d, inputs: {line: "yes", alt: "no"}}
checks: [{type: equals, value: "yes"}]
ab_test:
  name: ab
  runs: 6
"""
GOOD, BROKEN = "{{ line }}", "{{ alt }}"
REGRESSION = "  regression:\n    - {metric: pass_rate, max_drop: 0.05, action: BLOCK_DEPLOY}\n"


def flow(prompt: str, extra: str = "") -> str:
    return FLOW.replace("PROMPT", prompt) + extra


def history(pytester: pytest.Pytester) -> list[Path]:
    folder = pytester.path / ".promptab" / "history"
    return sorted(folder.glob("*.json"), key=lambda p: (p.name[:16], p.stat().st_mtime_ns)) if folder.exists() else []


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest("--promptab", NO_MLFLOW, "-p", "no:cacheprovider", "-rfEs", *args)


def test_every_completed_session_is_saved_with_its_decision(pytester: pytest.Pytester, echo_workflow) -> None:
    echo_workflow("flow", flow(GOOD))
    result = run(pytester)
    assert result.ret == 0
    [saved] = history(pytester)
    import re

    assert re.fullmatch(r"\d{8}T\d{6}Z_[A-Za-z0-9._-]+_[0-9a-z]+_[0-9a-f]{4}\.json", saved.name)
    result.stdout.fnmatch_lines([f"history: .promptab/history/{saved.name}"])
    data = json.loads(saved.read_text())
    assert data["schema_version"] == 1
    [entry] = data["index"]
    assert entry["nodeid"] == "flow.yaml::ab" and entry["accepted"] is True and entry["deploy_candidate"] == "baseline"
    assert len(entry["file_sha256"]) == 64 and set(entry["hashes"]["baseline"]) == {"prompts", "settings", "model"}
    ab = data["abtests"][0]
    assert len(ab["runs"]) == 24 and ab["variants"][0]["case_means"]["c"]["passed"] == 1.0
    # the same serialisation as the results file: one run per line
    results = (pytester.path / ".promptab" / "results.json").read_text()
    assert saved.read_text().splitlines()[1:] == results.splitlines()[1:]


def test_no_history_saves_nothing(pytester: pytest.Pytester, echo_workflow) -> None:
    echo_workflow("flow", flow(GOOD))
    assert run(pytester, "--promptab-no-history").ret == 0
    assert history(pytester) == []


def test_regression_blocks_names_cases_and_a_blocked_session_never_becomes_the_reference(
    pytester: pytest.Pytester, echo_workflow
) -> None:
    echo_workflow("flow", flow(GOOD, REGRESSION))
    first = run(pytester, "--promptab-compare")
    assert first.ret == 0
    first.stdout.fnmatch_lines([
        "*vs reference: nothing to compare: no earlier accepted session*",
        "SKIPPED ?1? flow.yaml:*: nothing to compare: no earlier accepted session*",
    ])
    assert first.parseoutcomes()["skipped"] == 1
    reference = history(pytester)[0].name

    echo_workflow("flow", flow(BROKEN, REGRESSION))  # no --promptab-compare: the regression gate asks
    second = run(pytester, "--promptab-html", "report.html")
    assert second.ret == 10
    page = (pytester.path / "report.html").read_text()  # the HTML report shows the regression too
    assert "cases worse: c: 100% -&gt; 0%, d: 100% -&gt; 0%" in page and "DEPLOY BLOCKED" in page
    out = second.stdout.str()
    assert f"vs reference .promptab/history/{reference}" in out.replace("\n    ", " ")
    second.stdout.fnmatch_lines([
        "*prompts changed*",
        "*cases worse: c: 100% -> 0%, d: 100% -> 0%",
        "*DEPLOY BLOCKED*",
        "FAILED flow.yaml::ab::regression?baseline:pass_rate:0.05? - regression: *",
    ])
    assert "cases worse: c: 100% -> 0%, d: 100% -> 0%" in out
    # rerunning the regression still reports it: the blocked session is not the reference
    third = run(pytester)
    assert third.ret == 10
    assert f"vs reference .promptab/history/{reference}" in third.stdout.str().replace("\n    ", " ")
    # back to the accepted prompts: an unchanged rerun passes
    echo_workflow("flow", flow(GOOD, REGRESSION))
    fourth = run(pytester, "--promptab-compare")
    assert fourth.ret == 0
    fourth.stdout.fnmatch_lines(["*same prompts, settings and model*", "*pass_rate: 1 -> 1*"])
    assert fourth.parseoutcomes()["passed"] == 25


def test_compare_fail_option_and_a_challenger_regression_is_xfail(pytester: pytest.Pytester, echo_workflow) -> None:
    two = flow(GOOD) + "  variants:\n    - {name: other, prompts: {a: \"{{ alt }}\"}}\n"
    echo_workflow("flow", two)
    assert run(pytester).ret == 0
    result = run(pytester, "--promptab-compare-fail=pass_rate:5%", "-v")
    assert result.ret == 0  # the challenger regressed: it loses, the deploy candidate is fine
    result.stdout.fnmatch_lines([
        "*::regression?baseline:pass_rate:5%? PASSED*",
        "*::regression?other:pass_rate:5%? XFAIL*",
    ])


def test_compare_to_names_a_results_file(pytester: pytest.Pytester, echo_workflow) -> None:
    echo_workflow("flow", flow(GOOD))
    assert run(pytester, "--promptab-no-history", "--promptab-json=approved.json").ret == 0
    echo_workflow("flow", flow(BROKEN))
    result = run(pytester, "--promptab-compare-to", "approved.json", "--promptab-compare-fail", "pass_rate:0.1")
    assert result.ret == 1
    result.stdout.fnmatch_lines(["*vs reference approved.json*", "*cases worse: c: 100% -> 0%, d: 100% -> 0%*"])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--promptab-compare-to", "missing.json"], "*missing.json* does not exist*"),
        (["--promptab-compare-to", "flow.yaml"], "*not a promptab results file*"),
        (["--promptab-compare-to", "newer.json"], "*schema_version 99, newer than this promptab reads*"),
        (["--promptab-compare-to", "mlflow:branch=main"], "*mlflow:branch=main: no MLflow store at*"),
        (["--promptab-compare-fail", "mystery.mean:0.1"], "*'mystery' has no known direction*"),
        (["--promptab-compare-fail", "pass_rate:lots"], "*malformed tolerance 'lots'*"),
        (["--promptab-compare-fail", "pass_rate"], "*expected METRIC:TOLERANCE*"),
    ],
)
def test_bad_options_are_usage_errors(pytester: pytest.Pytester, echo_workflow, args: list[str], message: str) -> None:
    echo_workflow("flow", flow(GOOD))
    (pytester.path / "newer.json").write_text('{"schema_version": 99, "promptab_version": "9", "abtests": []}')
    result = run(pytester, *args)
    assert result.ret == 4
    result.stderr.fnmatch_lines([message])
    assert "Traceback" not in result.stderr.str()


def test_bad_regression_gate_is_a_located_load_error(pytester: pytest.Pytester, echo_workflow) -> None:
    echo_workflow("flow", flow(GOOD, "  regression:\n    - {metric: pass_rate, max_drop: 5 points}\n"))
    result = run(pytester)
    assert result.ret == 1
    result.stdout.fnmatch_lines(["*flow.yaml:1[0-9]*malformed tolerance '5 points'*"])
    echo_workflow("flow", flow(GOOD, "  regression:\n    - {metric: latency.p95, max_rise: 10%}\n"))
    result = run(pytester)
    assert result.ret == 1
    result.stdout.fnmatch_lines(["*flow.yaml:1[0-9]*unknown metric 'latency'*"])


def test_console_script_prints_the_comparison_and_lists_history(pytester: pytest.Pytester, echo_workflow) -> None:
    echo_workflow("flow", flow(GOOD))
    assert run(pytester).ret == 0
    echo_workflow("flow", flow(BROKEN))
    assert run(pytester).ret == 0
    old, new = history(pytester)
    cli = [sys.executable, "-m", "pytest_promptab.cli"]
    env_cwd = dict(cwd=pytester.path, capture_output=True, text=True)
    compared = subprocess.run([*cli, "compare", str(old), str(new)], **env_cwd)  # type: ignore[call-overload]
    assert compared.returncode == 1, compared.stderr
    assert "pass_rate: 1 -> 0.5" in compared.stdout and "cases worse: c: 100% -> 0%, d: 100% -> 0%" in compared.stdout
    assert "prompts changed" in compared.stdout
    listed = subprocess.run([*cli, "history"], **env_cwd)  # type: ignore[call-overload]
    assert listed.returncode == 0 and old.name in listed.stdout and new.name in listed.stdout
    assert "flow.yaml::ab: accepted" in listed.stdout
    bad = subprocess.run([*cli, "compare", "nope.json", str(new)], **env_cwd)  # type: ignore[call-overload]
    assert bad.returncode == 4 and "does not exist" in bad.stderr


def test_ini_compare_to_is_relative_to_the_rootdir(pytester: pytest.Pytester, echo_workflow) -> None:
    echo_workflow("flow", flow(GOOD))
    assert run(pytester, "--promptab-json=approved/results.json").ret == 0
    pytester.makeini("[pytest]\npromptab_compare_to = approved/results.json\n")
    echo_workflow("flow", flow(BROKEN))
    result = run(pytester)
    assert result.ret == 0  # no regression gate: the comparison is reported, the exit code unchanged
    result.stdout.fnmatch_lines(["*vs reference approved?results.json*", "*cases worse: c: 100% -> 0%, d: 100% -> 0%*"])

"""Verdicts end to end (SPEC 3, 6, 7, 8): the too-few-cases warning at
collection, the unit and power lines under the table, parse failures counted
as failed checks, the error rate per variant, the max_error_rate refusal and
exit code, and gates with a confidence."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

NO_MLFLOW = "--promptab-no-mlflow"


@pytest.fixture(autouse=True)
def wide_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests read the lines under the table whole; wrapping at the
    terminal's width is tested in test_table.py."""
    monkeypatch.setenv("COLUMNS", "250")

# The answer is the last line of the prompt; "FAIL..." raises (a provider
# error), and every call is logged to calls.txt so tests can see none was made.
COUNTING_PROVIDER = '''
from pathlib import Path
from pytest_promptab.providers.base import ProviderResponse

def answer(request):
    with open(Path(__file__).with_name("calls.txt"), "a") as f:
        f.write(request.case_id + "\\n")
    text = request.prompt.strip().splitlines()[-1]
    if text.startswith("FAIL"):
        raise RuntimeError("the model is down")
    return ProviderResponse(text=text)
'''


YES, NO = '"yes"', '"no"'  # quoted: YAML 1.1 reads a bare yes/no as a boolean


def cases(n: int, **inputs: str) -> str:
    fields = ", ".join(f"{k}: {v!r}" for k, v in inputs.items())
    return "\n".join(f"  - {{id: c{i}, inputs: {{{fields}}}}}" for i in range(n))


def workflow(
    pytester: pytest.Pytester,
    *,
    n_cases: int,
    challengers: dict[str, str],
    base_prompt: str = "no",
    extra_ab: str = "",
    runs: int = 3,
    case_inputs: str | None = None,
    nodes: str | None = None,
    checks: str = '[{name: is-yes, type: equals, value: "yes"}]',
) -> Path:
    pytester.makepyfile(provider=COUNTING_PROVIDER)
    variants = "\n".join(f"    - {{name: {name}, prompts: {{a: {prompt!r}}}}}" for name, prompt in challengers.items())
    text = f"""name: verdicts
provider: {{type: python, callable: "provider.py:answer"}}
nodes: {nodes or f"[{{id: a, prompt: {base_prompt!r}}}]"}
cases:
{case_inputs if case_inputs is not None else cases(n_cases)}
checks: {checks}
ab_test:
  name: ab
  runs: {runs}
  variants:
{variants}
{extra_ab}"""
    path = pytester.path / "flow.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def results(pytester: pytest.Pytester) -> dict:
    (ab,) = json.loads((pytester.path / ".promptab" / "results.json").read_text())["abtests"]
    return ab


def test_too_few_cases_is_said_at_collection_before_any_call_and_in_the_table(pytester: pytest.Pytester) -> None:
    # 6 cases, 2 challengers: the smallest possible Holm-adjusted p is 2 * 2/2**6 = 0.0625
    workflow(pytester, n_cases=6, challengers={"a1": "yes", "a2": "yes"})
    collected = pytester.runpytest("--promptab", NO_MLFLOW, "--collect-only", "-q")
    collected.stdout.fnmatch_lines([
        "*PromptabWarning: flow.yaml::ab: too few cases to ever decide: 6 cases cannot reach significance at "
        "alpha 0.05 with 2 challengers (Holm), whatever the results (smallest possible adjusted p = 0.0625); "
        "at least 7 cases are needed",
    ])  # fmt: skip
    assert not (pytester.path / "calls.txt").exists()

    result = pytester.runpytest("--promptab", NO_MLFLOW)
    assert result.ret == 0
    # both challengers pass every run, the baseline none: still no winner, and the table says why
    result.stdout.fnmatch_lines([
        "no significant winner*",
        "unit: the case (6 cases x 3 runs;*",
        "too few cases to ever decide: 6 cases*at least 7 cases are needed",
    ])  # fmt: skip
    assert "power:" not in result.stdout.str()
    assert results(pytester)["design"]["decidable"] is False


def test_enough_cases_give_a_winner_and_a_power_line(pytester: pytest.Pytester) -> None:
    workflow(pytester, n_cases=7, challengers={"a1": "yes", "a2": "no"})
    result = pytester.runpytest("--promptab", NO_MLFLOW)
    assert result.ret == 0
    assert "PromptabWarning" not in result.stdout.str()
    result.stdout.fnmatch_lines([
        "winner: a1 (*): a1: pass_rate +1.00 (97.5% CI +1.00..+1.00), p=0.031 (Holm)",
        "unit: the case (7 cases x 3 runs;*",
    ])  # fmt: skip
    # every case difference is +1: there is no spread to size a difference by
    result.stdout.fnmatch_lines(["power: not estimated (no spread observed between paired differences)"])


def test_power_line_with_spread(pytester: pytest.Pytester) -> None:
    # the challenger passes on 6 of 8 cases; the baseline on none
    inputs = "\n".join(f"  - {{id: c{i}, inputs: {{v: {YES if i < 6 else NO}}}}}" for i in range(8))
    workflow(pytester, n_cases=8, challengers={"better": "{{ v }}"}, case_inputs=inputs)
    result = pytester.runpytest("--promptab", NO_MLFLOW)
    assert result.ret == 0
    result.stdout.fnmatch_lines([
        "power: this design detects a pass_rate difference of ±*pp or more with 80% power at alpha 0.05 "
        "(spread of the paired differences: sd 46pp)",
    ])  # fmt: skip
    design = results(pytester)["design"]
    assert design["unit"] == "cases" and design["cases"] == 8 and design["detectable"] > 0.4


def test_one_case_says_the_runs_are_the_unit(pytester: pytest.Pytester) -> None:
    workflow(pytester, n_cases=1, challengers={"better": "yes"}, runs=8)
    result = pytester.runpytest("--promptab", NO_MLFLOW)
    assert result.ret == 0
    result.stdout.fnmatch_lines([
        "winner: better*",
        "unit: one case, so the 8 runs are the unit (paired by run number): the verdict is about this one "
        "input, not about inputs in general",
    ])  # fmt: skip
    ab = results(pytester)
    assert ab["variants"][1]["comparison"]["unit"] == "runs"


def test_one_case_with_too_few_runs_is_said_at_collection(pytester: pytest.Pytester) -> None:
    workflow(pytester, n_cases=1, challengers={"better": "yes"}, runs=3)
    result = pytester.runpytest("--promptab", NO_MLFLOW, "--collect-only", "-q")
    result.stdout.fnmatch_lines(["*PromptabWarning: flow.yaml::ab: too few runs to ever decide*use at least 6 runs*"])


def test_an_answer_that_is_not_json_is_a_failed_parse_check(pytester: pytest.Pytester) -> None:
    # the baseline answers JSON on every case; the challenger answers prose on half of them
    inputs = "\n".join(f"  - {{id: c{i}, inputs: {{json: {YES if i % 2 else NO}}}}}" for i in range(6))
    workflow(
        pytester,
        n_cases=6,
        challengers={"prose": '{% if json == "yes" %}{"label": "yes"}{% else %}Sure! The label is yes.{% endif %}'},
        case_inputs=inputs,
        nodes='[{id: a, prompt: \'{"label": "yes"}\', parse: json}]',
        checks='[{name: label, type: equals, field: a.label, value: "yes"}]',
        runs=2,
    )
    result = pytester.runpytest("--promptab", NO_MLFLOW, "-rx")
    assert result.ret == 0
    outcomes = result.parseoutcomes()
    assert outcomes["passed"] == 12 + 6 and outcomes["xfailed"] == 6 and "failed" not in outcomes
    result.stdout.fnmatch_lines(["XFAIL flow.yaml::ab::prose?c0-run1? - check 'parse' failed: node 'a': output is not JSON*"])
    ab = results(pytester)
    prose = ab["variants"][1]
    assert prose["pass_rate"] == 0.5 and prose["failed_runs"] == 0
    assert prose["aggregates"]["check.parse"]["mean"] == 0.5
    assert ab["variants"][0]["aggregates"]["check.parse"]["mean"] == 1.0


FLAKY = '{% if flaky and run == 1 %}FAIL{% else %}yes{% endif %}'


def flaky_cases(n: int, flaky: int) -> str:
    return "\n".join(f"  - {{id: c{i}, inputs: {{flaky: {str(i < flaky).lower()}}}}}" for i in range(n))


def test_errored_runs_within_max_error_rate_are_shown_and_do_not_fail_the_session(pytester: pytest.Pytester) -> None:
    # 8 cases x 5 runs: 1 of the challenger's 40 runs errors (2.5%, within the default 5%)
    path = workflow(pytester, n_cases=8, challengers={"better": FLAKY}, case_inputs=flaky_cases(8, 1), runs=5)
    before = path.read_bytes()
    result = pytester.runpytest("--promptab", NO_MLFLOW, "--promptab-apply-best")
    assert result.ret == 0, result.stdout.str()
    assert result.parseoutcomes()["failed"] == 1
    result.stdout.fnmatch_lines([
        "error rate (FAILED runs, left out of the statistics): baseline 0% (0/40), better 2% (1/40); "
        "within max_error_rate 0.05",
        "apply-best: flow.yaml: applied 'better'*",
        "promptab: exit code 0: the 1 FAILED item is an errored run within ab_test.max_error_rate; it does not "
        "fail the session (max_error_rate: 0 makes every FAILED run fail it)",
        "FAILED flow.yaml::ab::better?c0-run1? - node 'a'*",
    ])  # fmt: skip
    assert path.read_bytes() != before

    # max_error_rate: 0 keeps pytest's rule: any FAILED item fails the session
    path.write_bytes(before.replace(b"ab_test:\n", b"ab_test:\n  max_error_rate: 0\n"))
    strict = pytester.runpytest("--promptab", NO_MLFLOW, "--promptab-apply-best")
    assert strict.ret == 1
    strict.stdout.fnmatch_lines(["apply-best: flow.yaml: not applied: 'better' has 1 failed run of 40 (2%), above ab_test.max_error_rate 0"])
    assert "not fail the session" not in strict.stdout.str()


def test_a_winner_above_max_error_rate_is_not_applied(pytester: pytest.Pytester) -> None:
    # 3 of the challenger's 40 runs error: 7.5% > 5%
    path = workflow(pytester, n_cases=8, challengers={"better": FLAKY}, case_inputs=flaky_cases(8, 3), runs=5)
    before = path.read_bytes()
    result = pytester.runpytest("--promptab", NO_MLFLOW, "--promptab-apply-best")
    assert result.ret == 1
    result.stdout.fnmatch_lines([
        "winner: better*",
        "error rate (FAILED runs, left out of the statistics): baseline 0% (0/40), better 8% (3/40); "
        "above max_error_rate 0.05: better",
        "apply-best: flow.yaml: not applied: 'better' has 3 failed runs of 40 (8%), above ab_test.max_error_rate 0.05",
    ])  # fmt: skip
    assert path.read_bytes() == before
    assert results(pytester)["variants"][1]["failed_runs"] == 3


def test_a_gate_with_confidence_judges_the_far_bound(pytester: pytest.Pytester) -> None:
    # 9 of 10 cases pass every run: pass rate 0.9, but the 95% interval reaches below 0.8
    inputs = "\n".join(f"  - {{id: c{i}, inputs: {{v: {YES if i else NO}}}}}" for i in range(10))
    gates = (
        "  gates:\n"
        "    - {metric: pass_rate, min: 0.8, action: FAIL, name: point, variants: [v]}\n"
        "    - {metric: pass_rate, min: 0.8, action: FAIL, name: sure, variants: [v], confidence: 0.95}\n"
    )
    workflow(pytester, n_cases=10, challengers={"v": "{{ v }}"}, case_inputs=inputs, extra_ab=gates, runs=2)
    result = pytester.runpytest("--promptab", NO_MLFLOW, "-rA")
    result.stdout.fnmatch_lines([
        "PASSED flow.yaml::ab::gate?v:point?",
        "XFAIL flow.yaml::ab::gate?v:sure? - v: pass_rate = 0.9 ?95% CI 0.*, 1?, required >= 0.8 with 95% "
        "confidence (the whole interval): violated (FAIL); v loses and is never applied",
    ])  # fmt: skip
    gate = next(g for g in results(pytester)["gates"] if g["gate"] == "sure")
    assert gate["confidence"] == 0.95 and gate["bound"] < 0.8 and not gate["met"]

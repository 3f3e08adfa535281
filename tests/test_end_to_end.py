"""End-to-end: pytest --promptab on real files, as a user runs it (pytester)."""

from __future__ import annotations

import json
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tests.conftest import ROOT

NO_MLFLOW = "--promptab-no-mlflow"

SIMPLE = """
name: echo-flow
provider: {type: python, callable: "echo_provider.py:echo", model: echo-1}
nodes:
  - id: answer
    prompt: |
      Question: {{ question }}
      {{ answer_line }}
cases:
  - {id: good, inputs: {question: q1, answer_line: "yes"}, expected: {answer: "yes"}}
  - {id: bad, inputs: {question: q2, answer_line: "no"}, expected: {answer: "yes"}}
checks:
  - {name: is-yes, type: equals, value: "{{ expected.answer }}"}
ab_test:
  name: ab
  runs: 2
  variants:
    - name: loud
      prompts: {answer: "{{ answer_line | upper }}"}
"""


def test_examples_run_with_a_winner_a_gate_xfail_and_a_warning(pytester: pytest.Pytester, examples_dir: Path) -> None:
    result = pytester.runpytest("--promptab", NO_MLFLOW, "examples/", "-rA")
    assert result.ret == 0, result.stdout.str()
    outcomes = result.parseoutcomes()
    # support.yaml: 3 variants x 10 cases x 5 runs = 150 runs, plus 4 gates x 3 variants;
    # configurable_agents/article.yaml: 3 variants x 8 runs, plus 2 gates x 3 variants
    assert outcomes["passed"] + outcomes["xfailed"] == 150 + 12 + 24 + 6
    result.stdout.fnmatch_lines(["*promptab summary*", "*winner: empathetic*"])
    result.stdout.fnmatch_lines(["unit: the case (10 cases x 5 runs;*", "power: this design detects a pass_rate difference of ±*pp or more with 80%",
                                 "  power at alpha 0.05*"])  # lines wrapped at pytester's 80 columns
    assert "too few cases" not in result.stdout.str()
    result.stdout.fnmatch_lines(["XFAIL examples/support.yaml::reply-tone::gate?terse:pass_rate>=0.6?*"])
    assert outcomes.get("warnings", 0) >= 1
    result.stdout.fnmatch_lines(["*PromptabWarning*tokens_out.mean*"])
    data = json.loads((pytester.path / ".promptab" / "results.json").read_text())
    ab = next(a for a in data["abtests"] if a["name"] == "reply-tone")
    assert ab["winner"] == "empathetic"
    article = next(a for a in data["abtests"] if a["name"] == "article_writer")
    assert article["winner"] == "structured"
    assert len(ab["runs"]) == 150
    by_name = {v["name"]: v for v in ab["variants"]}
    assert by_name["empathetic"]["comparison"]["better"] is True
    assert by_name["terse"]["violated"] == ["pass_rate>=0.6"]


def test_block_deploy_demo_exits_with_block_code(pytester: pytest.Pytester) -> None:
    shutil.copytree(ROOT / "examples", pytester.path / "examples", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "demos", pytester.path / "demos", ignore=shutil.ignore_patterns("__pycache__"))
    result = pytester.runpytest("--promptab", NO_MLFLOW, "demos/deploy-block/")
    assert result.ret == 10, result.stdout.str()
    result.stdout.fnmatch_lines(["*DEPLOY BLOCKED*", "FAILED demos/deploy-block/support.yaml::release-gate::gate?baseline:pass_rate>=0.9?*"])
    custom = pytester.runpytest("--promptab", NO_MLFLOW, "--promptab-block-exit-code", "42", "demos/deploy-block/")
    assert custom.ret == 42


def test_node_ids_outcomes_and_xfail_reason(pytester: pytest.Pytester, echo_workflow) -> None:
    echo_workflow("flow", SIMPLE)
    result = pytester.runpytest("--promptab", NO_MLFLOW, "-v", "-rx")
    result.stdout.fnmatch_lines(
        [
            "flow.yaml::ab::baseline?good-run1? PASSED*",
            "flow.yaml::ab::baseline?bad-run2? XFAIL*",
            "flow.yaml::ab::loud?good-run1? XFAIL*",
        ]
    )
    result.stdout.fnmatch_lines(["*XFAIL flow.yaml::ab::baseline?bad-run1? - check 'is-yes' failed*'yes'*'no'*"])
    outcomes = result.parseoutcomes()
    assert outcomes == {"passed": 2, "xfailed": 6, "warnings": 1}  # the warning: 2 cases can never decide
    assert result.ret == 0


def test_k_and_deselect_select_runs(pytester: pytest.Pytester, echo_workflow) -> None:
    echo_workflow("flow", SIMPLE)
    result = pytester.runpytest("--promptab", NO_MLFLOW, "-k", "loud and good")
    assert result.parseoutcomes() == {"xfailed": 2, "deselected": 6, "warnings": 1}
    result = pytester.runpytest("--promptab", NO_MLFLOW, "--deselect", "flow.yaml::ab::baseline[good-run1]")
    assert result.parseoutcomes()["deselected"] == 1
    result.stdout.fnmatch_lines(["*not every run of this A/B test ran*"])


def test_no_cases_names_items_by_run(pytester: pytest.Pytester, echo_workflow) -> None:
    echo_workflow(
        "single",
        """
        name: single
        provider: {type: python, callable: "echo_provider.py:echo"}
        nodes: [{id: a, prompt: "{{ x }}"}]
        inputs: {x: hello}
        ab_test: {name: t, runs: 2}
        """,
    )
    result = pytester.runpytest("--promptab", NO_MLFLOW, "-v")
    result.stdout.fnmatch_lines(["single.yaml::t::baseline?run1? PASSED*", "single.yaml::t::baseline?run2? PASSED*"])
    assert result.ret == 0


def test_broken_run_fails_naming_the_node_without_traceback(pytester: pytest.Pytester, echo_workflow) -> None:
    echo_workflow(
        "broken",
        """
        name: broken
        provider: {type: python, callable: "echo_provider.py:echo"}
        nodes:
          - {id: first, prompt: "ok"}
          - {id: second, prompt: "FAIL now"}
        inputs: {}
        ab_test: {name: t}
        """,
    )
    result = pytester.runpytest("--promptab", NO_MLFLOW)
    assert result.ret == 1
    out = result.stdout.str()
    assert "node 'second'" in out and "the model is down" in out
    assert "Traceback" not in out and "pytest_promptab/" not in out


def test_other_yaml_files_are_ignored(pytester: pytest.Pytester, echo_workflow) -> None:
    echo_workflow("flow", SIMPLE)
    (pytester.path / "docker-compose.yaml").write_text("services:\n  web: {image: nginx}\n")
    (pytester.path / "broken-helm.yaml").write_text("key: [unclosed\n  - {{ .Values }}\n")
    result = pytester.runpytest("--promptab", NO_MLFLOW)
    assert result.ret == 0
    assert "docker-compose" not in result.stdout.str() and "helm" not in result.stdout.str()


def test_without_promptab_flag_nothing_is_collected(pytester: pytest.Pytester, echo_workflow) -> None:
    echo_workflow("flow", SIMPLE)
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.NO_TESTS_COLLECTED


def test_ini_option_turns_it_on(pytester: pytest.Pytester, echo_workflow) -> None:
    echo_workflow("flow", SIMPLE)
    pytester.makeini("[pytest]\npromptab = true\n")
    result = pytester.runpytest(NO_MLFLOW)
    assert result.parseoutcomes()["xfailed"] == 6


def test_junitxml_has_a_testcase_per_gate(pytester: pytest.Pytester, echo_workflow) -> None:
    echo_workflow("flow", SIMPLE + "  gates:\n    - {metric: pass_rate, min: 0.4, action: FAIL}\n")
    result = pytester.runpytest("--promptab", NO_MLFLOW, "--junitxml=out.xml")
    assert result.ret == 0  # baseline 50% passes; loud 0% is xfailed
    root = ET.parse(pytester.path / "out.xml").getroot()
    names = [tc.get("name") for tc in root.iter("testcase")]
    assert "gate[baseline:pass_rate>=0.4]" in names and "gate[loud:pass_rate>=0.4]" in names
    loud = next(tc for tc in root.iter("testcase") if tc.get("name") == "gate[loud:pass_rate>=0.4]")
    assert loud.find("skipped") is not None  # xfail
    props = {p.get("name"): p.get("value") for p in loud.iter("property")}
    assert props["promptab_outcome"] == "xfailed"


def test_failed_gate_on_baseline_fails_the_session(pytester: pytest.Pytester, echo_workflow) -> None:
    echo_workflow("flow", SIMPLE + "  gates:\n    - {metric: pass_rate, min: 0.9, action: FAIL}\n")
    result = pytester.runpytest("--promptab", NO_MLFLOW)
    assert result.ret == 1
    result.stdout.fnmatch_lines(["FAILED flow.yaml::ab::gate?baseline:pass_rate>=0.9? - gate violated: baseline*"])


def test_exit_first_keeps_pytest_exit_code(pytester: pytest.Pytester, echo_workflow) -> None:
    echo_workflow("flow", SIMPLE.replace("answer_line: \"no\"", "answer_line: \"FAIL\"")
                  + "  gates:\n    - {metric: pass_rate, min: 0.9, action: BLOCK_DEPLOY}\n")
    result = pytester.runpytest("--promptab", NO_MLFLOW, "-x")
    assert result.ret == 1
    assert "gate[" not in result.stdout.str()


def test_xdist_gives_the_same_aggregates(pytester: pytest.Pytester, examples_dir: Path) -> None:
    serial = pytester.runpytest("--promptab", NO_MLFLOW, "examples/", "--promptab-json=serial.json")
    assert serial.ret == 0
    parallel = pytester.runpytest_subprocess(
        "--promptab", NO_MLFLOW, "examples/", "-n", "2", "--promptab-json=parallel.json", "-p", "no:cacheprovider"
    )
    assert parallel.ret == 0, parallel.stdout.str()

    def aggregates(name: str) -> dict:
        data = json.loads((pytester.path / name).read_text())
        ab = next(a for a in data["abtests"] if a["name"] == "reply-tone")
        return {
            v["name"]: {k: s for k, s in v["aggregates"].items() if "latency" not in k}
            for v in ab["variants"]
        } | {"winner": ab["winner"]}

    assert aggregates("serial.json") == aggregates("parallel.json")
    parallel.stdout.fnmatch_lines(["*winner: empathetic*"])


def test_runs_override_and_results_file_option(pytester: pytest.Pytester, echo_workflow) -> None:
    echo_workflow("flow", SIMPLE)
    result = pytester.runpytest("--promptab", NO_MLFLOW, "--promptab-runs", "3", "--promptab-json", "r/out.json")
    assert result.parseoutcomes()["xfailed"] == 9
    data = json.loads((pytester.path / "r" / "out.json").read_text())
    assert len(data["abtests"][0]["runs"]) == 12


def test_verbose_adds_per_check_pass_rates(pytester: pytest.Pytester, echo_workflow) -> None:
    echo_workflow("flow", SIMPLE)
    quiet = pytester.runpytest("--promptab", NO_MLFLOW)
    assert "check pass rate" not in quiet.stdout.str()
    result = pytester.runpytest("--promptab", NO_MLFLOW, "-v")
    result.stdout.fnmatch_lines(["check pass rate*is-yes", "-*", "baseline*50%", "loud*0%"])


def test_exit_first_with_a_failing_gate_keeps_the_block_code(pytester: pytest.Pytester) -> None:
    shutil.copytree(ROOT / "examples", pytester.path / "examples", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "demos", pytester.path / "demos", ignore=shutil.ignore_patterns("__pycache__"))
    result = pytester.runpytest("--promptab", NO_MLFLOW, "demos/deploy-block/", "-x")
    assert result.ret == 10  # the runs all completed (XFAIL is no failure); the gate is judged
    data = json.loads((pytester.path / ".promptab" / "results.json").read_text())
    assert data["interrupted"] is False

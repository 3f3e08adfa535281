"""pytest's habits on promptab items (issue 9): a cheap XFAIL; --lf, --ff,
--sw and --deselect on pytest 8.4 and 9.x alike; gates as collected items
(listed, selected with -k, after their runs whatever reorders them, skipped
on a partial selection, judged on the controller under xdist).

``.ci/run`` runs this file under pytest 8.4 too, in a second virtualenv.
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET

import pytest

from tests.test_end_to_end import NO_MLFLOW, SIMPLE

# baseline: 4 runs, 2 pass; loud: 4 runs, 0 pass
GATED = SIMPLE + "  gates:\n    - {metric: pass_rate, min: 0.9, action: FAIL}\n"
BLOCKING = SIMPLE + "  gates:\n    - {metric: pass_rate, min: 0.9, action: BLOCK_DEPLOY}\n"
# one run of four fails (the provider raises on a prompt starting with FAIL)
BROKEN_RUN = """
name: broken
provider: {type: python, callable: "echo_provider.py:echo"}
nodes: [{id: a, prompt: "{{ line }}"}]
cases:
  - {id: one, inputs: {line: "ok"}}
  - {id: two, inputs: {line: "ok"}}
  - {id: three, inputs: {line: "FAIL here"}}
  - {id: four, inputs: {line: "ok"}}
ab_test: {name: t}
"""

RECORD_XFAIL_REPRS = """
import json
SEEN = []
def pytest_runtest_logreport(report):
    if report.when == "call" and hasattr(report, "wasxfail"):
        SEEN.append([report.nodeid, type(report.longrepr).__name__])
def pytest_sessionfinish(session):
    with open("xfail_reprs.json", "w") as f:
        json.dump(SEEN, f)
"""


def verbose_order(result: pytest.RunResult) -> list[str]:
    """The node ids of ``-v`` lines, in the order they ran."""
    return [m.group(1) for line in result.outlines if (m := re.match(r"^(\S+::\S+) (PASSED|FAILED|XFAIL|SKIPPED)", line))]


# -- 1. an XFAIL costs what a pass costs ----------------------------------------


def test_xfail_report_has_no_traceback_and_keeps_reason_and_junit(pytester: pytest.Pytester, echo_workflow) -> None:
    pytester.makeconftest(RECORD_XFAIL_REPRS)
    echo_workflow("flow", SIMPLE)
    result = pytester.runpytest("--promptab", NO_MLFLOW, "-rx", "--junitxml=out.xml")
    assert result.ret == 0
    assert result.parseoutcomes() == {"passed": 2, "xfailed": 6, "warnings": 1}
    result.stdout.fnmatch_lines(["XFAIL flow.yaml::ab::loud?good-run1? - check 'is-yes' failed*'yes'*'YES'*"])
    # no traceback was formatted for any XFAIL (pytest.xfail() made one each)
    reprs = json.loads((pytester.path / "xfail_reprs.json").read_text())
    assert len(reprs) == 6 and {kind for _, kind in reprs} == {"NoneType"}
    root = ET.parse(pytester.path / "out.xml").getroot()
    case = next(tc for tc in root.iter("testcase") if tc.get("name") == "baseline[bad-run1]")
    skipped = case.find("skipped")
    assert skipped is not None and skipped.get("type") == "pytest.xfail"
    assert "check 'is-yes' failed" in skipped.get("message", "") and "'no'" in skipped.get("message", "")


def test_runxfail_turns_a_failed_check_into_a_failure(pytester: pytest.Pytester, echo_workflow) -> None:
    echo_workflow("flow", SIMPLE)
    result = pytester.runpytest("--promptab", NO_MLFLOW, "--runxfail")
    assert result.ret == 1
    assert result.parseoutcomes() == {"passed": 2, "failed": 6, "warnings": 1}
    result.stdout.fnmatch_lines(["FAILED flow.yaml::ab::baseline?bad-run1? - check 'is-yes' failed*"])
    assert "Traceback" not in result.stdout.str()


# -- 2. --lf, --ff, --sw, --deselect ---------------------------------------------


def test_last_failed_reruns_only_the_failed_run(pytester: pytest.Pytester, echo_workflow) -> None:
    echo_workflow("broken", BROKEN_RUN)
    first = pytester.runpytest("--promptab", NO_MLFLOW)
    assert first.parseoutcomes() == {"passed": 3, "failed": 1}
    again = pytester.runpytest("--promptab", NO_MLFLOW, "--lf", "-v")
    assert again.parseoutcomes() == {"failed": 1, "deselected": 3}
    again.stdout.fnmatch_lines(["*run-last-failure: rerun previous 1 failure*"])
    assert verbose_order(again) == ["broken.yaml::t::baseline[three-run1]"]


def test_failed_first_runs_the_failed_run_first(pytester: pytest.Pytester, echo_workflow) -> None:
    echo_workflow("broken", BROKEN_RUN)
    pytester.runpytest("--promptab", NO_MLFLOW)
    again = pytester.runpytest("--promptab", NO_MLFLOW, "--ff", "-v")
    assert again.parseoutcomes() == {"passed": 3, "failed": 1}
    assert verbose_order(again)[0] == "broken.yaml::t::baseline[three-run1]"


def test_stepwise_resumes_at_the_failed_run(pytester: pytest.Pytester, echo_workflow) -> None:
    echo_workflow("broken", BROKEN_RUN)
    first = pytester.runpytest("--promptab", NO_MLFLOW, "--sw")
    assert first.parseoutcomes() == {"passed": 2, "failed": 1}
    again = pytester.runpytest("--promptab", NO_MLFLOW, "--sw", "-v")
    again.stdout.fnmatch_lines(["*stepwise: skipping 2 already passed items*"])
    assert verbose_order(again)[0] == "broken.yaml::t::baseline[three-run1]"


def test_deselect_a_run_by_node_id(pytester: pytest.Pytester, echo_workflow) -> None:
    echo_workflow("broken", BROKEN_RUN)
    result = pytester.runpytest("--promptab", NO_MLFLOW, "--deselect", "broken.yaml::t::baseline[three-run1]")
    assert result.ret == 0
    assert result.parseoutcomes() == {"passed": 3, "deselected": 1}


def test_failed_first_and_stepwise_keep_a_failed_gate_after_its_runs(pytester: pytest.Pytester, echo_workflow) -> None:
    echo_workflow("flow", GATED)
    assert pytester.runpytest("--promptab", NO_MLFLOW).ret == 1
    ff = pytester.runpytest("--promptab", NO_MLFLOW, "--ff", "-v")
    order = verbose_order(ff)
    assert order.index("flow.yaml::ab::gate[baseline:pass_rate>=0.9]") > max(
        i for i, nodeid in enumerate(order) if "run" in nodeid
    )
    ff.stdout.fnmatch_lines(["FAILED flow.yaml::ab::gate?baseline:pass_rate>=0.9? - gate violated*"])
    # --sw resumes at the first run of the failed gate's A/B test, not at the gate alone
    assert pytester.runpytest("--promptab", NO_MLFLOW, "--sw").ret == pytest.ExitCode.INTERRUPTED  # as pytest's --sw
    sw = pytester.runpytest("--promptab", NO_MLFLOW, "--sw", "-v")
    assert sw.ret == pytest.ExitCode.INTERRUPTED
    sw.stdout.fnmatch_lines(["*stepwise: skipping 0 already passed items*"])
    assert verbose_order(sw)[0] == "flow.yaml::ab::baseline[good-run1]"
    sw.stdout.fnmatch_lines(["FAILED flow.yaml::ab::gate?baseline:pass_rate>=0.9? - gate violated*"])


# -- 3. gates are collected items ------------------------------------------------


def test_collect_only_lists_gates_after_their_runs(pytester: pytest.Pytester, echo_workflow) -> None:
    echo_workflow("flow", GATED)
    result = pytester.runpytest("--promptab", NO_MLFLOW, "--collect-only", "-q")
    assert result.ret == 0
    result.stdout.fnmatch_lines(
        [
            "flow.yaml::ab::loud[[]bad-run2[]]",
            "flow.yaml::ab::gate[[]baseline:pass_rate>=0.9[]]",
            "flow.yaml::ab::gate[[]loud:pass_rate>=0.9[]]",
            "*10 tests collected*",
        ]
    )


def test_progress_never_passes_100_percent(pytester: pytest.Pytester, echo_workflow) -> None:
    echo_workflow("flow", GATED)
    result = pytester.runpytest("--promptab", NO_MLFLOW, "-v")
    percents = [int(p) for p in re.findall(r"\[\s*(\d+)%\]", result.stdout.str())]
    assert percents and max(percents) == 100 and percents[-1] == 100
    assert result.parseoutcomes() == {"passed": 2, "xfailed": 7, "failed": 1, "warnings": 1}


def test_k_gate_selects_gates_and_skips_them_as_partial(pytester: pytest.Pytester, echo_workflow) -> None:
    echo_workflow("flow", BLOCKING)
    result = pytester.runpytest("--promptab", NO_MLFLOW, "-k", "gate", "-rs")
    assert result.ret == 0  # not 5 (nothing collected), never the block code
    assert result.parseoutcomes() == {"skipped": 2, "deselected": 8, "warnings": 1}
    result.stdout.fnmatch_lines(["SKIPPED [[]2[]] flow.yaml*: partial selection: 0 of 8 runs"])
    assert "DEPLOY BLOCKED" not in result.stdout.str()


def test_partial_selection_never_blocks(pytester: pytest.Pytester, echo_workflow) -> None:
    echo_workflow("flow", BLOCKING)
    full = pytester.runpytest("--promptab", NO_MLFLOW)
    assert full.ret == 10
    part = pytester.runpytest("--promptab", NO_MLFLOW, "--deselect", "flow.yaml::ab::loud[good-run1]", "-rs")
    assert part.ret == 0
    assert part.parseoutcomes() == {"passed": 2, "xfailed": 5, "skipped": 2, "deselected": 1, "warnings": 1}
    part.stdout.fnmatch_lines(["SKIPPED [[]2[]] flow.yaml*: partial selection: 7 of 8 runs"])
    assert "DEPLOY BLOCKED" not in part.stdout.str()
    data = json.loads((pytester.path / ".promptab" / "results.json").read_text())
    assert data["abtests"][0]["gates"] == []


def test_last_failed_selects_a_failed_gate_with_its_runs(pytester: pytest.Pytester, echo_workflow) -> None:
    echo_workflow("flow", BLOCKING)
    assert pytester.runpytest("--promptab", NO_MLFLOW).ret == 10
    again = pytester.runpytest("--promptab", NO_MLFLOW, "--lf")
    assert again.ret == 10
    assert again.parseoutcomes() == {"passed": 2, "xfailed": 6, "failed": 1, "deselected": 1, "warnings": 1}


def test_gates_stay_after_their_runs_when_a_plugin_reorders(pytester: pytest.Pytester, echo_workflow) -> None:
    pytester.makeconftest(
        """
        def pytest_collection_modifyitems(items):
            items.reverse()  # gates first, as a shuffling plugin might
        """
    )
    echo_workflow("flow", GATED)
    result = pytester.runpytest("--promptab", NO_MLFLOW, "-v")
    order = verbose_order(result)
    assert order[0] == "flow.yaml::ab::loud[bad-run2]"  # the runs keep the plugin's order
    assert order[-2:] == ["flow.yaml::ab::gate[loud:pass_rate>=0.9]", "flow.yaml::ab::gate[baseline:pass_rate>=0.9]"]
    assert result.parseoutcomes() == {"passed": 2, "xfailed": 7, "failed": 1, "warnings": 1}


def test_xdist_controller_judges_gates_after_all_runs(pytester: pytest.Pytester, echo_workflow) -> None:
    echo_workflow("flow", BLOCKING)
    echo_workflow("other", GATED.replace("name: ab", "name: ab2"))
    result = pytester.runpytest_subprocess(
        "--promptab", NO_MLFLOW, "-n", "2", "-p", "no:cacheprovider", "-rA", "-v", "--junitxml=out.xml"
    )
    assert result.ret == 10, result.stdout.str()
    result.stdout.fnmatch_lines(["scheduling tests via ABTestScheduling"])  # one work unit per A/B test
    assert result.parseoutcomes() == {"passed": 4, "xfailed": 14, "failed": 2, "warnings": 2}
    result.stdout.fnmatch_lines(["gate violated: baseline: pass_rate = 0.5, required >= 0.9: violated (BLOCK_DEPLOY)*"])
    result.stdout.fnmatch_lines(["FAILED flow.yaml::ab::gate?baseline:pass_rate>=0.9? - gate violated*"])
    result.stdout.fnmatch_lines(["FAILED other.yaml::ab2::gate?baseline:pass_rate>=0.9? - gate violated*"])
    result.stdout.fnmatch_lines(["*DEPLOY BLOCKED*"])
    assert not re.search(r"\[\s*1[0-9][1-9]%\]", result.stdout.str())
    root = ET.parse(pytester.path / "out.xml").getroot()
    loud = next(tc for tc in root.iter("testcase") if tc.get("name") == "gate[loud:pass_rate>=0.9]"
                and "flow" in (tc.get("classname") or ""))
    assert loud.find("skipped") is not None
    props = {p.get("name"): p.get("value") for p in loud.iter("property")}
    assert props["promptab_outcome"] == "xfailed" and "promptab_gate_pending" not in props
    partial = pytester.runpytest_subprocess("--promptab", NO_MLFLOW, "-n", "2", "-p", "no:cacheprovider", "-k", "baseline")
    assert partial.ret == 0, partial.stdout.str()  # the BLOCK_DEPLOY gate saw half its runs: no block code
    assert partial.parseoutcomes() == {"passed": 4, "xfailed": 4, "skipped": 2, "warnings": 2}


def test_a_variant_whose_runs_all_failed_has_its_gates_skipped(pytester: pytest.Pytester, echo_workflow) -> None:
    echo_workflow(
        "flow",
        """
        name: down
        provider: {type: python, callable: "echo_provider.py:echo"}
        nodes: [{id: a, prompt: "ok"}]
        inputs: {}
        ab_test:
          name: ab
          runs: 2
          variants: [{name: broken, prompts: {a: "FAIL always"}}]
          gates: [{metric: pass_rate, min: 0.5, action: BLOCK_DEPLOY}]
        """,
    )
    result = pytester.runpytest("--promptab", NO_MLFLOW, "-rs")
    assert result.ret == 1  # the failed runs; the baseline met its gate
    assert result.parseoutcomes() == {"passed": 3, "failed": 2, "skipped": 1, "warnings": 1}
    result.stdout.fnmatch_lines(["SKIPPED [[]1[]] flow.yaml*: no completed run of 'broken' to judge"])


APPLY_GATED = """
name: gated
provider: {type: python, callable: "echo_provider.py:echo"}
nodes: [{id: a, prompt: "no"}]
inputs: {}
checks: [{type: equals, value: "yes"}]
ab_test:
  name: ab
  runs: 8
  variants: [{name: better, prompts: {a: "yes"}}]
  gates: [{metric: pass_rate, min: 0.9, action: BLOCK_DEPLOY}]
"""


def test_apply_best_writes_nothing_when_the_session_is_interrupted_after_the_gates(
    pytester: pytest.Pytester, echo_workflow
) -> None:
    """The gates of a.yaml judge 'better' as the deploy candidate; Ctrl-C in
    b.yaml's runs then interrupts the session: a.yaml is left as it was."""
    pytester.makepyfile(interrupting="def generate(request):\n    raise KeyboardInterrupt\n")
    path = echo_workflow("a", APPLY_GATED)
    before = path.read_bytes()
    echo_workflow("b", "name: stop\nprovider: {type: python, callable: 'interrupting.py:generate'}\n"
                  "nodes: [{id: a, prompt: x}]\ninputs: {}\nab_test: {name: ab}\n")
    result = pytester.runpytest("--promptab", NO_MLFLOW, "--promptab-apply-best", "-rx",
                                no_reraise_ctrlc=True)
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.stdout.fnmatch_lines(["XFAIL a.yaml::ab::gate?baseline:pass_rate>=0.9?*"])
    assert path.read_bytes() == before
    done = pytester.runpytest("--promptab", NO_MLFLOW, "--promptab-apply-best", "a.yaml")
    done.stdout.fnmatch_lines(["apply-best: a.yaml: applied 'better'*"])
    assert path.read_bytes() != before

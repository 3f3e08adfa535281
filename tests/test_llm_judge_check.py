"""The llm_judge check through pytest: a rubric graded by a provider, the
score deciding the outcome and the judge's reasoning kept in the results."""

from __future__ import annotations

import json

import pytest

JUDGE = '''
import json

def judge(request):
    # a deterministic judge: full marks when the answer is polite
    answer = request.prompt
    polite = "please" in answer.lower()
    assert request.node_id == "llm_judge:polite"
    return json.dumps({"score": 9 if polite else 2, "reasoning": "polite" if polite else "rude: no please"})
'''

FLOW = """
name: judged
provider: {type: python, callable: "echo_provider.py:echo"}
nodes: [{id: answer, prompt: "{{ text }}"}]
cases:
  - {id: nice, inputs: {text: "Please wait a moment."}}
  - {id: rude, inputs: {text: "Wait."}}
checks:
  - name: polite
    type: llm_judge
    rubric: "Is the reply polite to {{ variant }}?"
    provider: {type: python, callable: "judge_provider.py:judge"}
    min: 0.7
ab_test: {name: t}
"""


def test_llm_judge_grades_runs_and_keeps_reasoning(pytester: pytest.Pytester, echo_workflow) -> None:
    pytester.makepyfile(judge_provider=JUDGE)
    echo_workflow("judged", FLOW)
    result = pytester.runpytest("--promptab", "--promptab-no-mlflow", "-rx")
    assert result.ret == 0, result.stdout.str()
    assert result.parseoutcomes() == {"passed": 1, "xfailed": 1}
    result.stdout.fnmatch_lines(["*XFAIL judged.yaml::t::baseline?rude-run1? - check 'polite' failed: judge score 0.20: rude: no please*"])
    runs = json.loads((pytester.path / ".promptab" / "results.json").read_text())["abtests"][0]["runs"]
    nice = next(r for r in runs if r["case"] == "nice")
    assert nice["checks"][0]["score"] == pytest.approx(0.9)
    assert nice["checks"][0]["detail"] == "judge score 0.90: polite"


def test_llm_judge_without_rubric_is_a_config_error(pytester: pytest.Pytester, echo_workflow) -> None:
    pytester.makepyfile(judge_provider=JUDGE)
    echo_workflow("judged", FLOW.replace('    rubric: "Is the reply polite to {{ variant }}?"\n', ""))
    result = pytester.runpytest("--promptab", "--promptab-no-mlflow")
    assert result.ret == 1
    result.stdout.fnmatch_lines(["*judged.yaml:8: an 'llm_judge' check needs 'rubric:'*"])

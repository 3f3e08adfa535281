"""Node ``routes`` in promptab's own files (the engine feature configurable-
agents ``routes`` edges translate onto): the first route whose condition
holds on the state wins, the default is the fallback, passed-over nodes do
not run; bad routes are located errors. Also a ``duration_ms_p99`` gate
(p99 by nearest rank in every metric's statistics)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.ca_helpers import assert_located_error, run
from tests.fake_openai import FakeOpenAI, default_text

NATIVE = """\
name: triage
provider: {{type: openai, model: m, base_url: "{base_url}"}}
nodes:
  - id: classify
    prompt: "Classify: {{{{ email }}}}"
    output: category
    routes:
{routes}
  - id: billing
    prompt: "Billing: {{{{ email }}}}"
    routes: [{{to: END}}]
  - id: general
    prompt: "General: {{{{ email }}}}"
cases:
  - {{id: charged, inputs: {{email: "I was charged twice"}}}}
  - {{id: crash, inputs: {{email: "The app crashes"}}}}
checks:
  - {{name: billing_answered, type: contains, field: billing, value: reply}}
ab_test:
  name: t
  runs: 1
  variants:
    - {{name: v, prompts: {{billing: "B2: {{{{ email }}}}"}}}}
"""

ROUTES = """\
      - {when: 'category == "billing"', to: billing}
      - {to: general}
"""


def native(base_url: str, routes: str = ROUTES) -> str:
    return NATIVE.format(base_url=base_url, routes=routes.rstrip("\n"))




def classifier(body: Any) -> str:
    prompt = default_text(body).removeprefix("echo: ")
    if prompt.startswith("Classify:"):
        return "billing" if "charged" in prompt else "bug"
    return f"reply to [{prompt}]"


def test_routes_choose_the_next_node(pytester: pytest.Pytester, fake_openai: FakeOpenAI) -> None:
    fake_openai.responder = classifier
    pytester.makefile(".yaml", wf=native(fake_openai.base_url))
    result = run(pytester, "-rA")
    result.assert_outcomes(passed=2, xfailed=2)
    sent = [default_text(r.body).removeprefix("echo: ") for r in fake_openai.completions]
    assert sorted(sent) == sorted([
        "Classify: I was charged twice", "Billing: I was charged twice",
        "Classify: I was charged twice", "B2: I was charged twice",
        "Classify: The app crashes", "General: The app crashes",
        "Classify: The app crashes", "General: The app crashes",
    ])  # billing -> END: 'general' never runs after it
    result.stdout.fnmatch_lines([
        "XFAIL wf.yaml::t::baseline[[]crash-run1[]] - check 'billing_answered' failed: field 'billing' has no value"
        " in this run: node 'billing' did not run (the routes went classify -> general)",
    ])
    data = json.loads((pytester.path / ".promptab" / "results.json").read_text())
    runs = {(r["variant"], r["case"]): r for r in data["abtests"][0]["runs"]}
    assert set(runs[("v", "crash")]["outputs"]) == {"category", "general"}
    assert "node.billing.latency_ms" not in runs[("v", "crash")]["metrics"]


def test_a_condition_that_cannot_be_evaluated_does_not_hold(pytester: pytest.Pytester,
                                                             fake_openai: FakeOpenAI) -> None:
    fake_openai.responder = classifier
    routes = "      - {when: 'category > 3', to: billing}\n      - {to: general}\n"
    pytester.makefile(".yaml", wf=native(fake_openai.base_url, routes))
    result = run(pytester)
    result.assert_outcomes(xfailed=4)  # text > number fails: the default (general) every time
    assert {default_text(r.body).split(":")[1] for r in fake_openai.completions} == {" Classify", " General"}


@pytest.mark.parametrize(
    ("routes", "message", "needle"),
    [
        ("      - {when: 'category == \"billing\"', to: billing}\n",
         "routes need exactly one default (a route without 'when')", "when: 'category"),
        ("      - {to: billing}\n      - {to: general}\n", "routes need exactly one default", "- {to: general}"),
        ("      - {when: 'category == \"billing\"', to: bililng}\n      - {to: general}\n",
         "route to unknown node 'bililng' (did you mean 'billing'?)", "bililng"),
        ("      - {when: 'category == \"billing\"', to: classify}\n      - {to: general}\n",
         "route to 'classify' goes back", "to: classify"),
        ("      - {when: 'categry == \"billing\"', to: billing}\n      - {to: general}\n",
         "condition 'categry == \"billing\"' reads 'categry', which is not in the state", "categry"),
        ("      - {when: 'category ==', to: billing}\n      - {to: general}\n",
         "invalid condition 'category =='", "category =="),
    ],
    ids=["no-default", "two-defaults", "unknown-node", "back", "unknown-name", "syntax"],
)
def test_bad_routes_are_located_errors(pytester: pytest.Pytester, fake_openai: FakeOpenAI, routes: str,
                                       message: str, needle: str) -> None:
    assert_located_error(pytester, fake_openai, native(fake_openai.base_url, routes), message, needle)


def test_duration_p99_gate(pytester: pytest.Pytester, fake_openai: FakeOpenAI) -> None:
    text = ('schema_version: "1.0"\nflow: {name: mini}\nstate:\n  fields:\n'
            '    topic: {type: str, default: "tea"}\n    article: {type: str}\n'
            'nodes:\n  - id: writer\n    prompt: "Write about {state.topic}."\n'
            '    outputs: [article]\n    output_schema: {type: str}\n'
            'edges:\n  - {from: START, to: writer}\n  - {from: writer, to: END}\n'
            f'config:\n  llm: {{provider: openai, api_base: "{fake_openai.base_url}", model: m}}\n'
            '  ab_test:\n    run_count: 3\n    variants:\n      - {name: short, prompt: "Briefly: {state.topic}"}\n'
            '  gates:\n    gates:\n      - {metric: duration_ms_p99, max: 0.000001}\n'
            '      - {metric: p99_total_tokens, max: 100000}\n    on_fail: fail\n')
    pytester.makefile(".yaml", wf=text)
    result = run(pytester, "-rA")
    # 2 variants x 3 runs; the p99 latency gate fails the candidate (baseline), xfails 'short'; tokens pass
    result.assert_outcomes(passed=8, failed=1, xfailed=1)
    result.stdout.fnmatch_lines(["*baseline: latency_ms.p99 = *, required <= 1e-06: violated (FAIL)*"])
    data = json.loads((pytester.path / ".promptab" / "results.json").read_text())
    latency = data["abtests"][0]["variants"][0]["aggregates"]["latency_ms"]
    assert latency["p99"] == latency["max"]  # 3 runs: nearest rank ceil(2.97) -> the 3rd of 3

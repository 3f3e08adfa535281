"""configurable-agents ``routes`` edges (issue 17): a classifier node whose
answer picks the writer node that runs, end to end through ``pytest
--promptab`` against the fake OpenAI server; malformed routes as located
errors; the condition translation on its own."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from pytest_promptab.workflow.formats import ca_conditions
from pytest_promptab.workflow.templates import TemplateRenderer
from tests.ca_helpers import assert_located_error, run
from tests.fake_openai import FakeOpenAI, default_text

CORPUS = Path(__file__).parent / "ca_corpus" / "support_triage.yaml"
ROUTES = """\
      - condition: {logic: 'state.category == "billing"'}
        to: billing_writer
      - condition: {logic: default}
        to: general_writer
"""


def routed(base_url: str, *, routes: str = ROUTES, extra: str = "") -> str:
    """The corpus file pointed at ``base_url``, with ``routes`` for the
    classifier's and ``extra`` at the end (in its ``promptab:`` block)."""
    text = CORPUS.read_text(encoding="utf-8")
    assert ROUTES in text and 'api_base: "http://127.0.0.1:9/v1"' in text
    return text.replace(ROUTES, routes).replace("http://127.0.0.1:9/v1", base_url) + extra




def classifier(body: Any) -> str:
    prompt = default_text(body).removeprefix("echo: ")
    if prompt.startswith("Classify:"):
        return "billing" if "charged" in prompt else "bug"
    return f"reply to [{prompt}]"


def prompts_by_case(fake: FakeOpenAI) -> set[str]:
    return {default_text(r.body).removeprefix("echo: ") for r in fake.completions}


def test_the_classifier_picks_the_writer_that_runs(pytester: pytest.Pytester, fake_openai: FakeOpenAI) -> None:
    fake_openai.responder = classifier
    checks = ("  checks:\n"
              "    - {name: answered, type: contains, field: billing_reply, value: reply}\n")
    pytester.makefile(".yaml", wf=routed(fake_openai.base_url, extra=checks))
    result = run(pytester, "-rA")
    # the billing case takes the billing writer and passes its check; the crash case takes the
    # general writer, so the check on the billing writer's output fails (xfail), for both variants
    result.assert_outcomes(passed=2, xfailed=2)
    assert prompts_by_case(fake_openai) == {
        "Classify: I was charged twice", "Classify: The app crashes",
        "Billing reply to: I was charged twice",  # baseline, charged
        "Two lines for: I was charged twice",  # terse, charged
        "General reply to: The app crashes",  # both variants, crash: the variant's node did not run
    }
    assert len(fake_openai.completions) == 8  # two nodes per run, 4 runs
    results = json.loads((pytester.path / ".promptab" / "results.json").read_text())
    runs = {(r["variant"], r["case"]): r for r in results["abtests"][0]["runs"]}
    crash = runs[("baseline", "crash")]
    assert crash["outputs"] == {"category": "bug", "general_reply": "reply to [General reply to: The app crashes]"}
    (check,) = crash["checks"]
    assert check["passed"] is False
    assert "node 'billing_writer' did not run (the routes went classify -> general_writer)" in check["detail"]
    assert set(runs[("baseline", "charged")]["outputs"]) == {"category", "billing_reply"}
    out = result.stdout.str()
    assert "did not run" in out and "Traceback" not in out


def test_first_true_route_wins_and_default_is_the_fallback(pytester: pytest.Pytester,
                                                            fake_openai: FakeOpenAI) -> None:
    fake_openai.responder = classifier
    routes = ("      - condition: {logic: default}\n        to: END\n"
              "      - condition: {logic: 'state.category == \"bug\" or state.category == \"crash\"'}\n"
              "        to: general_writer\n"
              "      - condition: {logic: 'state.category != \"nothing\"'}\n        to: billing_writer\n")
    pytester.makefile(".yaml", wf=routed(fake_openai.base_url, routes=routes))
    result = run(pytester)
    result.assert_outcomes(passed=4)  # no checks: a run passes when it completes
    assert prompts_by_case(fake_openai) == {
        "Classify: I was charged twice", "Classify: The app crashes",
        "Billing reply to: I was charged twice", "Two lines for: I was charged twice",
        "General reply to: The app crashes",
    }


def test_default_route_to_end_ends_the_run(pytester: pytest.Pytester, fake_openai: FakeOpenAI) -> None:
    fake_openai.responder = classifier
    routes = ("      - condition: {logic: 'state.category == \"refund\"'}\n        to: billing_writer\n"
              "      - condition: {logic: default}\n        to: END\n")
    text = routed(fake_openai.base_url, routes=routes).replace(
        "  - {from: billing_writer, to: END}\n", "  - {from: billing_writer, to: general_writer}\n")
    pytester.makefile(".yaml", wf=text)
    result = run(pytester)
    result.assert_outcomes(passed=4)
    assert prompts_by_case(fake_openai) == {"Classify: I was charged twice", "Classify: The app crashes"}


@pytest.mark.parametrize(
    ("routes", "message", "needle"),
    [
        ("      - condition: {logic: 'state.category == \"billing\"'}\n        to: billing_writer\n",
         "routes must include a default route", "routes:"),
        ("      - condition: {logic: 'state.categroy == \"billing\"'}\n        to: billing_writer\n"
         "      - condition: {logic: default}\n        to: general_writer\n",
         "unknown state field 'categroy' (did you mean 'category'?)", "categroy"),
        ("      - condition: {logic: 'category == \"billing\"'}\n        to: billing_writer\n"
         "      - condition: {logic: default}\n        to: general_writer\n",
         "names no state field", "logic: 'category"),
        ("      - condition: {logic: 'state.category.value == 1'}\n        to: billing_writer\n"
         "      - condition: {logic: default}\n        to: general_writer\n",
         "is not one configurable-agents evaluates", "category.value"),
        ("      - condition: {logic: 'state.category == \"important\"'}\n        to: billing_writer\n"
         "      - condition: {logic: default}\n        to: general_writer\n",
         "contains 'import', which configurable-agents refuses", "important"),
        ("      - condition: {logic: 'state.category == \"billing\"'}\n        to: biling_writer\n"
         "      - condition: {logic: default}\n        to: general_writer\n",
         "route to unknown node 'biling_writer' (did you mean 'billing_writer'?)", "biling_writer"),
        ("      - condition: {logic: 'state.category == \"billing\"'}\n        to: classify\n"
         "      - condition: {logic: default}\n        to: general_writer\n",
         "the edge from 'classify' to 'classify' goes back to an earlier node (a loop)", "        to: classify"),
        ("      - {to: billing_writer}\n      - condition: {logic: default}\n        to: general_writer\n",
         "a route needs 'condition: {logic: ...}'", "- {to: billing_writer}"),
    ],
    ids=["no-default", "unknown-field", "no-state-ref", "dotted", "import", "unknown-node", "loop", "no-condition"],
)
def test_malformed_route_is_a_located_error(pytester: pytest.Pytester, fake_openai: FakeOpenAI, routes: str,
                                            message: str, needle: str) -> None:
    assert_located_error(pytester, fake_openai, routed(fake_openai.base_url, routes=routes), message, needle)


def test_a_route_back_through_another_node_is_a_loop(pytester: pytest.Pytester, fake_openai: FakeOpenAI) -> None:
    text = routed(fake_openai.base_url).replace(
        "  - {from: general_writer, to: END}\n", "  - {from: general_writer, to: classify}\n")
    pytester.makefile(".yaml", wf=text)
    line = next(i for i, ln in enumerate(text.splitlines(), 1) if "{from: general_writer, to: classify}" in ln)
    result = run(pytester)
    result.stdout.fnmatch_lines([f"*wf.yaml:{line}: the edge from 'general_writer' to 'classify' goes back*"])
    assert not fake_openai.completions


# -- the condition translation ----------------------------------------------

FIELDS = {"category": "str", "score": "float", "flag": "bool", "name": "str"}


@pytest.mark.parametrize(
    ("logic", "state", "holds"),
    [
        ('state.category == "billing"', {"category": "billing"}, True),
        ("state.category == 'billing'", {"category": "billing"}, True),
        ("state.category == billing", {"category": "billing"}, True),  # a bare word is text
        ('state.category != "billing"', {"category": "billing"}, False),
        ("state.score > 0.5", {"score": 0.75}, True),
        ("state.score >= 1", {"score": 1}, True),
        ("state.score < 1", {"score": None}, False),  # fails to evaluate: does not hold
        ("state.flag", {"flag": True}, True),
        ("not state.flag", {"flag": True}, False),
        ("state.flag == true", {"flag": True}, True),
        ("state.flag == TRUE", {"flag": True}, True),
        ("state.score > 0.5 and state.flag", {"score": 0.75, "flag": False}, False),
        ("state.score > 0.5 and flag", {"score": 0.75, "flag": True}, True),  # a bare field in a compound
        ('state.score > 0.5 or state.category == "x"', {"score": 0.1, "category": "x"}, True),
        # every part is evaluated: one that fails makes the whole fail, as configurable-agents skips it
        ('state.category == "x" or state.score > 0.5', {"score": None, "category": "x"}, False),
        ("(state.score > 0.5)", {"score": 0.75}, True),
        ("(state.score > 0.5 and state.flag)", {"score": 0.75, "flag": True}, True),
        ("", {}, True),
        (" default ", {}, True),
    ],
)
def test_condition_translation(logic: str, state: dict[str, Any], holds: bool) -> None:
    expression = ca_conditions.translate(logic, FIELDS)
    assert expression is not None
    scope = {name: None for name in FIELDS} | state
    assert TemplateRenderer().holds(expression, scope) is holds


def test_default_route_and_bad_conditions() -> None:
    assert ca_conditions.translate("default", FIELDS) is None
    # read as score > "0.5) and (state.flag": a number against text, on every run
    for logic in ("(state.score > 0.5) and (state.flag)", "state.category > 1", "not state.score > 1", "state.score =< 1",
                  "score > 1", "state.__class__", "state.nope == 1"):
        with pytest.raises(ca_conditions.BadCondition):
            ca_conditions.translate(logic, FIELDS)

"""apply-best on a configurable-agents file writes the winner's
``config_overrides`` values where they point (``config.llm.<key>``), byte
exact in the style of the old value, next to its prompt; the variants stay
as they are (issue 17, point 8). Also: a ``promptab: {cases: FILE}`` gets the
state's defaults for what its cases do not give."""

from __future__ import annotations

import json
import textwrap
from typing import Any

import pytest

from pytest_promptab.apply.best import rewritten
from pytest_promptab.workflow.loader import load_workflow
from tests.ca_helpers import run
from tests.fake_openai import FakeOpenAI, default_text

FILE = """\
schema_version: "1.0"
flow: {{name: mini}}
state:
  fields:
    topic: {{type: str, default: "tea"}}   # the one input
    article: {{type: str}}
    quality_score: {{type: float}}
nodes:
  - id: writer
    prompt: "Write about {{state.topic}}."
    outputs: [article, quality_score]
    output_schema:
      type: object
      fields:
        - {{name: article, type: str}}
        - {{name: quality_score, type: float}}
edges:
  - {{from: START, to: writer}}
  - {{from: writer, to: END}}
config:
  llm:
    provider: openai
    api_base: "{base_url}"
    model: m
    temperature: 0.7     # warm by default
  ab_test:
    run_count: 8
    variants:
      - name: cool
        prompt: |
          Briefly: {{state.topic}}
        config_overrides:
          config.llm.temperature: 0.1
          config.llm.max_tokens: 200
promptab:
  objective: {{metric: quality_score, goal: max}}
"""

APPLIED = """\
schema_version: "1.0"
flow: {{name: mini}}
state:
  fields:
    topic: {{type: str, default: "tea"}}   # the one input
    article: {{type: str}}
    quality_score: {{type: float}}
nodes:
  - id: writer
    prompt: "Briefly: {{state.topic}}\\n"
    outputs: [article, quality_score]
    output_schema:
      type: object
      fields:
        - {{name: article, type: str}}
        - {{name: quality_score, type: float}}
edges:
  - {{from: START, to: writer}}
  - {{from: writer, to: END}}
config:
  llm:
    provider: openai
    api_base: "{base_url}"
    model: m
    temperature: 0.1     # warm by default
    max_tokens: 200
  ab_test:
    run_count: 8
    variants:
      - name: cool
        prompt: |
          Briefly: {{state.topic}}
        config_overrides:
          config.llm.temperature: 0.1
          config.llm.max_tokens: 200
promptab:
  objective: {{metric: quality_score, goal: max}}
"""




def test_apply_best_writes_config_overrides_byte_exact(pytester: pytest.Pytester, fake_openai: FakeOpenAI) -> None:
    def respond(body: Any) -> str:  # the cool temperature writes better articles
        return json.dumps({"article": "text", "quality_score": 0.9 if body.get("temperature") == 0.1 else 0.5})

    fake_openai.responder = respond
    path = pytester.path / "wf.yaml"
    path.write_text(FILE.format(base_url=fake_openai.base_url), encoding="utf-8")
    result = run(pytester, "--promptab-apply-best")
    assert "applied 'cool'" in result.stdout.str(), result.stdout.str()
    assert path.read_text(encoding="utf-8") == APPLIED.format(base_url=fake_openai.base_url)
    bodies = [r.body for r in fake_openai.completions]
    assert {(b.get("temperature"), b.get("max_tokens")) for b in bodies} == {(0.7, None), (0.1, 200)}


@pytest.mark.parametrize(
    ("llm", "applied"),
    [
        # a flow mapping stays one; a missing key joins it
        ("  llm: {provider: openai, model: m, temperature: 0.7}\n",
         "  llm: {provider: openai, model: m, temperature: 0.1, max_tokens: 200}\n"),
        # a quoted value stays quoted
        ("  llm:\n    model: m\n    temperature: '0.7'\n    max_tokens: 50\n",
         "  llm:\n    model: m\n    temperature: 0.1\n    max_tokens: 200\n"),
        # no config.llm at all: made, after config's last key
        ("", "  llm: {temperature: 0.1, max_tokens: 200}\n"),
    ],
    ids=["flow", "block", "missing"],
)
def test_overrides_in_the_style_of_the_old_value(tmp_path: Any, llm: str, applied: str) -> None:
    variants = ("  ab_test:\n    variants:\n      - name: cool\n        prompt: 'Briefly: {state.topic}'\n"
                "        config_overrides: {config.llm.temperature: 0.1, config.llm.max_tokens: 200}\n")
    head = ('schema_version: "1.0"\nflow: {name: mini}\nstate:\n  fields:\n    topic: {type: str, default: tea}\n'
            "    article: {type: str}\nnodes:\n  - id: writer\n    prompt: 'Write about {state.topic}.'\n"
            "    outputs: [article]\n    output_schema: {type: str}\nedges:\n  - {from: START, to: writer}\n"
            "  - {from: writer, to: END}\nconfig:\n")
    text = head + llm + variants
    path = tmp_path / "wf.yaml"
    path.write_text(text, encoding="utf-8")
    loaded = load_workflow(path)
    new = rewritten(text.encode(), loaded.config, "cool", "wf.yaml").decode()
    prompt_applied = head.replace("'Write about {state.topic}.'", "'Briefly: {state.topic}'")
    if not llm:
        assert new == prompt_applied + variants + applied
    else:
        assert new == prompt_applied + applied + variants


def test_cases_file_gets_the_state_defaults(pytester: pytest.Pytester, fake_openai: FakeOpenAI) -> None:
    text = textwrap.dedent("""\
        schema_version: "1.0"
        flow: {name: mini}
        state:
          fields:
            topic: {type: str, default: "tea"}
            tone: {type: str, default: "calm"}
            article: {type: str}
        nodes:
          - id: writer
            prompt: "Write about {state.topic}, {state.tone}."
            outputs: [article]
            output_schema: {type: str}
        edges:
          - {from: START, to: writer}
          - {from: writer, to: END}
        config:
          llm: {provider: openai, api_base: "URL", model: m}
          ab_test:
            run_count: 1
            variants:
              - {name: short, prompt: "Briefly: {state.topic} ({state.tone})"}
        webhook:
          default_inputs: {tone: "warm"}
        promptab:
          cases: cases.jsonl
        """).replace("URL", fake_openai.base_url)
    pytester.makefile(".yaml", wf=text)
    pytester.makefile(".jsonl", cases='{"id": "coffee", "inputs": {"topic": "coffee"}}\n'
                                      '{"id": "loud", "inputs": {"tone": "loud"}}\n')
    result = run(pytester)
    result.assert_outcomes(passed=4)
    sent = {default_text(r.body).removeprefix("echo: ") for r in fake_openai.completions}
    # a field a case does not give: the webhook's default input, else the state's default
    assert sent == {"Write about coffee, warm.", "Write about tea, loud.",
                    "Briefly: coffee (warm)", "Briefly: tea (loud)"}

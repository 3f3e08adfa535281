"""configurable-agents workflow files run unchanged (issue 17): the published
example of that project and a corpus of small files, end to end through
``pytest --promptab`` (pytester) against the fake OpenAI server, plus the
pure pieces (template translation, providers, gate metric names).

The published example (tests/ca_corpus/mlflow_optimization.yaml) is kept
byte for byte as configurable-agents ships it; tests only point its
``config.llm`` at the fake server.
"""

from __future__ import annotations

import json
import re
import textwrap
from pathlib import Path
from typing import Any

import pytest

from pytest_promptab.workflow.formats import ca_parts, ca_templates
from tests.ca_helpers import assert_located_error, run
from tests.fake_openai import FakeOpenAI, default_text

CORPUS = Path(__file__).parent / "ca_corpus"
EXAMPLE = (CORPUS / "mlflow_optimization.yaml").read_text(encoding="utf-8")




def pointed(text: str, base_url: str) -> str:
    """The example with only its ``config.llm`` pointed at ``base_url``."""
    old = '  llm:\n    model: "gemini-2.5-flash-lite"\n'
    assert old in text
    return text.replace(old, f'  llm:\n    provider: openai\n    api_base: "{base_url}"\n    model: "gemini-2.5-flash-lite"\n')


def minimal(base_url: str, *, nodes: str = "", edges: str = "", extra: str = "", state: str = "") -> str:
    """A small configurable-agents file: one ``writer`` node, START -> writer -> END."""
    nodes = nodes or textwrap.indent(textwrap.dedent("""\
        - id: writer
          prompt: "Write about {state.topic}."
          outputs: [article]
          output_schema: {type: str}
        """), "  ")
    edges = edges or "  - {from: START, to: writer}\n  - {from: writer, to: END}\n"
    return (
        'schema_version: "1.0"\nflow: {name: mini}\nstate:\n  fields:\n'
        '    topic: {type: str, default: "tea"}\n    article: {type: str, default: ""}\n'
        + state
        + "nodes:\n" + nodes + "edges:\n" + edges
        + f'config:\n  llm: {{provider: openai, api_base: "{base_url}", model: m}}\n'
        + "  ab_test:\n    run_count: 2\n    variants:\n      - {name: short, prompt: \"Briefly: {state.topic}\"}\n"
        + extra
    )


def test_published_example_runs_unchanged(pytester: pytest.Pytester, fake_openai: FakeOpenAI) -> None:
    pytester.makefile(".yaml", mlflow_optimization=pointed(EXAMPLE, fake_openai.base_url))
    result = run(pytester, "-rA")
    # 5 variants x 3 runs, and 4 gates x 5 variants
    result.assert_outcomes(passed=35)
    out = result.stdout.str()
    for name in ("baseline", "simple", "detailed", "expert", "question_driven"):
        assert re.search(rf"^{name}\s+1\.00", out, re.MULTILINE), name
    assert "cost_usd.mean: not judged: no prices" in out
    assert "gate[expert:quality_minimum]" in out
    bodies = [r.body for r in fake_openai.completions]
    assert len(bodies) == 30  # two nodes per run
    writer = next(b for b in bodies if "Write a concise article about AI Safety." in b["messages"][-1]["content"])
    assert writer["model"] == "gemini-2.5-flash-lite" and writer["temperature"] == 0.7
    schema = writer["response_format"]["json_schema"]["schema"]
    assert writer["response_format"]["type"] == "json_schema"
    assert schema["properties"] == {"article": {"type": "string", "description": "The generated article"}}
    # the quality check sees the writer's parsed article, from the state
    checks = [b for b in bodies if b["messages"][-1]["content"].startswith("Rate the quality")]
    # (calls run concurrently: any of them may come first, so look for the baseline's)
    assert any("echo: Write a short article about AI Safety." in b["messages"][-1]["content"] for b in checks)
    results = json.loads((pytester.path / ".promptab" / "results.json").read_text())
    text = json.dumps(results)
    assert '"quality_score"' in text


def test_quality_gate_judges_the_score(pytester: pytest.Pytester, fake_openai: FakeOpenAI) -> None:
    fake_openai.responder = lambda body: (
        json.dumps({"quality_score": 0.4}) if "Rate the quality" in default_text(body)
        else json.dumps({"article": "text"}))
    pytester.makefile(".yaml", wf=pointed(EXAMPLE, fake_openai.base_url))
    result = run(pytester)
    # no winner: the baseline is the deploy candidate and fails the FAIL gate; the others lose (xfail)
    result.assert_outcomes(passed=30, failed=1, xfailed=4)
    result.stdout.fnmatch_lines(["*baseline: quality_score.mean = 0.4, required >= 0.6: violated (FAIL)*"])


def apply_example(base_url: str) -> str:
    block = ("\npromptab:\n  objective: {metric: quality_score, goal: max}\n"
             "  pricing: {input_per_mtok: 0.15, output_per_mtok: 0.6}\n")
    return pointed(EXAMPLE, base_url) + block


def test_apply_best_writes_the_winning_prompt_byte_exact(pytester: pytest.Pytester, fake_openai: FakeOpenAI) -> None:
    def respond(body: Any) -> str:
        prompt = default_text(body)
        if "Rate the quality" in prompt:
            return json.dumps({"quality_score": 0.9 if "EXPERT-ARTICLE" in prompt else 0.5})
        return json.dumps({"article": "EXPERT-ARTICLE" if "expert writer" in prompt else "plain"})

    fake_openai.responder = respond
    path = pytester.makefile(".yaml", wf=apply_example(fake_openai.base_url))
    source = path.read_text(encoding="utf-8")
    result = run(pytester, "--promptab-runs", "8", "--promptab-apply-best")
    assert "applied 'expert'" in result.stdout.str()
    old = "    prompt: |\n      Write a short article about {state.topic}.\n    outputs: [article]\n"
    new = ("    prompt: |\n      You are an expert writer specializing in {state.topic}.\n\n"
           "      Write an insightful article about {state.topic} that:\n"
           "      - Demonstrates deep understanding\n      - Uses clear, accessible language\n"
           "      - Provides actionable takeaways\n\n      Aim for 200-300 words.\n    outputs: [article]\n")
    assert old in source
    assert path.read_text(encoding="utf-8") == source.replace(old, new)


@pytest.mark.parametrize(
    ("edit", "message", "needle"),
    [
        ({"edges": "  - {from: START, to: writer}\n  - from: writer\n    to: [END, writer]\n"},
         "fork edges (to: a list) are not supported", "to: [END"),
        ({"edges": "  - {from: START, to: writer}\n  - from: writer\n    loop: {condition_field: done}\n"},
         "'loop' edges are not supported", "loop:"),
        ({"edges": "  - {from: START, to: writer}\n  - from: writer\n"
                   "    parallel: {items_field: a, target_node: writer, collect_field: b}\n"},
         "'parallel' edges are not supported", "parallel:"),
        ({"nodes": "  - id: writer\n    prompt: x\n    outputs: [article]\n    output_schema: {type: str}\n"
                   "    tools: [serper_search]\n"}, "tools are not supported", "tools:"),
        ({"nodes": "  - id: writer\n    prompt: x\n    outputs: [article]\n    output_schema: {type: str}\n"
                   "    code: print(1)\n"}, "code nodes are not supported", "code:"),
        ({"nodes": "  - id: writer\n    prompt: x\n    outputs: [article]\n    output_schema: {type: str}\n"
                   "    memory: {enabled: true}\n"}, "memory is not supported", "memory:"),
        ({"nodes": "  - id: writer\n    prompt: |\n      Line one.\n      About {state.topik}.\n"
                   "    outputs: [article]\n    output_schema: {type: str}\n"},
         "{state.topik} names neither an input of the node nor a state field (did you mean 'topic'?)", "{state.topik}"),
        ({"nodes": "  - id: writer\n    prompt: x\n    outputs: [score]\n    output_schema: {type: float}\n",
          "state": "    score: {type: float}\n"}, "'score' is a built-in metric", "outputs: [score]"),
        ({"extra": "  gates:\n    - {name: g, metric: wibble_avg, threshold: 1, action: WARN}\n"},
         "'wibble' is not a metric of this workflow", "wibble_avg"),
    ],
    ids=["fork", "loop", "parallel", "tools", "code", "memory", "unknown-name", "metric-collision", "gate-metric"],
)
def test_unsupported_or_wrong_is_a_located_error(
    pytester: pytest.Pytester, fake_openai: FakeOpenAI, edit: dict[str, str], message: str, needle: str
) -> None:
    assert_located_error(pytester, fake_openai, minimal(fake_openai.base_url, **edit), message, needle)


def test_schema_dialect_gates_and_simple_outputs(pytester: pytest.Pytester, fake_openai: FakeOpenAI) -> None:
    extra = "  gates:\n    gates:\n      - {metric: duration_ms_avg, max: 0.000001}\n      - {metric: total_tokens_avg, max: 100000}\n    on_fail: fail\n"
    pytester.makefile(".yaml", wf=minimal(fake_openai.base_url, extra=extra))
    result = run(pytester, "-rA")
    # 2 variants x 2 runs; the latency gate fails the candidate (baseline) and xfails 'short'; tokens pass
    result.assert_outcomes(passed=6, failed=1, xfailed=1)
    result.stdout.fnmatch_lines(["*baseline: latency_ms.mean = *, required <= 1e-06: violated (FAIL)*"])
    bodies = [r.body for r in fake_openai.completions]
    assert "response_format" not in bodies[0]  # a simple type: plain text fills the one output


def test_disabled_gate_and_notes_are_listed(pytester: pytest.Pytester, fake_openai: FakeOpenAI) -> None:
    extra = "  gates:\n    - {name: spend, metric: cost_usd_avg, threshold: 1, action: FAIL, enabled: false}\n"
    pytester.makefile(".yaml", wf=minimal(fake_openai.base_url, extra=extra) + "webhook: {enabled: true}\n")
    result = run(pytester, "-v")
    result.assert_outcomes(passed=4)
    out = result.stdout.str()
    assert "gate 'spend' is disabled (enabled: false)" in out and "webhook: ignored" in out
    assert "is disabled (enabled: false)" not in run(pytester).stdout.str()  # listed under -v only


def test_detection(pytester: pytest.Pytester, fake_openai: FakeOpenAI) -> None:
    no_ab = minimal(fake_openai.base_url).replace("  ab_test:", "  other:")
    pytester.makefile(".yaml", plain=no_ab)
    broken = 'schema_version: "1.0"\nflow:\n  name: x\nconfig:\n  ab_test:\n    variants: [\n'
    pytester.makefile(".yaml", broken=broken)
    result = run(pytester)
    out = result.stdout.str()
    assert "plain.yaml" not in out  # not an A/B test: skipped without a word
    assert "broken.yaml" in out and "YAML syntax error" in out
    result.assert_outcomes(failed=1)  # the invalid file is one failed item


def test_provider_option_replaces_every_node_provider(pytester: pytest.Pytester, fake_openai: FakeOpenAI) -> None:
    pytester.makefile(".yaml", wf=pointed(EXAMPLE, fake_openai.base_url))
    pytester.makepyfile(stand_in='''
        import json
        from pytest_promptab.providers.base import ProviderResponse

        def respond(request):
            fmt = request.settings.get("response_format", {})
            keys = fmt.get("json_schema", {}).get("schema", {}).get("properties", {})
            return ProviderResponse(text=json.dumps({k: 0.8 if k == "quality_score" else "stand-in" for k in keys}))
    ''')
    result = run(pytester, "--promptab-provider", '{type: python, callable: "stand_in.py:respond"}')
    result.assert_outcomes(passed=35)
    assert not fake_openai.completions


def test_provider_option_bad_spec(pytester: pytest.Pytester, fake_openai: FakeOpenAI) -> None:
    pytester.makefile(".yaml", wf=minimal(fake_openai.base_url))
    result = run(pytester, "--promptab-provider", "[not, a, mapping]")
    assert result.ret != 0
    assert "--promptab-provider must be a mapping" in result.stdout.str()


# -- pure pieces -----------------------------------------------------------

def test_templates_resolve_as_configurable_agents_does() -> None:
    state = {"topic", "meta", "article"}
    assert ca_templates.translate("On {state.topic} by {meta.author}", {}, state) == "On {{ topic }} by {{ meta.author }}"
    # node inputs first, then the state; a bare reference or a template
    assert ca_templates.translate("{t}/{topic}", {"t": "state.article", "topic": "{state.meta}"}, state) == \
        "{{ article }}/{{ meta }}"
    # text the placeholder pattern does not match is left as it is, Jinja syntax included
    kept = "JSON: { x }, {1}, {{ raw }} {% if %}"
    rendered = ca_templates.translate(kept + " {topic}", {}, state)
    from pytest_promptab.workflow.templates import TemplateRenderer

    assert TemplateRenderer().render(rendered, {"topic": "tea"}, where="t") == kept + " tea"
    with pytest.raises(ca_templates.UnknownName, match="did you mean 'topic'"):
        ca_templates.translate("x\n{state.topc}", {}, state)


def test_providers_per_vendor() -> None:
    env = {"GEMINI_API_KEY": "x"}
    google = ca_parts.provider_for({}, env)
    assert google["base_url"].startswith("https://generativelanguage.googleapis.com/")
    assert google["api_key_env"] == "GEMINI_API_KEY" and google["model"] == "gemini-2.5-flash-lite"
    assert ca_parts.provider_for({"provider": "google"}, {})["api_key_env"] == "GOOGLE_API_KEY"
    assert ca_parts.provider_for({"provider": "anthropic", "model": "c"}, {})["api_key_env"] == "ANTHROPIC_API_KEY"
    ollama = ca_parts.provider_for({"provider": "ollama", "api_base": "http://h:1/v1", "max_tokens": 9}, {})
    assert ollama["base_url"] == "http://h:1/v1" and ollama["settings"] == {"max_tokens": 9}


@pytest.mark.parametrize(("name", "mapped"), [
    ("cost_usd_avg", "cost_usd.mean"), ("avg_cost_usd", "cost_usd.mean"), ("duration_ms_avg", "latency_ms.mean"),
    ("total_tokens_avg", "tokens_total.mean"), ("quality_score_p95", "quality_score.p95"),
    ("duration_ms_max", "latency_ms.max"), ("success_rate", "pass_rate"), ("quality_score", "quality_score.mean"),
])
def test_gate_metric_names(name: str, mapped: str) -> None:
    assert ca_parts.gate_metric(name, {"quality_score"}, ()) == mapped


def test_config_overrides_and_promptab_cases(pytester: pytest.Pytester, fake_openai: FakeOpenAI) -> None:
    text = minimal(fake_openai.base_url).replace(
        '      - {name: short, prompt: "Briefly: {state.topic}"}\n',
        '      - {name: short, prompt: "Briefly: {state.topic}", config_overrides: {config.llm.temperature: 0.1}}\n',
    ) + "promptab:\n  cases:\n    - {id: coffee, inputs: {topic: coffee}}\n    - {id: plain}\n"
    pytester.makefile(".yaml", wf=text)
    result = run(pytester)
    result.assert_outcomes(passed=8)  # 2 variants x 2 cases x 2 runs
    prompts = {(b["messages"][-1]["content"], b.get("temperature")) for b in (r.body for r in fake_openai.completions)}
    # a case without the input gets the state's default; the override reaches the variant's requests only
    assert prompts == {("Write about coffee.", None), ("Write about tea.", None),
                       ("Briefly: coffee", 0.1), ("Briefly: tea", 0.1)}


def test_unsupported_config_override_is_located(pytester: pytest.Pytester, fake_openai: FakeOpenAI) -> None:
    text = minimal(fake_openai.base_url).replace(
        '      - {name: short, prompt: "Briefly: {state.topic}"}\n',
        '      - name: short\n        prompt: "Briefly: {state.topic}"\n'
        '        config_overrides:\n          config.execution.timeout: 5\n',
    )
    pytester.makefile(".yaml", wf=text)
    result = run(pytester)
    line = next(i for i, ln in enumerate(text.splitlines(), 1) if "config.execution.timeout" in ln)
    result.stdout.fnmatch_lines([f"*wf.yaml:{line}: config_overrides key 'config.execution.timeout' is not supported*"])

"""Grading of the llm_judge check."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from pytest_promptab.checks.judge import grade, parse_judgement
from pytest_promptab.errors import CheckError, ProviderError
from pytest_promptab.providers.base import ProviderRequest, ProviderResponse
from pytest_promptab.providers.openai import OpenAIProvider
from pytest_promptab.workflow.schema import ProviderConfig, RetryConfig
from tests.fake_openai import FakeOpenAI, error


class ScriptedJudge:
    def __init__(self, answer: str) -> None:
        self.answer = answer
        self.requests: list[ProviderRequest] = []

    def complete(self, request: ProviderRequest) -> ProviderResponse:
        self.requests.append(request)
        return ProviderResponse(self.answer)

    def close(self) -> None:
        pass


@pytest.mark.parametrize(
    ("answer", "score", "reasoning"),
    [
        ('{"score": 0.8, "reasoning": "Polite and short."}', 0.8, "Polite and short."),
        ('{"score": 1, "reasoning": "Perfect."}', 1.0, "Perfect."),
        ('{"score": 0, "reasoning": "Rude."}', 0.0, "Rude."),
        ('{"score": 7, "reasoning": "Mostly."}', 0.7, "Mostly."),
        ('{"score": 10}', 1.0, '{"score": 10}'),
        ('{"score": "8/10", "reason": "Good."}', 0.8, "Good."),
        ('{"Score": 3, "max_score": 5, "Explanation": "Fair."}', 0.6, "Fair."),
        ('{"score": true, "reasoning": "Meets it."}', 1.0, "Meets it."),
        ('```json\n{"score": 0.25, "reasoning": "Too long."}\n```', 0.25, "Too long."),
        ('Here is my grade: {"score": 0.9, "reasoning": "Clear."} Hope this helps!', 0.9, "Clear."),
        ("Score: 8/10. The reply meets 3/4 points of the rubric.", 0.8, None),
        ("I would rate it 4 out of 5.", 0.8, None),
        ("**Rating**: 85%", 0.85, None),
        ("Score: 0.6\nReasoning: partly polite.", 0.6, None),
        ("6", 0.6, None),
    ],
)
def test_parse_judgement(answer: str, score: float, reasoning: str | None) -> None:
    got_score, got_reasoning = parse_judgement(answer)
    assert got_score == pytest.approx(score)
    assert got_reasoning == (reasoning if reasoning is not None else answer.strip())


@pytest.mark.parametrize(
    "answer",
    [
        "The reply is polite but too long.",
        '{"reasoning": "no score given"}',
        "Between 3 and 4, I think.",
        "",
    ],
)
def test_unreadable_answers_raise_check_error_quoting_them(answer: str) -> None:
    with pytest.raises(CheckError) as info:
        parse_judgement(answer)
    assert "the judge's answer has no score" in str(info.value)
    assert json.dumps(answer.strip()) in str(info.value)


@pytest.mark.parametrize("answer", ['{"score": -0.5}', '{"score": 250}', "Score: 12/10"])
def test_out_of_range_scores_raise(answer: str) -> None:
    with pytest.raises(CheckError, match="out of range"):
        parse_judgement(answer)


def test_long_answers_are_quoted_truncated() -> None:
    answer = "blah " * 500
    with pytest.raises(CheckError) as info:
        parse_judgement(answer)
    assert len(str(info.value)) < 600 and '..."' in str(info.value)


def test_grade_sends_rubric_and_output_with_the_request_fields() -> None:
    judge = ScriptedJudge('{"score": 0.75, "reasoning": "Acknowledges the problem."}')
    base = {"model": "judge-model", "settings": {"temperature": 0}, "node_id": "reply", "case_id": "c1", "run": 2, "seed": 5}
    score, reasoning = grade("The reply must apologise.", "Sorry for the trouble!", judge, base)
    assert (score, reasoning) == (0.75, "Acknowledges the problem.")
    [request] = judge.requests
    assert (request.model, request.settings, request.node_id, request.case_id, request.run, request.seed) == (
        "judge-model",
        {"temperature": 0},
        "reply",
        "c1",
        2,
        5,
    )
    assert request.messages[0]["role"] == "system"
    assert "<rubric>\nThe reply must apologise.\n</rubric>" in request.prompt
    assert "<output>\nSorry for the trouble!\n</output>" in request.prompt
    assert '"score"' in request.prompt


def test_grade_with_defaults_and_structured_output() -> None:
    judge = ScriptedJudge("Score: 9/10")
    score, _ = grade("Has a category.", {"category": "billing"}, judge, {})
    assert score == pytest.approx(0.9)
    [request] = judge.requests
    assert request.node_id == "llm_judge" and request.run == 1 and request.model is None
    assert '"category": "billing"' in request.prompt


def test_grade_over_http(fake_openai: FakeOpenAI) -> None:
    def judge_rule(body: dict[str, Any]) -> str:
        prompt = body["messages"][-1]["content"]
        polite = "please" in prompt.split("<output>")[1].lower()
        return json.dumps({"score": 0.9 if polite else 0.2, "reasoning": "polite" if polite else "curt"})

    fake_openai.responder = judge_rule
    config = ProviderConfig(type="openai", model="judge-model", base_url=fake_openai.base_url)
    provider = OpenAIProvider(config, Path("."))
    assert grade("Be polite.", "Please find the fix attached.", provider, {}) == (0.9, "polite")
    assert grade("Be polite.", "Fixed.", provider, {"run": 2}) == (0.2, "curt")
    assert [r.body["model"] for r in fake_openai.completions] == ["judge-model", "judge-model"]
    provider.close()


def test_judge_provider_errors_propagate(fake_openai: FakeOpenAI) -> None:
    fake_openai.queue(error(401, "Invalid key"))
    config = ProviderConfig(type="openai", model="judge-model", base_url=fake_openai.base_url, retry=RetryConfig(max_attempts=1))
    with pytest.raises(ProviderError, match="HTTP 401"):
        grade("Be polite.", "Hi", OpenAIProvider(config, Path(".")), {})

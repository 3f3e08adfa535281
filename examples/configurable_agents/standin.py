"""A STAND-IN for a real LLM, so that the configurable-agents example runs
offline: rules and a seeded random number generator, not a model.

The writer's article follows the prompt's wording (sections when asked for
structure, a few words when asked to be brief); the rater scores an article
by those features, with a little noise. It answers structured-output requests
(``response_format: {type: json_schema}``) with a JSON object of the asked
fields, as an OpenAI-compatible server would.
"""

from __future__ import annotations

import json
import random

from pytest_promptab.providers.base import ProviderRequest, ProviderResponse


def respond(request: ProviderRequest) -> ProviderResponse:
    rng = random.Random(request.seed)
    prompt = request.prompt
    if request.node_id == "quality_check":
        value: object = _rate(prompt, rng)
    else:
        value = _write(prompt.lower(), rng)
    fields = (request.settings.get("response_format") or {}).get("json_schema", {}).get("schema", {}).get("properties")
    text = json.dumps({name: value for name in fields}) if fields else str(value)
    return ProviderResponse(text=text, tokens_in=len(prompt.split()), tokens_out=len(text.split()))


def _write(lower: str, rng: random.Random) -> str:
    if "introduction" in lower:
        return "Introduction: why it matters. Key point one. Key point two. Conclusion: what to do next."
    if "under 50 words" in lower:
        return "It matters."
    return "An article. " * rng.randint(3, 12)


def _rate(prompt: str, rng: random.Random) -> float:
    score = 0.65 + rng.uniform(-0.05, 0.05)
    if "Introduction" in prompt and "Conclusion" in prompt:
        score += 0.2
    if "It matters." in prompt:  # too short to say anything
        score -= 0.2
    return round(score, 3)

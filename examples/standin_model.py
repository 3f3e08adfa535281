"""A STAND-IN for a real LLM, so that the examples run offline and for free.

This is not a language model. It is a few dozen lines of rules and a seeded
random number generator that imitate how a small chat model reacts to prompt
wording: it answers in one word when told to, apologises when told to
acknowledge frustration, rambles when not told to be brief. Its answers
depend on the prompt, so the example A/B tests show real, measurable
differences between variants; they say nothing about any real model.

Deterministic for a given request seed (promptab derives the seed from the
case, the run number and the node, so every variant sees the same draws).
Swap it for a real provider by changing ``provider:`` in the YAML.
"""

from __future__ import annotations

import random
import re

from pytest_promptab.providers.base import ProviderRequest, ProviderResponse

CATEGORY_WORDS = {
    "billing": ("charged", "invoice", "refund", "payment", "price", "bill"),
    "bug": ("crash", "error", "broken", "freezes", "fails", "bug"),
    "feature": ("would be nice", "please add", "feature", "could you add", "wish"),
}


def generate(request: ProviderRequest) -> ProviderResponse:
    rng = random.Random(request.seed)
    prompt = request.prompt
    lower = prompt.lower()
    if "classify" in lower:
        text = _classify(lower, rng)
    elif "reply" in lower or "answer this" in lower:
        text = _reply(lower, rng)
    elif "summar" in lower:
        text = _summarize(prompt, lower, rng)
    else:
        text = "I am a stand-in model and do not know how to answer that."
    tokens_in = _tokens(" ".join(m["content"] for m in request.messages))
    return ProviderResponse(text=text, tokens_in=tokens_in, tokens_out=_tokens(text))


def _tokens(text: str) -> int:
    # about 1.3 tokens per word, as for English text with common tokenizers
    return max(1, round(len(text.split()) * 1.3))


def _classify(lower: str, rng: random.Random) -> str:
    email = lower.split("email:", 1)[-1]
    scores = {cat: sum(email.count(w) for w in words) for cat, words in CATEGORY_WORDS.items()}
    category = max(scores, key=lambda c: scores[c]) if any(scores.values()) else "feature"
    if rng.random() < 0.04:  # a small model gets it wrong now and then
        category = rng.choice([c for c in CATEGORY_WORDS if c != category])
    if "one word" in lower:
        return category
    return f"This email is about {category}. Let me know if you need more details."


def _reply(lower: str, rng: random.Random) -> str:
    empathic = "acknowledge" in lower or "frustration" in lower
    short = "two sentences" in lower or "one sentence" in lower
    brief = short or "brief" in lower
    draw = rng.random()
    parts = []
    # how often the reply comes out polite depends on what the prompt asks for
    polite_rate = 0.97 if empathic else (0.35 if short else 0.72)
    if draw < polite_rate:
        parts.append("I'm sorry for the trouble, and I understand how frustrating this is." if empathic
                     else "Thank you for reaching out, we appreciate your message.")
    if "charged" in lower or "invoice" in lower or "refund" in lower:
        parts.append("We have checked your account and will refund the duplicate charge within five days.")
    elif "crash" in lower or "error" in lower:
        parts.append("Our engineers are looking into the crash and a fix will ship in the next update.")
    else:
        parts.append("We have passed your suggestion on to the product team.")
    if not brief:
        parts.append(
            "In the meantime, please do not hesitate to contact us again if anything else comes up, "
            "our support team is available around the clock and always happy to help with any "
            "question you may have about your account, your subscription or our products."
        )
        if rng.random() < 0.5:
            parts.append("We value you as a customer and look forward to serving you for many years to come.")
    return " ".join(parts)


def _summarize(prompt: str, lower: str, rng: random.Random) -> str:
    text = prompt.split(":", 1)[-1].strip()
    sentences = [s.strip() for s in re.split(r"(?<=[.!?])\s+", text) if s.strip()]
    if "one sentence" in lower:
        keep = sentences[:1]
    else:
        keep = sentences[: max(1, len(sentences) - rng.randint(0, 1))]
    return " ".join(keep)

"""Custom checks for the examples (``type: python`` checks call these)."""

from __future__ import annotations

POLITE_MARKERS = ("sorry", "thank", "appreciate", "understand", "please")


def politeness(output: str) -> float:
    """A score in [0, 1]: how many politeness markers the reply uses (2 or more: 1.0)."""
    text = output.lower()
    found = sum(1 for marker in POLITE_MARKERS if marker in text)
    return min(1.0, found / 2)

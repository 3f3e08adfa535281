"""What one check concluded about one run's output, as plain data."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class CheckResult:
    name: str
    type: str
    passed: bool
    score: float
    expected: Any = None
    actual: Any = None
    detail: str | None = None
    scores: dict[str, float] = field(default_factory=dict)
    """Named sub-scores (a ``python`` check returning a dict)."""

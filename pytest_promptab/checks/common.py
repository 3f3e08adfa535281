"""What every check type shares: the :class:`CheckContext` it is given, the
:class:`~pytest_promptab.run.records.CheckResult` it builds, and the small
readings of a check's field and ``value`` (text, numbers, string lists) with
the errors that name the check when a value does not fit.

:mod:`pytest_promptab.checks.registry` is the public place of these names.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import CheckError
from ..workflow.schema import CheckConfig
from .result import CheckResult

SHORT = 200
"""Longest ``expected`` / ``actual`` string kept in a result."""
DETAIL_SHORT = 60
"""Longest value quoted in a ``detail`` sentence."""


@dataclass
class CheckContext:
    actual: Any
    """The checked field's value: text, or any JSON value for ``parse: json`` nodes."""
    value: Any
    """The check's ``value``, already rendered (str, number, list, dict or None)."""
    scope: dict[str, Any]
    """The whole template scope (inputs, node outputs, expected, variant, run)."""
    base_dir: Path
    """The workflow file's folder, for ``callable:`` resolution."""
    judge: Callable[[Any], tuple[float, str]] | None = None
    """For ``llm_judge``: grades an output against the check's rendered rubric
    with the check's provider, returning (score in [0, 1], reasoning)."""


CheckFn = Callable[[CheckConfig, CheckContext], CheckResult]


def name_of(check: CheckConfig) -> str:
    """The check's name as results and messages show it (its type if unnamed)."""
    return check.name or check.type


def shorten(value: Any, limit: int = SHORT) -> Any:
    """Strings longer than ``limit`` are cut, saying how much was left out;
    long JSON values become their shortened JSON text."""
    if isinstance(value, str):
        if len(value) <= limit:
            return value
        return value[:limit] + f"... (+{len(value) - limit} chars)"
    if isinstance(value, (dict, list)):
        text = json.dumps(value, ensure_ascii=False, default=str)
        return value if len(text) <= limit else shorten(text, limit)
    return value


def quote(value: Any) -> str:
    """A value quoted for a detail sentence."""
    if isinstance(value, str):
        return repr(shorten(value, DETAIL_SHORT))
    if isinstance(value, (dict, list)):
        return shorten(json.dumps(value, ensure_ascii=False, default=str), DETAIL_SHORT)
    return repr(value)


def make_result(
    check: CheckConfig,
    passed: bool,
    expected: Any,
    actual: Any,
    detail: str | None,
    *,
    score: float | None = None,
    scores: dict[str, float] | None = None,
) -> CheckResult:
    """The check's result; ``detail`` is kept only when it failed, the score
    is 1/0 unless given."""
    return CheckResult(
        name=name_of(check),
        type=check.type,
        passed=passed,
        score=(1.0 if passed else 0.0) if score is None else score,
        expected=shorten(expected),
        actual=shorten(actual),
        detail=None if passed else detail,
        scores=scores or {},
    )


def text_of(actual: Any) -> str:
    """The text of a field: itself, or the JSON text of a parsed value."""
    if isinstance(actual, str):
        return actual
    return json.dumps(actual, ensure_ascii=False, default=str)


def fold(text: str, check: CheckConfig) -> str:
    """``text`` case-folded unless the check is case sensitive."""
    return text if check.case_sensitive else text.casefold()


def as_number(value: Any) -> float | None:
    """``value`` as a finite number, or None (booleans are not numbers)."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            return None
        return number if math.isfinite(number) else None
    return None


def string_list(check: CheckConfig, value: Any, what: str) -> list[str]:
    """The check's value as a list of strings (one string, a number, or a list)."""
    items = value if isinstance(value, list) else [value]
    out = []
    for item in items:
        if item is None or isinstance(item, (dict, list)):
            raise CheckError(f"check {name_of(check)!r} ({check.type}): 'value' must be {what}, got {item!r}")
        out.append(item if isinstance(item, str) else str(item))
    if not out:
        raise CheckError(f"check {name_of(check)!r} ({check.type}): 'value' is an empty list")
    return out


def limit_of(check: CheckConfig, value: Any) -> float:
    """The check's value as a non-negative number (a count limit)."""
    number = as_number(value)
    if number is None or number < 0:
        raise CheckError(
            f"check {name_of(check)!r} ({check.type}): 'value' must be a non-negative number, got {value!r}"
        )
    return number


def num_text(number: float) -> str:
    """``3.0`` -> ``3``; other numbers as Python writes them."""
    return str(int(number)) if number.is_integer() else str(number)

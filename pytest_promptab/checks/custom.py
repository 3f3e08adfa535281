"""Check types whose verdict comes from outside promptab: ``python`` (a
user's callable scores the output) and ``llm_judge`` (a judge model grades it
against a rubric), SPEC section 5.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from typing import Any

from ..errors import CheckError
from ..workflow.callables import load_callable
from ..workflow.schema import CheckConfig
from .common import DETAIL_SHORT, CheckContext, make_result, name_of, shorten
from .result import CheckResult


def _score_of(result: Any) -> float | None:
    """A callable's bool or number as a score in [0, 1], else None."""
    if hasattr(result, "item") and callable(result.item) and not isinstance(result, (str, bytes)):
        try:
            result = result.item()  # numpy scalars
        except (TypeError, ValueError):
            return None
    if isinstance(result, bool):
        return 1.0 if result else 0.0
    if isinstance(result, (int, float)) and math.isfinite(result) and 0 <= result <= 1:
        return float(result)
    return None


def _arity_two(fn: Callable[..., Any]) -> bool:
    """Whether ``fn`` accepts (output, scope) rather than just (output)."""
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return False
    positional = [
        p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]
    return len(positional) >= 2 or any(p.kind == p.VAR_POSITIONAL for p in params)


def check_python(check: CheckConfig, ctx: CheckContext) -> CheckResult:
    """``callable(output, scope)`` or ``callable(output)``, returning a bool, a
    score in [0, 1] or a dict of named scores (the score is their mean)."""
    name = name_of(check)
    if not check.callable:
        raise CheckError(
            f"check {name!r} (python): no 'callable:' given",
            hint="e.g. callable: checks.py:politeness (a path relative to the YAML file)",
        )
    fn = load_callable(check.callable, ctx.base_dir, what=f"check {name!r} callable")
    try:
        result = fn(ctx.actual, ctx.scope) if _arity_two(fn) else fn(ctx.actual)
    except Exception as exc:
        raise CheckError(
            f"check {name!r}: callable {check.callable} raised {type(exc).__name__}: {exc}"
        ) from exc

    scores: dict[str, float] = {}
    if isinstance(result, dict):
        if not result:
            raise CheckError(f"check {name!r}: callable {check.callable} returned an empty dict")
        for key, item in result.items():
            sub = _score_of(item)
            if sub is None:
                raise CheckError(
                    f"check {name!r}: callable {check.callable} returned {key!r}: {item!r}; "
                    "every score in the dict must be a bool or a number between 0 and 1"
                )
            scores[str(key)] = sub
        score = math.fsum(scores.values()) / len(scores)
    else:
        sub = _score_of(result)
        if sub is None:
            raise CheckError(
                f"check {name!r}: callable {check.callable} returned {shorten(repr(result), DETAIL_SHORT)}; "
                "expected a bool, a number between 0 and 1, or a dict of such scores"
            )
        score = sub
    ok = score >= check.min
    low = ", ".join(f"{k}={v:.2f}" for k, v in scores.items() if v < check.min)
    detail = f"score {score:.2f} < min {check.min:g}" + (f" ({low})" if low else "")
    return make_result(check, ok, f"score >= {check.min:g}", ctx.actual, detail, score=score, scores=scores)


def check_llm_judge(check: CheckConfig, ctx: CheckContext) -> CheckResult:
    if ctx.judge is None:
        raise CheckError(f"check {name_of(check)!r} (llm_judge): no judge provider is available")
    score, reasoning = ctx.judge(ctx.actual)
    result = make_result(check, score >= check.min, f"rubric score >= {check.min:g}", ctx.actual, None, score=score)
    # the judge's reasoning is kept whether it passed or not
    result.detail = f"judge score {score:.2f}: {reasoning}" if reasoning else f"judge score {score:.2f}"
    return result

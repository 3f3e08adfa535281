"""Regression tolerances and metric directions (SPEC 12), plain logic shared by
the file format (``ab_test.regression:``) and ``--promptab-compare-fail``.

A tolerance is a plain number (absolute: pass_rate 0.05 = 5 points) or
``N%`` (relative to the reference's value). A metric's bad direction comes
from its family: higher is better for ``pass_rate``, ``score`` and
``check.*``; lower is better for latency, tokens, cost and ``error_rate``.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

_TOL_RE = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*(%?)\s*$")


@dataclass(frozen=True)
class Tolerance:
    value: float
    relative: bool

    @property
    def label(self) -> str:
        text = f"{self.value:g}"
        return f"{text}%" if self.relative else text

    def allowed(self, reference: float | None) -> float | None:
        """The largest change allowed in the bad direction (None: cannot say,
        a relative tolerance of a reference without a value)."""
        if not self.relative:
            return self.value
        if reference is None:
            return None
        return abs(reference) * self.value / 100


def parse_tolerance(text: object) -> Tolerance:
    """``0.05`` -> absolute, ``"20%"`` -> relative; ValueError otherwise."""
    if isinstance(text, bool):
        raise ValueError(f"tolerance must be a number or 'N%', not {text!r}")
    if isinstance(text, (int, float)):
        value, relative = float(text), False
    else:
        match = _TOL_RE.match(str(text))
        if not match:
            raise ValueError(f"malformed tolerance {text!r}: use a number (0.05, absolute) or a percentage (20%)")
        value, relative = float(match.group(1)), bool(match.group(2))
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"tolerance must be a finite number >= 0, not {text!r}")
    return Tolerance(value, relative)


def base_metric(metric: str) -> str:
    """``latency_ms.p95`` -> ``latency_ms``; ``pass_rate``/``error_rate`` as they are."""
    if metric in ("pass_rate", "error_rate"):
        return metric
    return metric.rpartition(".")[0] or metric


def higher_is_better(metric: str) -> bool | None:
    """True, False, or None when the metric's family has no known direction."""
    base = base_metric(metric)
    if base in ("pass_rate", "score", "passed") or base.startswith("check."):
        return True
    if base in ("error_rate", "cost_usd") or base.startswith("tokens_") or base.endswith("latency_ms"):
        return False
    return None


def parse_compare_fail(spec: str) -> tuple[str, Tolerance]:
    """``pass_rate:0.05`` / ``latency_ms.p95:20%`` (ValueError with the fix)."""
    metric, sep, tol = spec.rpartition(":")
    if not sep or not metric:
        raise ValueError(f"--promptab-compare-fail={spec!r}: expected METRIC:TOLERANCE, e.g. pass_rate:0.05 or latency_ms.p95:20%")
    metric = metric.strip()
    if metric not in ("pass_rate", "error_rate") and "." not in metric:
        metric += ".mean"
    if higher_is_better(metric) is None:
        raise ValueError(
            f"--promptab-compare-fail={spec!r}: {base_metric(metric)!r} has no known direction "
            "(higher is better for pass_rate, score, check.*; lower for latency, tokens, cost, error_rate); "
            "use ab_test.regression with max_drop or max_rise in the file"
        )
    try:
        return metric, parse_tolerance(tol)
    except ValueError as exc:
        raise ValueError(f"--promptab-compare-fail={spec!r}: {exc}") from None

"""Statistics of an A/B test: per-variant aggregates, challenger-vs-baseline
comparisons (confidence intervals, p-values, Holm correction) and the choice
of the winner (SPEC sections 5 and 6).

Pure functions over numbers and :class:`~pytest_promptab.run.records.RunRecord`;
nothing here knows about pytest. Values are sorted before they are summed, so
a serial session and a pytest-xdist session (which deliver runs in another
order) give bit-identical results.

Tests used:
- rates (``pass_rate``): Fisher's exact test, two-sided (the p-value R's
  ``fisher.test`` gives); the interval of the difference is Newcombe's hybrid
  score interval (method 10 of Newcombe 1998), built from Wilson intervals.
  Boschloo's test is more powerful but takes minutes at n=2000 per arm, far
  too slow for a test session; Fisher takes milliseconds at any size.
- continuous metrics: Mann-Whitney U rank test, two-sided, for the p-value
  (robust to the skewed distributions of latency and cost); Welch's t
  interval for the difference of means.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
from scipy import stats as sps

from ..run.records import RunRecord
from ..workflow.schema import ObjectiveConfig
from .summary import Comparison

CONFIDENCE = 0.95
"""Confidence level of every interval promptab reports."""

FISHER = "Fisher exact"
MANN_WHITNEY = "Mann-Whitney U"


# --------------------------------------------------------------------------
# Descriptive statistics


def nearest_rank(values: Sequence[float], p: float) -> float:
    """The ``p``-th percentile by the nearest-rank method: the sorted value at
    index ``ceil(p/100 * n) - 1`` (``p=0`` gives the minimum)."""
    n = len(values)
    if n == 0:
        raise ValueError("nearest_rank() of an empty sequence")
    if not 0 <= p <= 100:
        raise ValueError(f"percentile must be between 0 and 100, got {p}")
    # Exact arithmetic: 0.95 * n in floats can land just above an integer.
    rank = math.ceil(Fraction(str(p)) * n / 100)
    return float(sorted(values)[max(rank, 1) - 1])


def describe(values: Sequence[float]) -> dict[str, float]:
    """``n``, ``mean``, ``std`` (sample, ddof=1; 0.0 for one value), ``min``,
    ``max``, ``p50``, ``p95`` of ``values``; ``{"n": 0}`` when empty.

    ``None`` and NaN values are left out (they are not measurements)."""
    xs = sorted(float(v) for v in values if v is not None and not math.isnan(v))
    n = len(xs)
    if n == 0:
        return {"n": 0}
    mean = math.fsum(xs) / n
    std = math.sqrt(math.fsum((x - mean) ** 2 for x in xs) / (n - 1)) if n > 1 else 0.0
    return {
        "n": n,
        "mean": mean,
        "std": std,
        "min": xs[0],
        "max": xs[-1],
        "p50": nearest_rank(xs, 50),
        "p95": nearest_rank(xs, 95),
    }


def aggregate(runs: Sequence[RunRecord]) -> dict[str, dict[str, float]]:
    """:func:`describe` of every metric found in the runs' ``metrics``, keyed by
    metric name (sorted). Runs that errored do not contribute."""
    collected: dict[str, list[float]] = {}
    for run in runs:
        if run.status == "error":
            continue
        for name, value in run.metrics.items():
            collected.setdefault(name, []).append(value)
    return {name: describe(collected[name]) for name in sorted(collected)}


# --------------------------------------------------------------------------
# Intervals and tests


@dataclass(frozen=True)
class RawComparison:
    """A two-sample comparison: ``value - baseline_value`` with its interval
    and two-sided p-value (``None`` where the data do not allow one)."""

    baseline_value: float | None
    value: float | None
    diff: float | None
    ci_low: float | None
    ci_high: float | None
    p_value: float | None
    test: str
    baseline_n: int
    n: int


def _z(confidence: float) -> float:
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be between 0 and 1, got {confidence}")
    return float(sps.norm.ppf(1 - (1 - confidence) / 2))


def wilson_interval(successes: int, n: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Wilson score interval of the proportion ``successes / n``; ``(0.0, 1.0)``
    when ``n`` is 0 (nothing is known)."""
    if n < 0 or not 0 <= successes <= max(n, 0):
        raise ValueError(f"need 0 <= successes <= n, got {successes}/{n}")
    z = _z(confidence)
    if n == 0:
        return (0.0, 1.0)
    p = successes / n
    z2 = z * z
    denom = 1 + z2 / n
    centre = (p + z2 / (2 * n)) / denom
    half = z / denom * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == n else min(1.0, centre + half)
    return (low, high)


def compare_rates(
    base_successes: int,
    base_n: int,
    successes: int,
    n: int,
    confidence: float = CONFIDENCE,
) -> RawComparison:
    """Compare the rate ``successes/n`` with ``base_successes/base_n``:
    difference (challenger - baseline), Newcombe hybrid score interval, and
    Fisher's exact two-sided p-value. Empty samples give ``None`` values."""
    if base_n == 0 or n == 0:
        return RawComparison(
            baseline_value=base_successes / base_n if base_n else None,
            value=successes / n if n else None,
            diff=None,
            ci_low=None,
            ci_high=None,
            p_value=None,
            test=FISHER,
            baseline_n=base_n,
            n=n,
        )
    p1, p0 = successes / n, base_successes / base_n
    l1, u1 = wilson_interval(successes, n, confidence)
    l0, u0 = wilson_interval(base_successes, base_n, confidence)
    diff = p1 - p0
    # Newcombe (1998), method 10.
    low = diff - math.sqrt((p1 - l1) ** 2 + (u0 - p0) ** 2)
    high = diff + math.sqrt((u1 - p1) ** 2 + (p0 - l0) ** 2)
    table = [[successes, n - successes], [base_successes, base_n - base_successes]]
    p_value = float(sps.fisher_exact(table, alternative="two-sided").pvalue)
    return RawComparison(
        baseline_value=p0,
        value=p1,
        diff=diff,
        ci_low=max(-1.0, low),
        ci_high=min(1.0, high),
        p_value=min(1.0, p_value),
        test=FISHER,
        baseline_n=base_n,
        n=n,
    )


def compare_means(
    base_values: Sequence[float],
    values: Sequence[float],
    confidence: float = CONFIDENCE,
) -> RawComparison:
    """Compare the mean of ``values`` with the mean of ``base_values``:
    difference (challenger - baseline), Welch t interval, and the two-sided
    Mann-Whitney U p-value.

    Degenerate data never raise nor warn: an empty sample gives ``None``
    values; a sample of one gives no interval; two constant samples give a
    zero-width interval, and p=1.0 when they are the same constant."""
    xb = np.sort(np.asarray([v for v in base_values if v is not None], dtype=float))
    xc = np.sort(np.asarray([v for v in values if v is not None], dtype=float))
    xb, xc = xb[~np.isnan(xb)], xc[~np.isnan(xc)]
    nb, nc = len(xb), len(xc)
    mean_b = math.fsum(xb.tolist()) / nb if nb else None
    mean_c = math.fsum(xc.tolist()) / nc if nc else None
    if mean_b is None or mean_c is None:
        return RawComparison(mean_b, mean_c, None, None, None, None, MANN_WHITNEY, nb, nc)
    diff = mean_c - mean_b

    if np.all(xb == xb[0]) and np.all(xc == xb[0]):
        p_value: float = 1.0  # one constant on both sides: no difference at all
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            p_value = float(sps.mannwhitneyu(xc, xb, alternative="two-sided").pvalue)
        if math.isnan(p_value):
            p_value = 1.0

    ci_low: float | None = None
    ci_high: float | None = None
    if nb >= 2 and nc >= 2:
        var_b, var_c = float(np.var(xb, ddof=1)), float(np.var(xc, ddof=1))
        if var_b == 0 and var_c == 0:
            ci_low = ci_high = diff
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                res = sps.ttest_ind(xc, xb, equal_var=False)
                ci = res.confidence_interval(confidence_level=confidence)
            ci_low, ci_high = float(ci.low), float(ci.high)
    return RawComparison(mean_b, mean_c, diff, ci_low, ci_high, min(1.0, p_value), MANN_WHITNEY, nb, nc)


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm step-down adjusted p-values, in the input order: monotone in the
    raw p-values and capped at 1."""
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    adjusted = [0.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


# --------------------------------------------------------------------------
# Variants and the winner


def _metric_values(runs: Sequence[RunRecord], metric: str) -> list[float]:
    return [
        run.metrics[metric]
        for run in runs
        if run.status != "error" and run.metrics.get(metric) is not None
    ]


def _raw(
    base_values: list[float], values: list[float], rates: bool, confidence: float
) -> RawComparison:
    if rates:
        base_ok = sum(1 for v in base_values if v >= 0.5)
        ok = sum(1 for v in values if v >= 0.5)
        return compare_rates(base_ok, len(base_values), ok, len(values), confidence)
    return compare_means(base_values, values, confidence)


def compare_variants(
    baseline_runs: Sequence[RunRecord],
    challenger_runs_by_name: Mapping[str, Sequence[RunRecord]],
    objective: ObjectiveConfig,
    alpha: float,
    confidence: float = CONFIDENCE,
) -> dict[str, Comparison]:
    """Compare every challenger with the baseline on the objective, Holm
    correcting over the challengers that have data. Returns one
    :class:`Comparison` per challenger, in the input order."""
    rates = objective.metric == "pass_rate"
    metric = "pass_rate" if rates else objective.run_metric
    base_values = _metric_values(baseline_runs, objective.run_metric)
    raws = {
        name: _raw(base_values, _metric_values(runs, objective.run_metric), rates, confidence)
        for name, runs in challenger_runs_by_name.items()
    }
    tested = [name for name, raw in raws.items() if raw.p_value is not None]
    adjusted = dict(zip(tested, holm([raws[name].p_value for name in tested])))  # type: ignore[misc]

    result: dict[str, Comparison] = {}
    for name, raw in raws.items():
        p_adj = adjusted.get(name)
        significant = p_adj is not None and p_adj < alpha
        direction_ok = raw.diff is not None and (raw.diff > 0 if objective.goal == "max" else raw.diff < 0)
        result[name] = Comparison(
            variant=name,
            metric=metric,
            baseline_value=raw.baseline_value,
            value=raw.value,
            diff=raw.diff,
            ci_low=raw.ci_low,
            ci_high=raw.ci_high,
            p_value=raw.p_value,
            p_adjusted=p_adj,
            test=raw.test,
            significant=significant,
            better=significant and direction_ok,
        )
    return result


def format_number(value: float, metric: str, signed: bool = False) -> str:
    """A metric value for a sentence or a table: two decimals for rates and
    scores, three significant digits otherwise."""
    sign = "+" if signed else ""
    if metric in ("pass_rate", "score") or metric.startswith("check."):
        return f"{value:{sign}.2f}"
    if value != 0 and abs(value) < 1000:
        return f"{value:{sign}.3g}"
    return f"{value:{sign}.0f}"


def format_p(p: float) -> str:
    """``p=0.002``, or ``p<0.001``."""
    return "p<0.001" if p < 0.001 else f"p={p:.3f}"


def describe_comparison(c: Comparison, confidence: float = CONFIDENCE) -> str:
    """``empathetic: pass_rate +0.30 (95% CI +0.12..+0.48), p=0.002 (Holm)``."""
    if c.diff is None:
        return f"{c.variant}: {c.metric} not compared (no completed runs)"
    text = f"{c.variant}: {c.metric} {format_number(c.diff, c.metric, signed=True)}"
    if c.ci_low is not None and c.ci_high is not None:
        level = f"{confidence * 100:g}%"
        low = format_number(c.ci_low, c.metric, signed=True)
        high = format_number(c.ci_high, c.metric, signed=True)
        text += f" ({level} CI {low}..{high})"
    if c.p_adjusted is not None:
        text += f", {format_p(c.p_adjusted)} (Holm)"
    return text


def choose_winner(
    baseline: str,
    values: Mapping[str, float | None],
    comparisons: Mapping[str, Comparison],
    eligible: set[str],
    goal: str,
) -> tuple[str, str]:
    """Pick the winner (SPEC 6) and say why in one sentence.

    A challenger wins only when it is ``eligible`` (violates no FAIL or
    BLOCK_DEPLOY gate) and significantly ``better`` than the baseline; among
    several, the best objective value wins, then the lower adjusted p-value,
    then the declaration order (the order of ``comparisons``). Otherwise the
    baseline stays."""
    if goal not in ("max", "min"):
        raise ValueError(f"goal must be 'max' or 'min', got {goal!r}")
    if not comparisons:
        return baseline, "no challengers"
    better = [name for name, c in comparisons.items() if c.better]
    candidates = [name for name in better if name in eligible and values.get(name) is not None]
    if candidates:
        sign = -1.0 if goal == "max" else 1.0
        order = {name: i for i, name in enumerate(comparisons)}

        def rank(name: str) -> tuple[float, float, int]:
            p_adj = comparisons[name].p_adjusted
            return (sign * float(values[name]), 1.0 if p_adj is None else p_adj, order[name])  # type: ignore[arg-type]

        winner = min(candidates, key=rank)
        return winner, describe_comparison(comparisons[winner])
    if better:
        names = ", ".join(better)
        what = "is significantly better but violates" if len(better) == 1 else "are significantly better but violate"
        return baseline, f"no challenger passed the gates: {names} {what} a FAIL or BLOCK_DEPLOY gate"
    compared = [c for c in comparisons.values() if c.p_adjusted is not None]
    if not compared:
        return baseline, "no significant winner: no challenger could be compared (no completed runs)"
    closest = min(compared, key=lambda c: (c.p_adjusted, list(comparisons).index(c.variant)))
    return baseline, f"no significant winner (closest: {describe_comparison(closest)})"

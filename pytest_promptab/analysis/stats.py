"""Statistics of an A/B test: per-variant aggregates, challenger-vs-baseline
comparisons (confidence intervals, p-values, Holm correction) and the choice
of the winner (SPEC sections 5 and 6).

Pure functions over numbers and :class:`~pytest_promptab.run.records.RunRecord`;
nothing here knows about pytest. Values are sorted before they are summed, so
a serial session and a pytest-xdist session (which deliver runs in another
order) give bit-identical results.

The case is the unit of evidence (SPEC 6): per variant and case, the
run-mean of every metric (:func:`case_means`); a variant's pass rate is the
mean over its cases, with a case-level interval (:func:`pass_rate_interval`);
a challenger is compared with the baseline through the paired per-case
differences by an exact sign-flip permutation test (:mod:`.paired`), Holm
corrected over the challengers, each interval inverted at its Holm level.
With a single case the runs are the unit, paired by run number.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from fractions import Fraction

from ..run.records import RunRecord
from ..workflow.schema import ObjectiveConfig
from . import paired
from .quantiles import norm_ppf, t_ppf
from .summary import Comparison, VariantSummary

CONFIDENCE = 0.95
"""Confidence level of every interval promptab reports."""



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
    ``max``, ``p50``, ``p95``, ``p99`` of ``values``; ``{"n": 0}`` when empty.

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
        "p99": nearest_rank(xs, 99),
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


def _z(confidence: float) -> float:
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be between 0 and 1, got {confidence}")
    return norm_ppf(1 - (1 - confidence) / 2)


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


def case_means(runs: Sequence[RunRecord], metric: str) -> dict[str, float]:
    """Per case, the mean of ``metric`` over the case's completed runs
    (cases whose runs all errored, or lack the metric, are left out)."""
    values: dict[str, list[float]] = {}
    for run in runs:
        value = run.metrics.get(metric) if run.status != "error" else None
        if value is not None and not math.isnan(value):
            values.setdefault(run.case, []).append(float(value))
    return {case: math.fsum(sorted(xs)) / len(xs) for case, xs in sorted(values.items())}


def mean_of_cases(runs: Sequence[RunRecord], metric: str) -> float | None:
    """The mean over cases of the case means: every case weighs the same."""
    means = case_means(runs, metric)
    return math.fsum(sorted(means.values())) / len(means) if means else None


def t_interval(values: Sequence[float], confidence: float = CONFIDENCE) -> tuple[float, float] | None:
    """Student's t interval of the mean of ``values``; ``None`` for fewer than two."""
    xs = sorted(float(v) for v in values)
    n = len(xs)
    if n < 2:
        return None
    mean = math.fsum(xs) / n
    sd = math.sqrt(math.fsum((x - mean) ** 2 for x in xs) / (n - 1))
    half = t_ppf(1 - (1 - confidence) / 2, n - 1) * sd / math.sqrt(n)
    return (mean - half, mean + half)


def pass_rate_interval(runs: Sequence[RunRecord], confidence: float = CONFIDENCE) -> tuple[float, float] | None:
    """The case-level interval of the pass rate (mean over cases of the case
    pass rates): with several cases, the t interval over the case pass rates,
    widened to hold the Wilson interval of the pooled runs (a floor: it
    stops a zero-width interval when every case has the same rate); with a
    single case, the Wilson interval of its runs. Clipped to [0, 1]."""
    completed = [r for r in runs if r.status != "error" and r.metrics.get("passed") is not None]
    if not completed:
        return None
    passed = sum(1 for r in completed if r.metrics["passed"] >= 0.5)
    wilson = wilson_interval(passed, len(completed), confidence)
    means = case_means(completed, "passed")
    if len(means) < 2:
        return wilson
    t = t_interval(list(means.values()), confidence)
    assert t is not None
    return (max(0.0, min(t[0], wilson[0])), min(1.0, max(t[1], wilson[1])))


def mean_interval(runs: Sequence[RunRecord], metric: str, confidence: float = CONFIDENCE) -> tuple[float, float] | None:
    """The case-level interval of ``metric``'s mean: the t interval over the
    case means, or over the runs when there is a single case."""
    means = case_means(runs, metric)
    if len(means) >= 2:
        return t_interval(list(means.values()), confidence)
    return t_interval([r.metrics[metric] for r in runs if r.status != "error" and r.metrics.get(metric) is not None], confidence)


def variant_interval(variant: VariantSummary, metric: str, confidence: float) -> tuple[float, float] | None:
    """The case-level interval of a variant's ``pass_rate`` or ``<metric>.mean``
    at ``confidence``, from its summary (what a gate with ``confidence:``
    judges): the same rules as :func:`pass_rate_interval` and :func:`mean_interval`."""
    if metric == "pass_rate":
        n = variant.completed_runs
        if n <= 0:
            return None
        wilson = wilson_interval(min(variant.passed_runs, n), n, confidence)
        rates = [m["passed"] for m in variant.case_means.values() if "passed" in m]
        if len(rates) < 2:
            return wilson
        t = t_interval(rates, confidence)
        assert t is not None
        return (max(0.0, min(t[0], wilson[0])), min(1.0, max(t[1], wilson[1])))
    base = metric[: -len(".mean")] if metric.endswith(".mean") else metric
    means = [m[base] for m in variant.case_means.values() if base in m]
    if len(means) >= 2:
        return t_interval(means, confidence)
    agg = variant.aggregates.get(base, {})
    n, mean, sd = int(agg.get("n", 0)), agg.get("mean"), agg.get("std")
    if n < 2 or mean is None or sd is None:
        return None
    half = t_ppf(1 - (1 - confidence) / 2, n - 1) * sd / math.sqrt(n)
    return (mean - half, mean + half)


_BOUNDED = ("passed", "score")


def _paired_diffs(base: Sequence[RunRecord], runs: Sequence[RunRecord], metric: str) -> tuple[list[float], str]:
    """The paired differences (challenger - baseline) and their unit:
    per case of the run-means, or per run number when there is one case."""
    cases = {r.case for r in [*base, *runs] if r.status != "error"}
    if len(cases) <= 1:
        def by_run(rs: Sequence[RunRecord]) -> dict[int, float]:
            return {r.run: float(r.metrics[metric]) for r in rs if r.status != "error" and r.metrics.get(metric) is not None}

        b, c = by_run(base), by_run(runs)
        return [c[i] - b[i] for i in sorted(set(b) & set(c))], "runs"
    b_means, c_means = case_means(base, metric), case_means(runs, metric)
    return [c_means[case] - b_means[case] for case in sorted(set(b_means) & set(c_means))], "cases"


def compare_variants(
    baseline_runs: Sequence[RunRecord],
    challenger_runs_by_name: Mapping[str, Sequence[RunRecord]],
    objective: ObjectiveConfig,
    alpha: float,
) -> dict[str, Comparison]:
    """Compare every challenger with the baseline on the objective through
    the paired differences (see :mod:`.paired`), Holm correcting over the
    challengers that have data, each interval inverted at the level Holm
    tested it at. Returns one :class:`Comparison` per challenger, in the
    input order."""
    rates = objective.metric == "pass_rate"
    metric = "pass_rate" if rates else objective.run_metric
    run_metric = objective.run_metric
    base_value = mean_of_cases(baseline_runs, run_metric)
    tests: dict[str, tuple[paired.PairedResult, paired.SignFlip]] = {}
    for name, runs in challenger_runs_by_name.items():
        diffs, unit = _paired_diffs(baseline_runs, runs, run_metric)
        if diffs:
            tests[name] = paired.paired_test(diffs, unit)
    names = list(tests)
    p_raw = [tests[name][0].p_value for name in names]
    adjusted = dict(zip(names, holm(p_raw)))
    levels = dict(zip(names, paired.holm_levels(p_raw, alpha)))

    result: dict[str, Comparison] = {}
    for name, runs in challenger_runs_by_name.items():
        value = mean_of_cases(runs, run_metric)
        if name not in tests:
            result[name] = Comparison(
                variant=name, metric=metric, baseline_value=base_value, value=value, diff=None, ci_low=None,
                ci_high=None, p_value=None, p_adjusted=None, test="not compared (no paired completed runs)",
                significant=False, better=False,
            )  # fmt: skip
            continue
        test, flip = tests[name]
        p_adj = adjusted[name]
        significant = p_adj < alpha
        low, high = flip.interval(levels[name])
        if run_metric in _BOUNDED or run_metric.startswith("check."):
            low = -1.0 if low is None else max(-1.0, low)
            high = 1.0 if high is None else min(1.0, high)
        if low is not None and high is not None:
            # the interval agrees with the adjusted decision, also at the edges of float precision
            if not significant:
                low, high = min(low, 0.0), max(high, 0.0)
            elif low <= 0.0 <= high:
                low, high = (0.0, high) if test.diff > 0 else (low, 0.0)
        direction_ok = test.diff > 0 if objective.goal == "max" else test.diff < 0
        result[name] = Comparison(
            variant=name,
            metric=metric,
            baseline_value=base_value,
            value=value,
            diff=test.diff,
            ci_low=low,
            ci_high=high,
            p_value=test.p_value,
            p_adjusted=p_adj,
            test=paired.method_name(test),
            significant=significant,
            better=significant and direction_ok,
            ci_level=1 - levels[name],
            unit=test.unit,
            units=test.units,
            sd=test.sd,
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


def describe_comparison(c: Comparison) -> str:
    """``empathetic: pass_rate +0.30 (97.5% CI +0.12..+0.48), p=0.002 (Holm)``:
    the interval at the level Holm tested the challenger at."""
    if c.diff is None:
        return f"{c.variant}: {c.metric} not compared (no completed runs)"
    text = f"{c.variant}: {c.metric} {format_number(c.diff, c.metric, signed=True)}"
    if c.ci_low is not None and c.ci_high is not None:
        level = f"{c.ci_level * 100:.4g}%"
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

"""The HTML report's charts as coordinates (report/html.py builds the page,
the template draws the SVG): pass rates with their intervals, the forest
plot of differences from the baseline, latency and cost box plots; and the
number formats the page shares with them."""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any

from ..analysis.summary import ABTestSummary, VariantSummary

POINTS_PER_PLOT = 200
"""At most this many dots per variant in a latency or cost strip (an even sample)."""

ROW_H = 22
"""Pixels per variant in the charts."""
CHART_W, LABEL_W, VALUE_W = 880, 170, 280


def rate_chart(variants: list[VariantSummary]) -> dict[str, Any]:
    """Pass rate with its interval per variant, on 0..100%."""
    rows = []
    for i, v in enumerate(variants):
        y = 20 + i * ROW_H + ROW_H / 2
        if v.pass_rate is None:
            rows.append({"name": v.name, "y": y, "x": None})
            continue
        lo, hi = v.pass_rate_ci or (v.pass_rate, v.pass_rate)
        rows.append(
            {"name": v.name, "y": y, "x": _sx(v.pass_rate, 0, 1), "lo": _sx(lo, 0, 1), "hi": _sx(hi, 0, 1),
             "label": f"{pct(v.pass_rate)} [{pct(lo)}, {pct(hi)}]", "winner": v.winner}
        )  # fmt: skip
    ticks = [{"x": _sx(t / 100, 0, 1), "label": f"{t}%"} for t in range(0, 101, 20)]
    return {
        "rows": rows,
        "ticks": ticks,
        "height": 40 + len(variants) * ROW_H,
        "width": CHART_W,
        "left": LABEL_W,
        "right": CHART_W - VALUE_W + 12,
    }


def forest_plot(ab: ABTestSummary) -> dict[str, Any] | None:
    """Each challenger's difference from the baseline with its Holm-adjusted interval."""
    comps = [(v, v.comparison) for v in ab.variants if v.comparison is not None and v.comparison.diff is not None]
    if not comps:
        return None
    values = [x for _, c in comps for x in (c.diff, c.ci_low, c.ci_high) if x is not None and math.isfinite(x)]
    span = max([abs(x) for x in values] + [1e-9]) * 1.1
    rows = []
    for i, (v, c) in enumerate(comps):
        assert c.diff is not None
        lo = c.ci_low if c.ci_low is not None else c.diff
        hi = c.ci_high if c.ci_high is not None else c.diff
        rows.append(
            {"name": v.name, "y": 20 + i * ROW_H + ROW_H / 2, "x": _sx(c.diff, -span, span),
             "lo": _sx(lo, -span, span), "hi": _sx(hi, -span, span), "better": c.better,
             "worse": c.significant and not c.better,
             "label": f"{signed(c.diff, ab.objective)} [{signed(lo, ab.objective)}, {signed(hi, ab.objective)}] "
                      f"{c.ci_level * 100:.4g}%"}
        )  # fmt: skip
    ticks = [{"x": _sx(t, -span, span), "label": signed(t, ab.objective)} for t in (-span / 1.1, 0.0, span / 1.1)]
    return {"rows": rows, "ticks": ticks, "zero": _sx(0.0, -span, span), "height": 40 + len(rows) * ROW_H,
            "width": CHART_W, "left": LABEL_W, "right": CHART_W - VALUE_W + 12,
            "baseline": ab.baseline, "objective": ab.objective}  # fmt: skip


def strip_plot(ab: ABTestSummary, metric: str, unit: str) -> dict[str, Any] | None:
    """Per variant: a box (quartiles, median, whiskers at min and max) and an even sample of runs as dots."""
    per: dict[str, list[float]] = defaultdict(list)
    for r in ab.runs:
        value = r.metrics.get(metric)
        if r.status != "error" and value is not None and math.isfinite(value):
            per[r.variant].append(value)
    if not per:
        return None
    highest = max(max(vs) for vs in per.values())
    # the axis ends a little past the largest p95: one slow first run must not squash every box
    top = min(highest, 1.25 * max(_quantile(sorted(vs), 0.95) for vs in per.values())) or highest or 1.0
    rows = []
    for i, v in enumerate(ab.variants):
        values = sorted(per.get(v.name, []))
        y = 20 + i * ROW_H + ROW_H / 2
        if not values:
            rows.append({"name": v.name, "y": y, "box": None, "dots": []})
            continue
        step = max(1, math.ceil(len(values) / POINTS_PER_PLOT))
        q1, med, q3 = (_quantile(values, q) for q in (0.25, 0.5, 0.75))
        rows.append({
            "name": v.name, "y": y,
            "box": {"min": _sx(values[0], 0, top), "q1": _sx(q1, 0, top), "med": _sx(med, 0, top),
                    "q3": _sx(q3, 0, top), "max": _sx(values[-1], 0, top)},
            "dots": [_sx(x, 0, top) for x in values[::step]],
            "label": f"median {_num(med)}, p95 {_num(_quantile(values, 0.95))}"
                     + (f", max {_num(values[-1])}" if values[-1] > top else ""),
        })  # fmt: skip
    ticks = [{"x": _sx(top * t / 4, 0, top), "label": _num(top * t / 4)} for t in range(5)]
    return {"rows": rows, "ticks": ticks, "height": 40 + len(rows) * ROW_H, "width": CHART_W, "left": LABEL_W, "right": CHART_W - VALUE_W + 12,
            "unit": unit, "metric": metric, "clipped": highest > top, "top": _num(top)}  # fmt: skip


def _sx(value: float, low: float, high: float) -> float:
    """x in the plot area (LABEL_W .. CHART_W - 10) of ``value`` on ``low..high``, clamped."""
    share = (value - low) / (high - low) if high > low else 0.5
    share = min(1.0, max(0.0, share))
    return round(LABEL_W + share * (CHART_W - LABEL_W - VALUE_W), 1)


def _quantile(values: list[float], q: float) -> float:
    pos = q * (len(values) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (pos - lo)


def pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.0f}%"


def signed(value: float | None, metric: str) -> str:
    if value is None:
        return "-"
    if metric == "pass_rate":
        return f"{value * 100:+.0f}pp"
    return f"{value:+.3g}"




def _num(value: float) -> str:
    return f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"

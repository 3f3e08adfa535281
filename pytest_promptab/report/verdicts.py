"""The lines under an A/B test's table that say what its verdict rests on:
the unit of evidence, a design too small to ever decide, the intervals'
levels, the power line, and the error rate per variant (SPEC 6, 8)."""

from __future__ import annotations

from ..analysis.design import too_few_message
from ..analysis.summary import ABTestSummary


def verdict_lines(summary: ABTestSummary) -> list[str]:
    lines: list[str] = []
    design = summary.design
    metric = summary.objective
    if design is not None:
        if design.unit == "runs":
            lines.append(
                f"unit: one case, so the {design.runs} runs are the unit (paired by run number): "
                "the verdict is about this one input, not about inputs in general"
            )
        else:
            lines.append(
                f"unit: the case ({design.cases} cases x {design.runs} runs; each case's run-mean is one "
                "paired difference, compared by an exact sign-flip test)"
            )
        too_few = too_few_message(design.cases, design.runs, design.challengers, summary.alpha)
        if too_few:
            lines.append(too_few)
        elif design.detectable is not None:
            who = f", Holm over {design.challengers} challengers" if design.challengers > 1 else ""
            lines.append(
                f"power: this design detects a {metric} difference of {_diff(design.detectable, metric)} or more "
                f"with 80% power at alpha {summary.alpha:g}{who} (spread of the paired differences: "
                f"sd {_diff(design.sd or 0.0, metric, signed=False)})"
            )
        elif design.challengers:
            lines.append("power: not estimated (no spread observed between paired differences)")
    levels = [
        (v.name, v.comparison.ci_level) for v in summary.variants if v.comparison is not None and v.comparison.diff is not None
    ]
    if levels and any(abs(level - 0.95) > 1e-9 for _, level in levels):
        shown = ", ".join(f"{name} {level * 100:.4g}%" for name, level in levels)
        lines.append(
            f"diff intervals: {shown} (each at the level Holm tested it at: it excludes 0 exactly when significant)"
        )
    if summary.failed_runs:
        rates = ", ".join(
            f"{v.name} {v.error_rate:.0%} ({v.failed_runs}/{v.runs})" for v in summary.variants if v.error_rate is not None
        )
        over = [v.name for v in summary.variants if v.error_rate is not None and v.error_rate > summary.max_error_rate]
        verdict = (
            f"above max_error_rate {summary.max_error_rate:g}: {', '.join(over)}"
            if over
            else f"within max_error_rate {summary.max_error_rate:g}"
        )
        lines.append(f"error rate (FAILED runs, left out of the statistics): {rates}; {verdict}")
    return lines


def _diff(value: float, metric: str, signed: bool = True) -> str:
    if metric == "pass_rate":
        return f"{'±' if signed else ''}{abs(value) * 100:.0f}pp"
    return f"{'±' if signed else ''}{abs(value):.3g}"

"""The summary table printed after the tests (SPEC section 9), as text lines.

Knows nothing of pytest: :func:`render_abtest` returns the lines, the plugin
writes them to the terminal.
"""

from __future__ import annotations

from tabulate import tabulate

from ..analysis.summary import ABTestSummary, VariantSummary
from .verdicts import verdict_lines

WINNER_MARK = "*"


def render_abtest(summary: ABTestSummary, *, verbose: bool = False) -> list[str]:
    lines = [f"{summary.nodeid}  (workflow {summary.workflow!r}, objective: {summary.objective} {summary.goal})"]
    headers = ["variant", "role", "runs", "pass rate [95% CI]", f"diff {summary.objective} [CI]", "p (Holm)",
               "score", "latency p50/p95 ms", "tokens", "cost $", "gates"]
    rows = [_row(summary, v) for v in summary.variants]
    lines += tabulate(rows, headers=headers, tablefmt="simple", disable_numparse=True).splitlines()
    if summary.has_significant_winner:
        lines.append(f"winner: {summary.winner} ({WINNER_MARK}): {summary.winner_reason}")
    else:
        reason = summary.winner_reason or "the baseline stays"
        lines.append(reason if reason.startswith("no significant winner") else f"no significant winner: {reason}")
    if not summary.complete:
        lines.append("note: not every run of this A/B test ran (deselected or stopped early)")
    lines += verdict_lines(summary)
    violated = [g for g in summary.gates if not g.met]
    if violated:
        lines.append("gates violated:")
        for judgement in violated:
            lines.append(f"  [{judgement.action}] {judgement.message}")
    if verbose:
        lines += _check_table(summary)
    if summary.apply_decision:
        lines.append(f"apply-best: {summary.apply_decision}")
    return lines


def _row(summary: ABTestSummary, v: VariantSummary) -> list[str]:
    name = f"{v.name} {WINNER_MARK}" if v.winner else v.name
    runs = f"{v.runs}" + (f" ({v.failed_runs} failed)" if v.failed_runs else "")
    if v.pass_rate is None:
        rate = "-"
    else:
        lo, hi = v.pass_rate_ci or (0.0, 1.0)
        rate = f"{v.pass_rate:.0%} [{lo:.0%}, {hi:.0%}]"
    c = v.comparison
    if v.role == "baseline":
        diff, p = "(baseline)", ""
    elif c is None or c.diff is None:
        diff, p = "-", "-"
    else:
        diff = f"{_signed(c.diff, summary.objective)} [{_signed(c.ci_low, summary.objective)}, {_signed(c.ci_high, summary.objective)}]"
        p = _p(c.p_adjusted) + (" sig" if c.better else "")
    agg = v.aggregates
    score = _stat(agg, "score", "mean", "{:.2f}")
    latency = f"{_stat(agg, 'latency_ms', 'p50', '{:.0f}')}/{_stat(agg, 'latency_ms', 'p95', '{:.0f}')}"
    tokens = _stat(agg, "tokens_total", "mean", "{:.0f}")
    cost = _stat(agg, "cost_usd", "mean", "{:.5f}")
    judged = [g for g in summary.gates if g.variant == v.name]
    if not judged:
        gates = "-"
    else:
        bad = [g for g in judged if not g.met]
        gates = f"{len(judged) - len(bad)}/{len(judged)} ok" + (
            "; " + ", ".join(f"{g.outcome.upper()} {g.gate}" for g in bad) if bad else ""
        )
    return [name, v.role, runs, rate, diff, p, score, latency, tokens, cost, gates]


def _check_table(summary: ABTestSummary) -> list[str]:
    """Per variant, the share of completed runs in which each check passed."""
    names: list[str] = []
    passed: dict[tuple[str, str], list[bool]] = {}
    for run in summary.runs:
        for check in run.checks:
            if check.name not in names:
                names.append(check.name)
            passed.setdefault((run.variant, check.name), []).append(check.passed)
    if not names:
        return []
    rows = []
    for v in summary.variants:
        cells = []
        for name in names:
            results = passed.get((v.name, name), [])
            cells.append(f"{sum(results) / len(results):.0%}" if results else "-")
        rows.append([v.name, *cells])
    table = tabulate(rows, headers=["check pass rate", *names], tablefmt="simple", disable_numparse=True)
    return table.splitlines()


def _stat(agg: dict[str, dict[str, float]], metric: str, stat: str, fmt: str) -> str:
    value = agg.get(metric, {}).get(stat)
    return "-" if value is None else fmt.format(value)


def _signed(value: float | None, metric: str) -> str:
    if value is None:
        return "?"
    if metric == "pass_rate":
        return f"{value * 100:+.0f}pp"
    return f"{value:+.3g}"


def _p(value: float | None) -> str:
    if value is None:
        return "-"
    return "<0.001" if value < 0.001 else f"{value:.3f}"

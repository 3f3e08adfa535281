"""The summary table printed after the tests (SPEC section 9), as text lines.

Knows nothing of pytest: :func:`render_abtest` returns the lines, the plugin
writes them to the terminal. The table fits the terminal width it is given:

- everything on one table when it fits (120 columns and more, as a rule);
- otherwise the core columns (priority 0) in a first table, in their narrow
  form, and the other columns in a second table below, in priority order as
  many as fit; the rest are dropped with a hint (``-v`` shows every column,
  in as many tables as it takes).

To add a column, add a :class:`Column` to :data:`COLUMNS`: its place in the
list is its place in the table, its ``priority`` decides what goes first when
the terminal is narrow.
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from tabulate import tabulate

from ..analysis.summary import ABTestSummary, VariantSummary
from .verdicts import verdict_lines

WINNER_MARK = "*"

Cell = Callable[[ABTestSummary, VariantSummary], str]


@dataclass(frozen=True)
class Column:
    """One column of the variant table."""

    key: str
    header: str | Callable[[ABTestSummary], str]
    """One-line header (or a function of the A/B test giving it)."""
    cell: Cell
    priority: int
    """0: a core column, always in the first table; higher numbers are left
    out first when the terminal is narrow."""
    narrow_header: str | Callable[[ABTestSummary], str] | None = None
    """The header when the table must be narrow (a line break makes it two lines)."""
    narrow_cell: Cell | None = None
    """The cell when the table must be narrow (shorter; the lines below the
    table hold the details)."""

    def head(self, summary: ABTestSummary, narrow: bool) -> str:
        text = self.narrow_header if narrow and self.narrow_header is not None else self.header
        return text if isinstance(text, str) else text(summary)

    def value(self, summary: ABTestSummary, v: VariantSummary, narrow: bool) -> str:
        render = self.narrow_cell if narrow and self.narrow_cell is not None else self.cell
        return render(summary, v)


def _variant(summary: ABTestSummary, v: VariantSummary) -> str:
    return f"{v.name} {WINNER_MARK}" if v.winner else v.name


def _runs(summary: ABTestSummary, v: VariantSummary) -> str:
    return f"{v.runs}" + (f" ({v.failed_runs} failed)" if v.failed_runs else "")


def _rate(summary: ABTestSummary, v: VariantSummary) -> str:
    if v.pass_rate is None:
        return "-"
    lo, hi = v.pass_rate_ci or (0.0, 1.0)
    return f"{v.pass_rate:.0%} [{lo:.0%}, {hi:.0%}]"


def _diff(summary: ABTestSummary, v: VariantSummary, *, unit: str = "pp") -> str:
    c = v.comparison
    if v.role == "baseline":
        return "(baseline)"
    if c is None or c.diff is None:
        return "-"
    m = summary.objective
    return f"{_signed(c.diff, m, unit=unit)} [{_signed(c.ci_low, m, unit=unit)}, {_signed(c.ci_high, m, unit=unit)}]"


def _diff_header(summary: ABTestSummary) -> str:
    # narrow: the unit once in the header, "+23 [+7, +41]" in the cells
    return "diff pass_rate\npp [CI]" if summary.objective == "pass_rate" else f"diff {summary.objective}\n[CI]"


def _p_cell(summary: ABTestSummary, v: VariantSummary) -> str:
    c = v.comparison
    if v.role == "baseline":
        return ""
    if c is None or c.diff is None:
        return "-"
    return p_text(c.p_adjusted) + (" sig" if c.better else "")


def _gates(summary: ABTestSummary, v: VariantSummary, *, detail: bool = True) -> str:
    judged = [g for g in summary.gates if g.variant == v.name]
    if not judged:
        return "-"
    bad = [g for g in judged if not g.met]
    text = f"{len(judged) - len(bad)}/{len(judged)} ok"
    if bad and detail:
        text += "; " + ", ".join(f"{g.outcome.upper()} {g.gate}" for g in bad)
    return text


def _stat_cell(metric: str, stat: str, fmt: str) -> Cell:
    return lambda summary, v: _stat(v.aggregates, metric, stat, fmt)


def _latency(summary: ABTestSummary, v: VariantSummary) -> str:
    agg = v.aggregates
    return f"{_stat(agg, 'latency_ms', 'p50', '{:.0f}')}/{_stat(agg, 'latency_ms', 'p95', '{:.0f}')}"


COLUMNS: list[Column] = [
    Column("variant", "variant", _variant, 0),
    Column("role", "role", lambda s, v: v.role, 0),
    Column("runs", "runs", _runs, 0),
    Column("pass_rate", "pass rate [95% CI]", _rate, 0, narrow_header="pass rate\n[95% CI]"),
    Column("diff", lambda s: f"diff {s.objective} [CI]", _diff, 0, narrow_header=_diff_header,
           narrow_cell=lambda s, v: _diff(s, v, unit="")),
    Column("p", "p (Holm)", _p_cell, 0),
    Column("score", "score", _stat_cell("score", "mean", "{:.2f}"), 2),
    Column("latency", "latency p50/p95 ms", _latency, 1, narrow_header="latency ms\np50/p95"),
    Column("tokens", "tokens", _stat_cell("tokens_total", "mean", "{:.0f}"), 1),
    Column("cost", "cost $", _stat_cell("cost_usd", "mean", "{:.5f}"), 1),
    Column("gates", "gates", _gates, 1, narrow_cell=lambda s, v: _gates(s, v, detail=False)),
]
"""The variant table's columns, in table order. The first is the row's key,
repeated at the left of every further table when the table is split."""


def render_abtest(summary: ABTestSummary, *, verbose: bool = False, width: int | None = None) -> list[str]:
    """The A/B test's table and the lines below it, no line wider than
    ``width`` where that can be helped (``None``: no limit)."""
    about = f"workflow {summary.workflow!r}, objective: {summary.objective} {summary.goal}"
    title = f"{summary.nodeid}  ({about})"
    lines = [title] if width is None or len(title) <= width else [summary.nodeid, *_wrap(f"  {about}", width)]
    lines += variant_tables(summary, COLUMNS, width=width, verbose=verbose)
    if summary.has_significant_winner:
        lines += _wrap(f"winner: {summary.winner} ({WINNER_MARK}): {summary.winner_reason}", width)
    else:
        reason = summary.winner_reason or "the baseline stays"
        lines += _wrap(reason if reason.startswith("no significant winner") else f"no significant winner: {reason}",
                       width)
    if not summary.complete:
        lines += _wrap("note: not every run of this A/B test ran (deselected or stopped early)", width)
    for line in verdict_lines(summary):
        lines += _wrap(line, width)
    if summary.vs_reference is not None:
        from ..analysis.regression import vs_reference_lines

        for line in vs_reference_lines(summary.vs_reference):
            lines += _wrap(line, width, indent="    ")
    elif summary.compare_note:
        lines += _wrap(f"vs reference: {summary.compare_note}", width)
    violated = [g for g in summary.gates if not g.met]
    if violated:
        lines.append("gates violated:")
        for judgement in violated:
            lines += _wrap(f"  [{judgement.action}] {judgement.message}", width, indent="    ")
    if verbose:
        lines += _check_table(summary, width)
    if summary.apply_decision:  # one line, whatever the width: what CI logs are searched for
        lines.append(f"apply-best: {summary.apply_decision}")
    return lines


def variant_tables(
    summary: ABTestSummary, columns: Sequence[Column], *, width: int | None, verbose: bool = False
) -> list[str]:
    """One table of every column when it fits ``width``; else the core
    columns, then the others as they fit (all of them with ``verbose``)."""
    full = _table(summary, columns, narrow=False)
    if width is None or _widest(full) <= width:
        return full
    narrow = _table(summary, columns, narrow=True)
    if _widest(narrow) <= width:
        return narrow
    core = [c for c in columns if c.priority == 0]
    wide_core = _table(summary, core, narrow=False)
    lines = wide_core if _widest(wide_core) <= width else _table(summary, core, narrow=True)
    key = columns[0]
    rest = sorted((c for c in columns if c.priority > 0), key=lambda c: c.priority)  # stable: table order in a tie
    dropped: list[Column] = []
    while rest:
        group: list[Column] = []
        for column in rest:
            if not verbose and _widest(_table(summary, [key, column], narrow=True)) > width:
                continue  # too wide even alone: dropped
            if not group or _widest(_table(summary, _in_order(columns, [key, *group, column]), narrow=True)) <= width:
                group.append(column)
        if group:
            lines += [""] + _table(summary, _in_order(columns, [key, *group]), narrow=True)
        rest = [c for c in rest if c not in group]
        if not verbose:
            dropped = rest
            break
    if dropped:
        names = ", ".join(c.head(summary, narrow=False) for c in _in_order(columns, dropped))
        lines += _wrap(f"(not shown at {width} columns: {names}; -v shows every column)", width)
    return lines


def _in_order(columns: Sequence[Column], chosen: Sequence[Column]) -> list[Column]:
    return [c for c in columns if c in chosen]


def _table(summary: ABTestSummary, columns: Sequence[Column], *, narrow: bool) -> list[str]:
    """tabulate's "simple" look, without its two spaces of padding around
    headers (a header as wide as its column is as readable, and narrower)."""
    heads = [c.head(summary, narrow).split("\n") for c in columns]
    height = max(len(h) for h in heads)
    head_rows = [[h[i] if i < len(h) else "" for h in heads] for i in range(height)]
    rows = [[c.value(summary, v, narrow) for c in columns] for v in summary.variants]
    widths = [max(len(row[i]) for row in head_rows + rows) for i in range(len(columns))]
    rule = ["-" * w for w in widths]
    text = tabulate(head_rows + [rule] + rows, tablefmt="plain", disable_numparse=True)
    return [line.rstrip() for line in str(text).splitlines()]


def _widest(lines: Sequence[str]) -> int:
    return max((len(line) for line in lines), default=0)


def _wrap(text: str, width: int | None, *, indent: str = "  ") -> list[str]:
    """``text`` as lines of at most ``width`` characters (a word longer than
    that, such as a node id, stays whole)."""
    if width is None or len(text) <= width:
        return [text]
    return textwrap.wrap(text, width=width, subsequent_indent=indent, break_long_words=False, break_on_hyphens=False)


def _check_table(summary: ABTestSummary, width: int | None = None) -> list[str]:
    """Per variant, the share of completed runs in which each check passed;
    split into several tables of checks when it does not fit ``width``."""
    names: list[str] = []
    passed: dict[tuple[str, str], list[bool]] = {}
    for run in summary.runs:
        for check in run.checks:
            if check.name not in names:
                names.append(check.name)
            passed.setdefault((run.variant, check.name), []).append(check.passed)
    if not names:
        return []
    rates: dict[tuple[str, str], str] = {}
    for v in summary.variants:
        for name in names:
            results = passed.get((v.name, name), [])
            rates[v.name, name] = f"{sum(results) / len(results):.0%}" if results else "-"
    columns = [Column("variant", "check pass rate", lambda s, v: v.name, 0)] + [
        Column(name, name, (lambda s, v, name=name: rates[v.name, name]), 1) for name in names  # type: ignore[misc]
    ]
    full = _table(summary, columns, narrow=False)
    if width is None or _widest(full) <= width:
        return full
    lines: list[str] = []
    group: list[Column] = []
    for column in columns[1:]:
        if group and _widest(_table(summary, [columns[0], *group, column], narrow=False)) > width:
            lines += ([""] if lines else []) + _table(summary, [columns[0], *group], narrow=False)
            group = []
        group.append(column)
    lines += ([""] if lines else []) + _table(summary, [columns[0], *group], narrow=False)
    return lines


def _stat(agg: dict[str, dict[str, float]], metric: str, stat: str, fmt: str) -> str:
    value = agg.get(metric, {}).get(stat)
    return "-" if value is None else fmt.format(value)


def _signed(value: float | None, metric: str, *, unit: str = "pp") -> str:
    if value is None:
        return "?"
    if metric == "pass_rate":
        return f"{value * 100:+.0f}{unit}"
    return f"{value:+.3g}"


def p_text(value: float | None) -> str:
    """A p-value as the table and the HTML report show it."""
    if value is None:
        return "-"
    return "<0.001" if value < 0.001 else f"{value:.3f}"

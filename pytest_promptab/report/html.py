"""The HTML report (SPEC 13): one self-contained page for a session, written
by ``--promptab-html PATH`` from the same :class:`SessionSummary` as the table.

Knows nothing of pytest. :func:`page_data` turns the summary into plain view
data (numbers for the SVG charts are computed here, text is left as text);
the Jinja2 template ``templates/report.html.j2`` (package data) lays it out
with autoescaping on: outputs, prompts and check details are untrusted text.
Nothing is fetched from the network: CSS, JS and SVG are inline.

The page stays bounded at thousands of runs: each output is cut at
:data:`OUTPUT_CHARS` characters with a marker, and a cell shows at most
:data:`RUNS_PER_CELL` runs (fewer when the session is large, so the outputs
stay within :data:`OUTPUT_BUDGET`); the page states what was left out.
"""

from __future__ import annotations

import difflib
import json
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from ..analysis.gates import blocks_deploy
from ..analysis.summary import ABTestSummary, SessionSummary, VariantSummary
from ..fileio import atomic_write_text
from ..run.records import RunRecord
from .htmlcharts import forest_plot, pct, rate_chart, signed, strip_plot
from .table import p_text

OUTPUT_CHARS = 1500
"""An output longer than this is cut, with a marker saying how much was left out."""
RUNS_PER_CELL = 5
"""At most this many runs of one variant on one case are shown."""
OUTPUT_BUDGET = 4_000_000
"""Characters of output text on the page, roughly; beyond it fewer runs per cell are shown."""
RUN_MARKUP = 400
"""Characters of markup around one run's outputs, roughly."""
DIFF_LINES = 400


@dataclass
class Options:
    runs_per_cell: int
    output_chars: int = OUTPUT_CHARS


def write_html(path: Path, summary: SessionSummary, title: str = "promptab report") -> Path:
    """Render the report for ``summary`` into ``path`` (created with its folders)."""
    text = render_html(summary, title=title)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, text)
    return path


def render_html(summary: SessionSummary, title: str = "promptab report") -> str:
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("pytest_promptab.report", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    return env.get_template("report.html.j2").render(page_data(summary, title=title))


def _vs_reference(ab: ABTestSummary) -> list[str]:
    """The "vs reference" lines of the table (regressions against a saved
    session, SPEC 12), or the one line saying there was nothing to compare."""
    if ab.vs_reference is not None:
        from ..analysis.regression import vs_reference_lines

        return vs_reference_lines(ab.vs_reference)
    return [f"vs reference: {ab.compare_note}"] if ab.compare_note else []


def page_data(summary: SessionSummary, title: str = "promptab report") -> dict[str, Any]:
    opts = sized(summary)
    return {
        "title": title,
        "generated": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "interrupted": summary.interrupted,
        "mlflow_uri": _mlflow_base(summary.mlflow_uri),
        "mlflow_error": summary.mlflow_error,
        "abtests": [
            abtest_data(ab, opts, summary.mlflow_uri, index=i, interrupted=summary.interrupted)
            for i, ab in enumerate(summary.abtests)
        ],
        "runs_per_cell": opts.runs_per_cell,
        "max_runs_per_cell": RUNS_PER_CELL,
        "output_chars": opts.output_chars,
    }


def sized(summary: SessionSummary) -> Options:
    """How many runs per cell and how many characters per output the page shows,
    so its output text stays within about :data:`OUTPUT_BUDGET` characters:
    first fewer runs per cell (down to one), then shorter cuts (down to 200)."""
    by_rank = [0] * (RUNS_PER_CELL + 1)  # characters of the runs that are k-th in their cell
    for ab in summary.abtests:
        rank: dict[tuple[str, str], int] = defaultdict(int)
        for r in ab.runs:
            rank[(r.case, r.variant)] += 1
            k = rank[(r.case, r.variant)]
            if k <= RUNS_PER_CELL:
                by_rank[k] += RUN_MARKUP + sum(min(OUTPUT_CHARS, len(_text(v))) for v in r.outputs.values())
    for k in range(RUNS_PER_CELL, 0, -1):
        if sum(by_rank[1 : k + 1]) <= OUTPUT_BUDGET:
            return Options(runs_per_cell=k)
    cut = max(200, int(OUTPUT_CHARS * OUTPUT_BUDGET / by_rank[1]))
    return Options(runs_per_cell=1, output_chars=cut)


def abtest_data(
    ab: ABTestSummary,
    opts: Options,
    mlflow_uri: str | None = None,
    index: int = 0,
    interrupted: bool = False,
) -> dict[str, Any]:
    cases = _cases(ab)
    base = mlflow_uri and _mlflow_base(mlflow_uri)
    return {
        "id": f"ab{index}",
        "baseline": ab.baseline,
        "title": f"{ab.workflow} / {ab.name}",
        "nodeid": ab.nodeid,
        "file": ab.file,
        "verdict": verdict(ab),
        "vs_reference": _vs_reference(ab),
        "blocked": blocks_deploy(ab.gates) and not interrupted,
        "blocked_by": [
            f"{g.gate} ({g.variant})" for g in ab.gates if g.outcome == "failed" and g.action == "BLOCK_DEPLOY"
        ],
        "complete": ab.complete,
        "winner_reason": ab.winner_reason,
        "apply_decision": ab.apply_decision,
        "objective": ab.objective,
        "goal": ab.goal,
        "alpha": ab.alpha,
        "design": ab.design,
        "variants": [_variant_row(ab, v) for v in ab.variants],
        "rate_chart": rate_chart(ab.variants),
        "forest": forest_plot(ab),
        "gates": [g for g in ab.gates],
        "cases": cases,
        "matrix": matrix(ab, cases, opts),
        "diffs": prompt_diffs(ab),
        "latency": strip_plot(ab, "latency_ms", "ms"),
        "cost": strip_plot(ab, "cost_usd", "USD"),
        "mlflow_run_id": ab.mlflow_run_id,
        "mlflow_link": f"{base}/#/runs/{ab.mlflow_run_id}" if base and ab.mlflow_run_id else None,
        "total_runs": len(ab.runs),
    }


def verdict(ab: ABTestSummary) -> str:
    if ab.has_significant_winner:
        v = ab.variant(ab.winner or "")
        c = v.comparison
        tail = ""
        if c is not None and c.diff is not None:
            tail = f" ({signed(c.diff, ab.objective)} {ab.objective} over {ab.baseline}, p={p_text(c.p_adjusted)} Holm)"
        return f"Winner: {v.name}{tail}"
    return f"No significant winner: {ab.baseline} (baseline) stays"


def _variant_row(ab: ABTestSummary, v: VariantSummary) -> dict[str, Any]:
    c = v.comparison
    return {
        "name": v.name,
        "role": v.role,
        "winner": v.winner,
        "model": v.model or "",
        "runs": v.runs,
        "failed": v.failed_runs,
        "rate": pct(v.pass_rate),
        "ci": f"[{pct(v.pass_rate_ci[0])}, {pct(v.pass_rate_ci[1])}]" if v.pass_rate_ci else "",
        "diff": (
            f"{signed(c.diff, ab.objective)} [{signed(c.ci_low, ab.objective)}, {signed(c.ci_high, ab.objective)}]"
            if c is not None and c.diff is not None
            else ""
        ),
        "p": p_text(c.p_adjusted) if c is not None and c.diff is not None else "",
        "better": bool(c and c.better),
        "violated": v.violated,
    }


# --- the matrix and the outputs ---


def _cases(ab: ABTestSummary) -> list[str]:
    seen: dict[str, None] = {}
    for v in ab.variants:
        for case in v.case_runs:
            seen.setdefault(case, None)
    for r in ab.runs:
        seen.setdefault(r.case, None)
    return list(seen)


def matrix(ab: ABTestSummary, cases: list[str], opts: Options) -> list[dict[str, Any]]:
    """One row per case: the pass rate per variant (a cell's colour is its rate)
    and the runs, side by side per variant, that open under it."""
    runs: dict[tuple[str, str], list[RunRecord]] = defaultdict(list)
    for r in ab.runs:
        runs[(r.case, r.variant)].append(r)
    rows = []
    for case in cases:
        cells, columns = [], []
        for v in ab.variants:
            rate = v.case_means.get(case, {}).get("passed")
            mine = sorted(runs.get((case, v.name), []), key=lambda r: r.run)
            cells.append({"rate": pct(rate), "hue": None if rate is None else round(rate * 120),
                          "title": f"{v.name} on {case}: {pct(rate)} of {v.case_runs.get(case, 0)} runs"})  # fmt: skip
            columns.append({"variant": v.name, "shown": [_run(r, opts) for r in mine[: opts.runs_per_cell]],
                            "hidden": max(0, len(mine) - opts.runs_per_cell)})  # fmt: skip
        rows.append({"case": case, "cells": cells, "columns": columns})
    return rows


def _run(r: RunRecord, opts: Options) -> dict[str, Any]:
    outputs = {key: _text(value) for key, value in r.outputs.items()}
    shown = set(outputs.values())
    return {
        "run": r.run,
        "status": r.status,
        "error": r.error,
        "outputs": [(key, _cut(text, opts.output_chars)) for key, text in outputs.items()],
        "failed": [
            {
                "name": c.name,
                "why": _cut(
                    _why(
                        c.detail,
                        c.expected,
                        None if isinstance(c.actual, str) and c.actual in shown else c.actual,
                    ),
                    400,
                ),
            }
            for c in r.checks
            if not c.passed
        ],
        "passed": sum(1 for c in r.checks if c.passed),
    }


def _why(detail: str | None, expected: Any, actual: Any) -> str:
    """The check's own words when it has them, else what it expected and got."""
    if detail:
        return detail
    parts = []
    if expected is not None:
        parts.append(f"expected {_text(expected)}")
    if actual is not None:
        parts.append(f"got {_text(actual)}")
    return "; ".join(parts)


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, indent=1, default=str)


def _cut(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return f"{text[:limit]}\n[… cut: {len(text) - limit:,} more characters]"


def prompt_diffs(ab: ABTestSummary) -> list[dict[str, Any]]:
    """Per challenger and node, the unified diff of its prompt (and system
    message) against the baseline's; empty when nothing differs."""
    try:
        base = ab.variant(ab.baseline)
    except KeyError:
        return []
    out = []
    for v in ab.variants:
        if v.name == ab.baseline:
            continue
        nodes = []
        for kind, theirs, mine in (
            ("prompt", base.prompts, v.prompts),
            ("system", base.system, v.system),
        ):
            for node in sorted(set(theirs) | set(mine)):
                a, b = theirs.get(node, ""), mine.get(node, "")
                if a == b:
                    continue
                lines = list(
                    difflib.unified_diff(
                        a.splitlines(),
                        b.splitlines(),
                        ab.baseline,
                        v.name,
                        lineterm="",
                        n=2,
                    )
                )
                shown = [(_line_kind(line), line) for line in lines[2:DIFF_LINES]]
                if len(lines) > DIFF_LINES:
                    shown.append(("cut", f"[… cut: {len(lines) - DIFF_LINES} more diff lines]"))
                nodes.append({"node": node, "kind": kind, "lines": shown})
        settings = [
            (node, base.settings.get(node), s) for node, s in v.settings.items() if base.settings.get(node) != s
        ]
        out.append({"variant": v.name, "winner": v.winner, "nodes": nodes,
                    "settings": [(n, _text(a), _text(b)) for n, a, b in settings]})  # fmt: skip
    return out


def _line_kind(line: str) -> str:
    return {"+": "add", "-": "del", "@": "hunk"}.get(line[:1], "same")


def _mlflow_base(uri: str | None) -> str | None:
    """The MLflow server's address when it is one a browser can open (http/https), without credentials."""
    if not uri or not uri.startswith(("http://", "https://")):
        return None
    parts = urlsplit(uri)
    return urlunsplit((parts.scheme, parts.hostname + (f":{parts.port}" if parts.port else "") if parts.hostname else "",
                       parts.path.rstrip("/"), "", ""))  # fmt: skip

"""This session against a reference session (SPEC 12): the deploy candidate's
metrics before -> after, tested *within cases*, the cases that got worse or
better, what changed (prompt, settings and model hashes), and the regression
gates' judgements.

The question is about the suite's own cases (did *these* inputs get worse),
so the run-to-run variation inside each case is the noise and the cases are
strata, never the sampling unit:

- pass rate, error rate (a yes/no per run): the Cochran-Mantel-Haenszel test
  over the cases (a 2x2 table per case: before/after x passed/not), and per
  case Fisher's exact test, Holm-corrected over the cases, to name the cases
  that changed;
- a per-run number (``<metric>.<stat>``), when both sessions ran the same
  run numbers of every case: paired on the run number (run k with run k, as
  the seed and the cache key are): per case the differences of the pairs, the
  mean of the case means with a stratified t test from each case's variance
  of its differences (per case the paired t test, Holm-corrected, for the
  list). Otherwise unpaired: the difference of case means, averaged over the
  cases, with a stratified t test from each case's within-case variances (per
  case Welch's t). With a single run per case there is no within-case
  variance: the paired t test over the cases is used (said in ``test``);
- yes/no outcomes are not paired on the run number: McNemar's test uses only
  the discordant pairs and, with the few runs per case of a prompt suite, can
  rarely name a case (6 runs: p >= 0.03 before any correction), where the
  stratified tables above can.
Only the cases both sessions have are compared; the others are listed.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any

from ..workflow.regression_spec import Tolerance, base_metric
from .summary import ABTestSummary, GateJudgement, VariantSummary
from .within_cases import (
    _cmh,
    _fisher,
    _paired_means,
    _paired_t,
    _stat,
    _stratified_means,
    _welch,
    holm_by_key,
)

BINARY = ("pass_rate", "error_rate")


@dataclass
class MetricChange:
    metric: str
    before: float | None
    after: float | None
    diff: float | None
    p_value: float | None
    test: str
    cases: int
    significant: bool = False
    cases_worse: list[dict[str, Any]] = field(default_factory=list)
    cases_better: list[dict[str, Any]] = field(default_factory=list)


def variant_hashes(variant: VariantSummary) -> dict[str, str]:
    """Short sha256 of the variant's prompts (and system messages), settings
    (and provider) and model: what tells a prompt change from drift."""

    def digest(value: Any) -> str:
        return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:16]

    return {
        "prompts": digest([variant.prompts, variant.system]),
        "settings": digest([variant.settings, {k: v for k, v in variant.provider.items() if k != "model"}]),
        "model": digest(variant.model or variant.provider.get("model")),
    }


def accepted(ab: ABTestSummary, candidate: str, interrupted: bool) -> bool:
    """Whether a session is *accepted* as a reference for ``ab``: complete, not
    interrupted, and no failed gate or regression of the deploy candidate."""
    if interrupted or not ab.complete:
        return False
    return not any(j.variant == candidate and j.outcome == "failed" for j in ab.gates)


def keep_out_of_winner(ab: ABTestSummary, regressed: dict[str, list[str]], run_metric: str) -> None:
    """``regressed``: challenger -> the regression gates (FAIL, BLOCK_DEPLOY)
    it failed. Each is marked as violating them, and the winner is chosen
    again among the others, as for a violated gate (SPEC 6, 7)."""
    from .stats import choose_winner
    from .summarize import objective_value

    for variant in ab.variants:
        for label in regressed.get(variant.name, []):
            if label not in variant.violated:
                variant.violated.append(label)
    if ab.winner not in regressed:
        return
    comparisons = {v.name: v.comparison for v in ab.variants if v.comparison is not None}
    eligible = {v.name for v in ab.variants if not v.violated and v.runs - v.failed_runs > 0}
    values = {v.name: objective_value(v, ab.objective, run_metric) for v in ab.variants}
    ab.winner, ab.winner_reason = choose_winner(ab.baseline, values, comparisons, eligible, ab.goal)
    if ab.winner == ab.baseline and ab.winner_reason.startswith("no challenger passed the gates"):
        names = ", ".join(sorted(regressed))
        ab.winner_reason += f" (regressed against the reference: {names})"
    for variant in ab.variants:
        variant.winner = variant.name == ab.winner and ab.has_significant_winner


def _per_case(ab: ABTestSummary, variant: str, metric: str) -> dict[str, list[float]]:
    return {case: list(runs.values()) for case, runs in _per_case_runs(ab, variant, metric).items()}


def _run_numbers(ab: ABTestSummary, variant: str) -> dict[str, set[int]]:
    """Case -> the run numbers ``variant`` ran (every run, errored or not)."""
    out: dict[str, set[int]] = {}
    for r in ab.runs:
        if r.variant == variant:
            out.setdefault(r.case, set()).add(r.run)
    return out


def _pairs(after_ab: ABTestSummary, variant: str, before_ab: ABTestSummary, ref_variant: str, metric: str,
           cases: list[str]) -> dict[str, list[float]] | None:
    """Per case the differences run k (after) - run k (before), when both
    sessions ran the same run numbers of every compared case; else None."""
    after_runs, before_runs = _run_numbers(after_ab, variant), _run_numbers(before_ab, ref_variant)
    if any(after_runs.get(c) != before_runs.get(c) for c in cases):
        return None
    a, b = _per_case_runs(after_ab, variant, metric), _per_case_runs(before_ab, ref_variant, metric)
    return {c: [a[c][k] - b[c][k] for k in sorted(a[c]) if k in b[c]] for c in cases}


def _per_case_runs(ab: ABTestSummary, variant: str, metric: str) -> dict[str, dict[int, float]]:
    """Case -> run number -> the run's value of ``metric``."""
    out: dict[str, dict[int, float]] = {}
    base = base_metric(metric)
    for r in ab.runs:
        if r.variant != variant:
            continue
        if metric == "error_rate":
            value: float | None = 1.0 if r.status == "error" else 0.0
        elif r.status == "error":
            continue
        elif metric == "pass_rate":
            value = 1.0 if r.metrics.get("passed") == 1.0 else 0.0
        else:
            value = r.metrics.get(base)
        if value is not None and not math.isnan(value):
            out.setdefault(r.case, {})[r.run] = float(value)
    return out


def _value(cases: dict[str, list[float]], metric: str) -> float | None:
    """The metric over the given cases: rates and means as means of case
    means (each case weighs the same), other stats pooled over the runs."""
    if not cases:
        return None
    stat = "mean" if metric in BINARY or "." not in metric else metric.rpartition(".")[2]
    if stat == "mean":
        means = [sum(v) / len(v) for v in cases.values() if v]
        return sum(means) / len(means) if means else None
    return _stat([x for v in cases.values() for x in v], stat)


def compare_metric(after_ab: ABTestSummary, variant: str, before_ab: ABTestSummary, ref_variant: str,
                   metric: str, alpha: float) -> MetricChange:
    """``variant`` of this session against ``ref_variant`` of the reference."""
    after = _per_case(after_ab, variant, metric)
    before = _per_case(before_ab, ref_variant, metric)
    common = sorted(set(after) & set(before))
    a = {c: after[c] for c in common if after[c] and before[c]}
    b = {c: before[c] for c in a}
    va, vb = _value(a, metric), _value(b, metric)
    diff = None if va is None or vb is None else va - vb
    change = MetricChange(metric, vb, va, diff, None, "", len(a))
    if not a:
        change.test = "no common case"
        return change
    if metric in BINARY:
        change.p_value, change.test = _cmh(b, a), "Cochran-Mantel-Haenszel over cases"
        per_case = {c: _fisher(b[c], a[c]) for c in a}
    elif (diffs := _pairs(after_ab, variant, before_ab, ref_variant, metric, list(a))) is not None:
        change.p_value, change.test = _paired_means(diffs)
        per_case = {c: _paired_t(diffs[c]) for c in a}
    else:
        change.p_value, change.test = _stratified_means(b, a)
        per_case = {c: _welch(b[c], a[c]) for c in a}
    change.significant = change.p_value is not None and change.p_value < alpha and bool(diff)
    adjusted = holm_by_key({c: p for c, p in per_case.items() if p is not None})
    for c, p in adjusted.items():
        if p >= alpha:
            continue
        mb, ma = sum(b[c]) / len(b[c]), sum(a[c]) / len(a[c])
        entry = {"case": c, "before": mb, "after": ma, "p_adjusted": p}
        (change.cases_worse if _is_worse(metric, ma - mb) else change.cases_better).append(entry)
    return change


def _is_worse(metric: str, diff: float) -> bool:
    from ..workflow.regression_spec import higher_is_better

    hib = higher_is_better(metric)
    return diff < 0 if hib in (True, None) else diff > 0


def judge_regression(change: MetricChange, *, variant: str, candidate: str, higher_better: bool,
                     tolerance: Tolerance, action: str, alpha: float, nodeid: str, label: str) -> GateJudgement:
    """A regression: a change in the bad direction, significant at alpha AND
    larger than the tolerance; the message states both facts."""
    from .gates import _outcome

    diff = change.diff
    bad = diff is not None and (diff < 0 if higher_better else diff > 0)
    allowed = tolerance.allowed(change.before)
    larger = bad and diff is not None and allowed is not None and abs(diff) > allowed
    regressed = bool(bad and change.significant and larger)
    outcome = _outcome(action, not regressed, variant == candidate)
    word = "drop" if higher_better else "rise"
    p = "no test" if change.p_value is None else f"p={change.p_value:.3g}"
    facts = (
        f"{variant}: {change.metric} {_num(change.before)} -> {_num(change.after)} "
        f"({'n/a' if diff is None else f'{diff:+.4g}'}; {p}, {change.test}; "
        f"{'significant' if change.significant else 'not significant'} at alpha={alpha:g}); "
        f"allowed {word} {tolerance.label}"
        + (f" (= {allowed:.4g})" if tolerance.relative and allowed is not None else "")
        + f": {'larger' if larger else 'within it' if bad else 'no ' + word}"
    )
    worse = [f"{c['case']}: {_pct(change, c['before'])} -> {_pct(change, c['after'])}" for c in change.cases_worse]
    if worse:
        facts += "; cases worse: " + ", ".join(worse)
    if not regressed:
        message = f"{facts}: no regression"
    elif outcome == "warned":
        message = f"{facts}: regression (WARN)"
    elif outcome == "xfailed":
        message = f"{facts}: regression ({action}); {variant} loses and is never applied"
    elif action == "BLOCK_DEPLOY":
        message = f"{facts}: regression (BLOCK_DEPLOY) of the deploy candidate {candidate!r}: deployment is blocked"
    else:
        message = f"{facts}: regression (FAIL) of the deploy candidate {candidate!r}"
    return GateJudgement(gate=f"regression:{label}", metric=change.metric, action=action, min=None, max=None,
                         variant=variant, value=change.after, met=not regressed, outcome=outcome,
                         nodeid=nodeid, message=message)


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4g}"


def _pct(change: MetricChange, value: float) -> str:
    return f"{value * 100:.0f}%" if change.metric in BINARY else f"{value:.4g}"


def case_line(change: MetricChange, entries: list[dict[str, Any]]) -> str:
    """``c: 100% -> 0%, d: 100% -> 17%``."""
    return ", ".join(f"{e['case']}: {_pct(change, e['before'])} -> {_pct(change, e['after'])}" for e in entries)


def change_dict(change: MetricChange) -> dict[str, Any]:
    return asdict(change)


def change_from_dict(data: dict[str, Any]) -> MetricChange:
    return MetricChange(**{k: v for k, v in data.items() if k in MetricChange.__dataclass_fields__})


TABLE_METRICS = ("pass_rate", "score.mean", "latency_ms.p50", "latency_ms.p95", "tokens_total.mean", "cost_usd.mean",
                 "error_rate")


def compare_abtests(ab: ABTestSummary, candidate: str, ref: ABTestSummary, ref_candidate: str,
                    reference: str) -> dict[str, Any]:
    """The "vs reference" part of an A/B test's summary (plain data)."""
    objective = ab.objective if ab.objective in BINARY or "." in ab.objective else f"{ab.objective}.mean"
    metrics = [objective] + [m for m in TABLE_METRICS if m != objective]
    changes = []
    for metric in metrics:
        change = compare_metric(ab, candidate, ref, ref_candidate, metric, ab.alpha)
        if change.before is not None or change.after is not None:
            changes.append(change_dict(change))
    now_cases = {r.case for r in ab.runs if r.variant == candidate}
    ref_cases = {r.case for r in ref.runs if r.variant == ref_candidate}
    changed: dict[str, bool] = {}
    try:
        mine, theirs = variant_hashes(ab.variant(candidate)), variant_hashes(ref.variant(ref_candidate))
        changed = {key: mine[key] != theirs[key] for key in mine}
    except KeyError:
        pass
    worse = any(
        c["significant"] and c["diff"] is not None and _is_worse(c["metric"], c["diff"]) for c in changes
    )
    if not changed:
        what = "unknown (the reference has no such variant)"
    elif any(changed.values()):
        what = ", ".join(k for k, v in changed.items() if v) + " changed"
    else:
        what = "same prompts, settings and model"
        if worse:
            what += ", but worse: the provider or model changed behaviour"
    return {
        "reference": reference,
        "reference_candidate": ref_candidate,
        "candidate": candidate,
        "changes": changes,
        "changed": changed,
        "what_changed": what,
        "cases_added": sorted(now_cases - ref_cases),
        "cases_removed": sorted(ref_cases - now_cases),
    }


def vs_reference_lines(vs: dict[str, Any]) -> list[str]:
    """The table's "vs reference" part, as lines."""
    lines = [f"vs reference {vs['reference']} ({vs['reference_candidate']} -> {vs['candidate']}): {vs['what_changed']}"]
    for data in vs.get("changes", []):
        change = change_from_dict(data)
        p = "" if change.p_value is None else f", p={change.p_value:.3g}"
        mark = ""
        if change.significant and change.diff:
            mark = " WORSE" if _is_worse(change.metric, change.diff) else " better"
        diff = "" if change.diff is None else f" ({change.diff:+.4g}{p})"
        lines.append(f"  {change.metric}: {_num(change.before)} -> {_num(change.after)}{diff}{mark}")
        if change.cases_worse:
            lines.append(f"    cases worse: {case_line(change, change.cases_worse)}")
        if change.cases_better:
            lines.append(f"    cases better: {case_line(change, change.cases_better)}")
    if vs.get("cases_added"):
        lines.append(f"  cases added (not compared): {', '.join(vs['cases_added'])}")
    if vs.get("cases_removed"):
        lines.append(f"  cases removed (not compared): {', '.join(vs['cases_removed'])}")
    return lines

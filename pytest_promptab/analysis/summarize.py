"""From run records to an :class:`ABTestSummary`: aggregates per variant,
comparisons with the baseline, gate judgements and the winner."""

from __future__ import annotations

from collections import defaultdict
from typing import Iterable

from ..run.records import RunRecord
from ..workflow.loader import LoadedWorkflow
from ..workflow.variants import resolve_nodes
from . import design as design_mod
from . import gates as gates_mod
from . import stats
from .summary import ABTestSummary, Comparison, DesignNote, VariantSummary


def expected_runs(loaded: LoadedWorkflow, runs_override: int | None = None) -> int:
    ab = loaded.config.ab_test
    return len(ab.variant_names) * len(loaded.cases) * (runs_override or ab.runs)


def summarize(
    loaded: LoadedWorkflow,
    display: str,
    records: Iterable[RunRecord],
    *,
    expected: int,
    runs_per_case: int | None = None,
) -> ABTestSummary:
    """Aggregates, comparisons and the winner; the gates are judged apart
    (:func:`judge_gates`), once it is known which variant is deployed."""
    config = loaded.config
    ab = config.ab_test
    if runs_per_case is None:  # expected = variants x cases x runs
        runs_per_case = max(1, expected // max(1, len(ab.variant_names) * len(loaded.cases)))
    by_variant: dict[str, list[RunRecord]] = defaultdict(list)
    for record in sorted(records, key=lambda r: (r.variant, r.case, r.run)):
        by_variant[record.variant].append(record)
    all_runs = [r for name in ab.variant_names for r in by_variant.get(name, [])]
    variants = [_variant_summary(loaded, name, by_variant.get(name, []), ab.baseline) for name in ab.variant_names]
    nodeid = f"{display}::{ab.name}"
    summary = ABTestSummary(
        file=display,
        workflow=config.name,
        name=ab.name,
        nodeid=nodeid,
        baseline=ab.baseline,
        objective=ab.objective.metric,
        goal=ab.objective.goal,
        alpha=ab.alpha,
        variants=variants,
        complete=len(all_runs) == expected,
        failed_runs=sum(v.failed_runs for v in variants),
        file_sha256=loaded.sha256,
        experiment=config.mlflow.experiment or config.name,
        description=config.description or "",
        runs=all_runs,
        max_error_rate=ab.max_error_rate,
    )
    completed = {name: [r for r in runs if r.status != "error"] for name, runs in by_variant.items()}
    comparisons: dict[str, Comparison] = {}
    if completed.get(ab.baseline):
        challengers = {v.name: completed.get(v.name, []) for v in ab.variants}
        comparisons = stats.compare_variants(completed[ab.baseline], challengers, ab.objective, ab.alpha)
    summary.design = design_note(loaded, comparisons, runs_per_case, ab.alpha)
    for variant in variants:
        variant.comparison = comparisons.get(variant.name)
        variant.violated = [
            g.label for g in gates_mod.violations(ab.gates, variant) if g.action in ("FAIL", "BLOCK_DEPLOY")
        ]
    eligible = {v.name for v in variants if not v.violated and v.runs - v.failed_runs > 0}
    values = {v.name: objective_value(v, ab.objective.metric, ab.objective.run_metric) for v in variants}
    if completed.get(ab.baseline):
        summary.winner, summary.winner_reason = stats.choose_winner(
            ab.baseline, values, comparisons, eligible, ab.objective.goal
        )
    else:
        summary.winner, summary.winner_reason = None, "no baseline runs to compare with"
    for variant in variants:
        variant.winner = variant.name == summary.winner and summary.has_significant_winner
    return summary


def design_note(
    loaded: LoadedWorkflow, comparisons: dict[str, Comparison], runs_per_case: int, alpha: float
) -> DesignNote:
    """The unit, whether the design can ever decide, and the smallest
    difference it detects with 80% power given the spread observed."""
    from . import paired

    cases = len(loaded.cases)
    challengers = len(loaded.config.ab_test.variants)
    unit = design_mod.design_unit(cases)
    units = runs_per_case if unit == "runs" else cases
    sds = [c.sd for c in comparisons.values() if c.sd is not None and c.units >= 2]
    sd = (sum(x * x for x in sds) / len(sds)) ** 0.5 if sds else None
    decidable = design_mod.decidable(cases, runs_per_case, challengers, alpha)
    detectable = None
    if decidable and sd and challengers:  # no spread observed: nothing to size a difference by
        detectable = paired.detectable_difference(units, sd, alpha, challengers)
    return DesignNote(
        unit=unit, cases=cases, runs=runs_per_case, challengers=challengers,
        units_needed=design_mod.units_needed(challengers, alpha), decidable=decidable, detectable=detectable, sd=sd,
    )  # fmt: skip


def judge_gates(summary: ABTestSummary, loaded: LoadedWorkflow, deploy_candidate: str) -> None:
    """Judge every gate for every variant; ``deploy_candidate`` is the
    baseline, or the winner that apply-best wrote into the file."""
    summary.gates = gates_mod.judge(
        loaded.config.ab_test.gates, summary.variants, deploy_candidate=deploy_candidate, nodeid_prefix=summary.nodeid
    )


def objective_value(variant: VariantSummary, metric: str, run_metric: str) -> float | None:
    """The objective as it is compared: the mean over cases of the case means."""
    if metric == "pass_rate":
        return variant.pass_rate
    means = [m[run_metric] for m in variant.case_means.values() if run_metric in m]
    return sum(sorted(means)) / len(means) if means else None


def _variant_summary(loaded: LoadedWorkflow, name: str, runs: list[RunRecord], baseline: str) -> VariantSummary:
    completed = [r for r in runs if r.status != "error"]
    aggregates = stats.aggregate(completed)
    passed = sum(1 for r in completed if r.metrics.get("passed") == 1.0)
    n = len(completed)
    per_case: dict[str, list[RunRecord]] = defaultdict(list)
    for r in completed:
        per_case[r.case].append(r)
    metrics = sorted({m for r in completed for m in r.metrics})
    case_means = {
        case: {m: mean for m in metrics if (mean := stats.mean_of_cases(rs, m)) is not None}
        for case, rs in sorted(per_case.items())
    }
    nodes = resolve_nodes(loaded, name)
    models = sorted({n_.provider.model for n_ in nodes if n_.provider.model})
    return VariantSummary(
        name=name,
        role="baseline" if name == baseline else "challenger",
        runs=len(runs),
        failed_runs=len(runs) - n,
        aggregates=aggregates,
        pass_rate=stats.mean_of_cases(completed, "passed"),
        pass_rate_ci=stats.pass_rate_interval(completed),
        case_means=case_means,
        case_runs={case: len(rs) for case, rs in sorted(per_case.items())},
        passed_runs=passed,
        model=", ".join(models) or None,
        prompts={node.id: node.prompt for node in nodes},
        system={node.id: node.system for node in nodes if node.system},
        settings={node.id: dict(node.settings) for node in nodes},
        provider={"type": nodes[0].provider.type, **({"model": nodes[0].provider.model} if nodes[0].provider.model else {})},
    )

"""Quality gates: each gate judged for each variant, and the pytest outcome of
each judgement (SPEC section 7).

| judgement      | deploy candidate | other variants |
| met            | passed           | passed         |
| WARN violated  | warned (passed)  | warned         |
| FAIL violated  | failed           | xfailed        |
| BLOCK violated | failed + block   | xfailed        |
"""

from __future__ import annotations

from ..workflow.schema import GateConfig
from .summary import GateJudgement, GateOutcome, VariantSummary


def gate_value(gate: GateConfig, variant: VariantSummary) -> float | None:
    metric, stat = gate.split_metric()
    if metric == "pass_rate":
        return variant.pass_rate
    return variant.aggregates.get(metric, {}).get(stat)


def gate_met(gate: GateConfig, value: float | None, variant: VariantSummary | None = None) -> bool:
    if value is None:
        return False
    if gate.confidence is not None and variant is not None:
        from .stats import variant_interval

        interval = variant_interval(variant, gate.metric, gate.confidence)
        if interval is None:
            return False
        low, high = interval
        if gate.min is not None and low < gate.min:
            return False
        if gate.max is not None and high > gate.max:
            return False
        return True
    if gate.min is not None and value < gate.min:
        return False
    if gate.max is not None and value > gate.max:
        return False
    return True


def violations(gates: list[GateConfig], variant: VariantSummary) -> list[GateConfig]:
    """The gates (of any action) that ``variant`` violates (a gate not judged violates none)."""
    return [
        g for g in gates
        if not g.not_judged and (g.variants is None or variant.name in g.variants) and not gate_met(g, gate_value(g, variant), variant)
    ]


def judge(
    gates: list[GateConfig], variants: list[VariantSummary], *, deploy_candidate: str, nodeid_prefix: str
) -> list[GateJudgement]:
    """One judgement per gate per variant (with runs), in file order."""
    out = []
    for gate in gates:
        for variant in variants:
            if gate.variants is not None and variant.name not in gate.variants:
                continue
            if variant.runs - variant.failed_runs == 0:
                continue
            value = gate_value(gate, variant)
            met = gate_met(gate, value, variant)
            outcome = _outcome(gate.action, met, variant.name == deploy_candidate)
            if gate.not_judged:  # a warning, never a failure or a block
                value, met, outcome = None, False, "warned"
            interval = None
            if gate.confidence is not None:
                from .stats import variant_interval

                interval = variant_interval(variant, gate.metric, gate.confidence)
            out.append(
                GateJudgement(
                    gate=gate.label,
                    metric=gate.metric,
                    action=gate.action,
                    min=gate.min,
                    max=gate.max,
                    variant=variant.name,
                    value=value,
                    met=met,
                    outcome=outcome,
                    nodeid=f"{nodeid_prefix}::gate[{variant.name}:{gate.label}]",
                    message=_message(gate, variant.name, value, met, outcome, deploy_candidate, interval),
                    confidence=gate.confidence,
                    bound=None if interval is None else (interval[0] if gate.min is not None else interval[1]),
                )
            )
    return out


def _outcome(action: str, met: bool, is_candidate: bool) -> GateOutcome:
    if met:
        return "passed"
    if action == "WARN":
        return "warned"
    return "failed" if is_candidate else "xfailed"


def _message(
    gate: GateConfig,
    variant: str,
    value: float | None,
    met: bool,
    outcome: str,
    candidate: str,
    interval: tuple[float, float] | None = None,
) -> str:
    if gate.not_judged:
        return f"{variant}: {gate.metric}: not judged: {gate.not_judged} (WARN)"
    shown = f"no data ({_why_no_data(gate.metric)})" if value is None else f"{value:.4g}"
    if gate.confidence is not None and value is not None:
        level = f"{gate.confidence * 100:.4g}%"
        shown += f" [{level} CI {interval[0]:.4g}, {interval[1]:.4g}]" if interval else f" (no {level} interval: too few runs)"
    bounds = " and ".join(
        b for b in (
            f">= {gate.min:g}" if gate.min is not None else "",
            f"<= {gate.max:g}" if gate.max is not None else "",
        ) if b
    )
    if gate.confidence is not None:
        bounds += f" with {gate.confidence * 100:.4g}% confidence (the whole interval)"
    head = f"{variant}: {gate.metric} = {shown}, required {bounds}"
    if met:
        return f"{head}: met"
    if outcome == "warned":
        return f"{head}: violated (WARN)"
    if outcome == "xfailed":
        return f"{head}: violated ({gate.action}); {variant} loses and is never applied"
    if gate.action == "BLOCK_DEPLOY":
        return f"{head}: violated (BLOCK_DEPLOY) by the deploy candidate {candidate!r}: deployment is blocked"
    return f"{head}: violated (FAIL) by the deploy candidate {candidate!r}"


def _why_no_data(metric: str) -> str:
    """Why a metric can have no value: a gate that cannot be judged is violated."""
    if metric.startswith("cost_usd"):
        return "no run reported a cost: add 'pricing:' to the provider"
    if metric.startswith("tokens_"):
        return "the provider reported no token usage"
    return "no completed run reported it"


def blocks_deploy(judgements: list[GateJudgement]) -> bool:
    return any(j.outcome == "failed" and j.action == "BLOCK_DEPLOY" for j in judgements)

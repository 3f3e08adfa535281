"""Gate judgements and the outcome table of SPEC section 7 (pure logic)."""

from __future__ import annotations

import pytest

from pytest_promptab.analysis.gates import blocks_deploy, judge
from pytest_promptab.analysis.summary import VariantSummary
from pytest_promptab.workflow.schema import GateConfig


def variant(name: str, pass_rate: float | None, cost: float | None = 0.001) -> VariantSummary:
    aggregates = {"cost_usd": {"mean": cost, "p95": cost}} if cost is not None else {}
    return VariantSummary(name=name, role="baseline" if name == "base" else "challenger", runs=10,
                          failed_runs=0, aggregates=aggregates, pass_rate=pass_rate, pass_rate_ci=None)


@pytest.mark.parametrize(
    ("action", "base_outcome", "other_outcome", "blocked"),
    [
        ("WARN", "warned", "warned", False),
        ("FAIL", "failed", "xfailed", False),
        ("BLOCK_DEPLOY", "failed", "xfailed", True),
    ],
)
def test_outcome_table(action: str, base_outcome: str, other_outcome: str, blocked: bool) -> None:
    gate = GateConfig(metric="pass_rate", min=0.8, action=action)
    judged = judge([gate], [variant("base", 0.5), variant("v", 0.6), variant("good", 0.9)],
                   deploy_candidate="base", nodeid_prefix="f.yaml::ab")
    assert [(j.variant, j.outcome) for j in judged] == [
        ("base", base_outcome), ("v", other_outcome), ("good", "passed")
    ]
    assert judged[0].nodeid == "f.yaml::ab::gate[base:pass_rate>=0.8]"
    assert blocks_deploy(judged) is blocked


def test_the_deploy_candidate_may_be_a_challenger() -> None:
    gate = GateConfig(metric="pass_rate", min=0.8, action="BLOCK_DEPLOY")
    judged = judge([gate], [variant("base", 0.5), variant("good", 0.7)], deploy_candidate="good", nodeid_prefix="x")
    assert [j.outcome for j in judged] == ["xfailed", "failed"]


def test_gate_variants_filter_and_bounds() -> None:
    gate = GateConfig(metric="cost_usd.p95", max=0.002, min=0.0005, action="FAIL", variants=["v"])
    judged = judge([gate], [variant("base", 1.0, 0.01), variant("v", 1.0, 0.001)], deploy_candidate="base",
                   nodeid_prefix="x")
    assert [(j.variant, j.met) for j in judged] == [("v", True)]
    assert judged[0].gate == "cost_usd.p95>=0.0005,cost_usd.p95<=0.002"


def test_no_data_is_violated_and_says_why() -> None:
    gate = GateConfig(metric="cost_usd.mean", max=0.002, action="FAIL")
    (judged,) = judge([gate], [variant("base", 1.0, cost=None)], deploy_candidate="base", nodeid_prefix="x")
    assert not judged.met and judged.outcome == "failed"
    assert "no data (no run reported a cost: add 'pricing:' to the provider)" in judged.message

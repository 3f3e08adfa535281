"""Regression against a reference, the pure logic (issue 13): tolerances,
metric directions, the within-case tests, the judgement (significant AND
beyond the tolerance) and what changed."""

from __future__ import annotations

import math

import pytest

from pytest_promptab.analysis.regression import (
    _cmh,
    compare_abtests,
    compare_metric,
    judge_regression,
)
from pytest_promptab.analysis.summary import ABTestSummary, VariantSummary
from pytest_promptab.run.records import RunRecord
from pytest_promptab.workflow.regression_spec import (
    Tolerance,
    higher_is_better,
    parse_compare_fail,
    parse_tolerance,
)


def test_tolerances() -> None:
    assert parse_tolerance(0.05) == Tolerance(0.05, False)
    assert parse_tolerance("20%") == Tolerance(20.0, True)
    assert parse_tolerance("20%").allowed(500.0) == pytest.approx(100.0)
    assert parse_tolerance("0.1").allowed(None) == 0.1
    for bad in ("5 points", "-1", "%", True, "nan"):
        with pytest.raises(ValueError):
            parse_tolerance(bad)


def test_directions_and_compare_fail() -> None:
    assert higher_is_better("pass_rate") and higher_is_better("score.mean") and higher_is_better("check.tone.mean")
    assert higher_is_better("latency_ms.p95") is False and higher_is_better("node.a.latency_ms.p50") is False
    assert higher_is_better("tokens_total.mean") is False and higher_is_better("cost_usd.mean") is False
    assert higher_is_better("error_rate") is False and higher_is_better("mystery.mean") is None
    assert parse_compare_fail("latency_ms.p95:20%") == ("latency_ms.p95", Tolerance(20.0, True))
    assert parse_compare_fail("score:0.1") == ("score.mean", Tolerance(0.1, False))
    with pytest.raises(ValueError, match="no known direction"):
        parse_compare_fail("mystery.mean:1")


def test_cmh_matches_a_hand_computation() -> None:
    # case x: before 5/6, after 1/6; case y: before 4/6, after 2/6
    before = {"x": [1.0] * 5 + [0.0], "y": [1.0] * 4 + [0.0] * 2}
    after = {"x": [1.0] + [0.0] * 5, "y": [1.0] * 2 + [0.0] * 4}
    # sum(x1 - E) = (1 - 3) + (2 - 3) = -3; var = 6*6*6*6/(144*11) + 6*6*6*6/(144*11) = 18/11
    from scipy.stats import chi2

    expected = chi2.sf((3 - 0.5) ** 2 / (18 / 11), 1)
    assert _cmh(before, after) == pytest.approx(expected)
    # cases without variation carry no evidence
    assert _cmh({"z": [1.0, 1.0]}, {"z": [1.0, 1.0]}) == 1.0


def _ab(rates: dict[str, tuple[int, int]], *, prompt: str = "p", latency: float = 100.0) -> ABTestSummary:
    runs = []
    for case, (passed, n) in rates.items():
        for i in range(n):
            ok = i < passed
            runs.append(RunRecord("f.yaml", "ab", "baseline", case, i + 1, "passed" if ok else "check_failed",
                                  metrics={"passed": 1.0 if ok else 0.0, "latency_ms": latency + i}))
    variant = VariantSummary("baseline", "baseline", len(runs), 0, {}, None, None, model="m", prompts={"a": prompt})
    return ABTestSummary("f.yaml", "w", "ab", "f.yaml::ab", "baseline", "pass_rate", "max", 0.05, [variant], runs=runs)


def test_cases_worse_are_named_with_before_and_after() -> None:
    before = _ab({"a": (6, 6), "b": (6, 6), "c": (6, 6)})
    after = _ab({"a": (6, 6), "b": (0, 6), "c": (6, 6), "new": (1, 6)})
    change = compare_metric(after, "baseline", before, "baseline", "pass_rate", 0.05)
    assert change.cases == 3 and change.before == 1.0 and change.after == pytest.approx(2 / 3)
    assert change.significant
    assert [(c["case"], c["before"], c["after"]) for c in change.cases_worse] == [("b", 1.0, 0.0)]
    vs = compare_abtests(after, "baseline", before, "baseline", "ref.json")
    assert vs["cases_added"] == ["new"] and vs["cases_removed"] == []
    assert vs["what_changed"] == "same prompts, settings and model, but worse: the provider or model changed behaviour"
    changed = compare_abtests(_ab({"a": (6, 6), "b": (0, 6), "c": (6, 6)}, prompt="q"), "baseline", before, "baseline", "r")
    assert changed["what_changed"] == "prompts changed"


def test_a_regression_needs_significance_and_a_change_beyond_the_tolerance() -> None:
    before = _ab({"a": (6, 6), "b": (6, 6), "c": (6, 6), "d": (6, 6)})
    worse = _ab({"a": (6, 6), "b": (0, 6), "c": (6, 6), "d": (6, 6)})  # -0.25, significant
    change = compare_metric(worse, "baseline", before, "baseline", "pass_rate", 0.05)

    def judge(tol: str, action: str = "BLOCK_DEPLOY", variant: str = "baseline") -> str:
        return judge_regression(change, variant=variant, candidate="baseline", higher_better=True,
                                tolerance=parse_tolerance(tol), action=action, alpha=0.05, nodeid="n", label="l").outcome

    assert judge("0.05") == "failed"
    assert judge("0.3") == "passed"  # significant, but within the tolerance
    assert judge("20%") == "failed" and judge("30%") == "passed"
    assert judge("0.05", "WARN") == "warned"
    assert judge("0.05", variant="other") == "xfailed"
    # a large drop that is not significant (one run per case, one case) is no regression
    small = compare_metric(_ab({"a": (0, 1)}), "baseline", _ab({"a": (1, 1)}), "baseline", "pass_rate", 0.05)
    assert not small.significant
    verdict = judge_regression(small, variant="baseline", candidate="baseline", higher_better=True,
                               tolerance=parse_tolerance(0.05), action="FAIL", alpha=0.05, nodeid="n", label="l")
    assert verdict.outcome == "passed" and "not significant" in verdict.message


def test_latency_is_compared_within_cases() -> None:
    before, after = _ab({"a": (6, 6), "b": (6, 6)}, latency=100.0), _ab({"a": (6, 6), "b": (6, 6)}, latency=200.0)
    change = compare_metric(after, "baseline", before, "baseline", "latency_ms.mean", 0.05)
    assert change.diff == pytest.approx(100.0) and change.significant and "stratified" in change.test
    assert [c["case"] for c in change.cases_worse] == ["a", "b"]
    assert not math.isnan(change.p_value or 0.0)

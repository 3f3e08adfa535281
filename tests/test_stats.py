"""Statistics: aggregates, intervals, tests, Holm, the winner (SPEC 5 and 6).

Expected values are worked out by hand in the comments, or taken from the
literature (Newcombe 1998; R's fisher.test / wilcox.test / t.test)."""

from __future__ import annotations

import math
import random
import warnings

import pytest

from pytest_promptab.analysis.stats import (
    aggregate,
    choose_winner,
    compare_means,
    compare_rates,
    compare_variants,
    describe,
    holm,
    nearest_rank,
    wilson_interval,
)
from pytest_promptab.analysis.summary import Comparison
from pytest_promptab.run.records import RunRecord
from pytest_promptab.workflow.schema import ObjectiveConfig

approx = pytest.approx


def run(variant: str, i: int, status: str = "passed", **metrics: float) -> RunRecord:
    return RunRecord(
        file="wf.yaml", ab_test="t", variant=variant, case="c", run=i, status=status, metrics=dict(metrics)  # type: ignore[arg-type]
    )


def passed_runs(variant: str, successes: int, n: int) -> list[RunRecord]:
    return [run(variant, i + 1, passed=1.0 if i < successes else 0.0) for i in range(n)]


# ---------------------------------------------------------------- nearest rank


def test_nearest_rank_single_value() -> None:
    # n=1: ceil(0.5*1)-1 = 0 and ceil(0.95*1)-1 = 0
    assert nearest_rank([7.0], 50) == 7.0
    assert nearest_rank([7.0], 95) == 7.0


def test_nearest_rank_twenty_values_p95_is_the_19th() -> None:
    values = [float(v) for v in range(20, 0, -1)]  # 1..20, unsorted on purpose
    # p95: ceil(0.95*20)-1 = 19-1 = 18 -> the 19th sorted value, 19
    assert nearest_rank(values, 95) == 19.0
    # p50: ceil(0.5*20)-1 = 9 -> the 10th value, 10 (not the interpolated 10.5)
    assert nearest_rank(values, 50) == 10.0
    assert nearest_rank(values, 100) == 20.0
    assert nearest_rank(values, 0) == 1.0


def test_nearest_rank_rounds_up() -> None:
    # n=5, p95: ceil(4.75)-1 = 4 -> the max; p50: ceil(2.5)-1 = 2 -> the 3rd
    assert nearest_rank([5, 1, 4, 2, 3], 95) == 5
    assert nearest_rank([5, 1, 4, 2, 3], 50) == 3
    # n=60, p95: 0.95*60 = 57 exactly -> index 56 -> 57th value (floats would risk 57.000000001 -> 58)
    assert nearest_rank(list(range(1, 61)), 95) == 57


def test_nearest_rank_rejects_empty_and_bad_p() -> None:
    with pytest.raises(ValueError, match="empty"):
        nearest_rank([], 50)
    with pytest.raises(ValueError, match="between 0 and 100"):
        nearest_rank([1.0], 150)


# ---------------------------------------------------------------- describe / aggregate


def test_describe_small_sample() -> None:
    d = describe([2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0])
    # mean = 40/8 = 5; squared deviations sum to 9+1+1+1+0+0+4+16 = 32; sample var = 32/7
    assert d["n"] == 8
    assert d["mean"] == 5.0
    assert d["std"] == approx(math.sqrt(32 / 7))
    assert (d["min"], d["max"]) == (2.0, 9.0)
    assert d["p50"] == 4.0  # ceil(4)-1 = 3 -> 4th sorted value
    assert d["p95"] == 9.0  # ceil(7.6)-1 = 7 -> 8th


def test_describe_one_value_and_empty() -> None:
    assert describe([3.5]) == {"n": 1, "mean": 3.5, "std": 0.0, "min": 3.5, "max": 3.5, "p50": 3.5, "p95": 3.5}
    assert describe([]) == {"n": 0}


def test_aggregate_every_metric_and_skips_errored_runs() -> None:
    runs = [
        run("a", 1, latency_ms=100.0, passed=1.0),
        run("a", 2, latency_ms=300.0, passed=0.0),
        run("a", 3, status="error", latency_ms=99999.0),  # errored: must not count
    ]
    agg = aggregate(runs)
    assert set(agg) == {"latency_ms", "passed"}
    assert agg["latency_ms"]["n"] == 2
    assert agg["latency_ms"]["mean"] == 200.0
    assert agg["latency_ms"]["max"] == 300.0
    assert agg["passed"]["mean"] == 0.5


def test_aggregate_is_independent_of_run_order() -> None:
    # xdist delivers runs in any order; the floats must be bit-identical.
    rng = random.Random(1)
    runs = [run("a", i, latency_ms=rng.uniform(0, 1) * 10 ** rng.randint(-3, 6)) for i in range(200)]
    first = aggregate(runs)
    for _ in range(5):
        rng.shuffle(runs)
        assert aggregate(runs) == first


# ---------------------------------------------------------------- Wilson


def test_wilson_8_of_10() -> None:
    # z = 1.959964, z^2/n = 0.3841459; centre = (0.8 + 0.1920729)/1.3841459 = 0.716743
    # half = (1.959964/1.3841459) * sqrt(0.8*0.2/10 + 3.841459/400) = 1.416009 * 0.160012 = 0.226579
    low, high = wilson_interval(8, 10)
    assert low == approx(0.4902, abs=1e-4)
    assert high == approx(0.9433, abs=1e-4)


def test_wilson_at_the_bounds() -> None:
    # 0/10: centre = half = 0.1920729/1.3841459 = 0.138766 -> (0, 0.2775) (Newcombe 1998a, Table I)
    assert wilson_interval(0, 10) == (0.0, approx(0.2775, abs=1e-4))
    # 10/10 mirrors it
    assert wilson_interval(10, 10) == (approx(0.7225, abs=1e-4), 1.0)
    assert wilson_interval(0, 0) == (0.0, 1.0)


def test_wilson_rejects_impossible_counts() -> None:
    with pytest.raises(ValueError):
        wilson_interval(11, 10)


# ---------------------------------------------------------------- rates


@pytest.mark.parametrize(
    ("x1", "n1", "x0", "n0", "diff", "low", "high"),
    [
        # Newcombe (1998) Stat Med 17:873, Table II, method 10 (hybrid score):
        (56, 70, 48, 80, 0.2000, 0.0524, 0.3339),  # example (a)
        (9, 10, 3, 10, 0.6000, 0.1705, 0.8090),  # example (b)
        (5, 56, 0, 29, 0.0893, -0.0381, 0.1926),  # example (d)
        (0, 10, 0, 10, 0.0000, -0.2775, 0.2775),  # example (f)
        (10, 10, 0, 10, 1.0000, 0.6075, 1.0000),  # example (h)
    ],
)
def test_newcombe_interval_matches_the_paper(
    x1: int, n1: int, x0: int, n0: int, diff: float, low: float, high: float
) -> None:
    c = compare_rates(x0, n0, x1, n1)  # challenger x1/n1 against baseline x0/n0
    assert c.diff == approx(diff, abs=1e-4)
    assert c.ci_low == approx(low, abs=1e-4)
    assert c.ci_high == approx(high, abs=1e-4)


def test_fisher_lady_tasting_tea() -> None:
    # 3/4 vs 1/4: tables with margins 4,4 of 8 have probabilities (1,16,36,16,1)/70;
    # two-sided p sums those <= P(observed)=16/70: 34/70 = 0.4857 (R: fisher.test gives 0.4857)
    c = compare_rates(1, 4, 3, 4)
    assert c.p_value == approx(34 / 70)
    assert c.test == "Fisher exact"


def _fisher_by_hand(a: int, n1: int, b: int, n0: int) -> float:
    """Two-sided Fisher: sum of hypergeometric probabilities <= the observed one."""
    k, n = a + b, n1 + n0
    probs = [math.comb(n1, i) * math.comb(n0, k - i) / math.comb(n, k) for i in range(max(0, k - n0), min(k, n1) + 1)]
    observed = math.comb(n1, a) * math.comb(n0, b) / math.comb(n, k)
    return sum(p for p in probs if p <= observed * (1 + 1e-7))


def test_fisher_matches_the_hypergeometric_sum() -> None:
    c = compare_rates(5, 20, 18, 20)
    assert c.p_value == approx(_fisher_by_hand(18, 20, 5, 20), rel=1e-9)
    assert c.p_value < 0.001


def test_compare_rates_without_data() -> None:
    c = compare_rates(0, 0, 3, 5)
    assert (c.diff, c.ci_low, c.p_value) == (None, None, None)
    assert c.value == 0.6


# ---------------------------------------------------------------- means


def test_compare_means_welch_and_mann_whitney() -> None:
    c = compare_means([1, 2, 3, 4, 5], [3, 4, 5, 6, 7])
    # diff = 5 - 3 = 2; s^2 = 2.5 each, se = sqrt(0.5 + 0.5) = 1, Welch df = 8,
    # t(0.975, 8) = 2.306004 -> 2 -/+ 2.306004 (R: t.test(...)$conf.int = -0.306, 4.306)
    assert c.diff == 2.0
    assert c.ci_low == approx(-0.306004, abs=1e-6)
    assert c.ci_high == approx(4.306004, abs=1e-6)
    # ranks of the challenger: 3.5+5.5+7.5+9+10 = 35.5 -> U = 20.5; E[U] = 12.5;
    # tie-corrected var = 25/12 * (11 - 18/90) = 22.5; z = (20.5-12.5-0.5)/sqrt(22.5) = 1.5811;
    # p = 2*(1-Phi(1.5811)) = 0.1138 (R: wilcox.test(..., correct=TRUE) gives 0.1138)
    assert c.p_value == approx(0.1138, abs=1e-4)
    assert c.test == "Mann-Whitney U"


def test_compare_means_degenerate_inputs_do_not_warn() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        same = compare_means([1.0, 1.0, 1.0], [1.0, 1.0, 1.0])
        shifted = compare_means([1.0, 1.0, 1.0], [2.0, 2.0, 2.0])
        tiny = compare_means([1.0], [2.0, 3.0])
        empty = compare_means([], [2.0, 3.0])
    assert (same.diff, same.ci_low, same.ci_high, same.p_value) == (0.0, 0.0, 0.0, 1.0)
    assert (shifted.diff, shifted.ci_low, shifted.ci_high) == (1.0, 1.0, 1.0)
    assert shifted.p_value is not None and 0 < shifted.p_value < 1
    assert tiny.diff == 1.5 and tiny.ci_low is None and tiny.p_value is not None
    assert empty.diff is None and empty.p_value is None and empty.value == 2.5


# ---------------------------------------------------------------- Holm


def test_holm_textbook() -> None:
    # sorted 0.01, 0.03, 0.04 -> 3*0.01 = 0.03, 2*0.03 = 0.06, max(0.06, 1*0.04) = 0.06
    assert holm([0.01, 0.04, 0.03]) == approx([0.03, 0.06, 0.06])


def test_holm_caps_at_one_and_keeps_order() -> None:
    assert holm([0.5, 0.9]) == approx([1.0, 1.0])
    assert holm([0.2]) == [0.2]
    assert holm([]) == []
    adjusted = holm([0.04, 0.001, 0.02, 0.3])
    # sorted 0.001*4 = 0.004, 0.02*3 = 0.06, 0.04*2 = 0.08, 0.3*1 -> 0.3
    assert adjusted == approx([0.08, 0.004, 0.06, 0.3])


# ---------------------------------------------------------------- compare_variants


def test_compare_variants_rates_with_holm() -> None:
    base = passed_runs("baseline", 5, 20)
    challengers = {"good": passed_runs("good", 18, 20), "same": passed_runs("same", 6, 20)}
    out = compare_variants(base, challengers, ObjectiveConfig(metric="pass_rate", goal="max"), alpha=0.05)
    good, same = out["good"], out["same"]
    assert list(out) == ["good", "same"]
    assert good.metric == "pass_rate"
    assert (good.baseline_value, good.value) == (0.25, 0.9)
    assert good.diff == approx(0.65)
    assert good.p_value == approx(_fisher_by_hand(18, 20, 5, 20), rel=1e-9)
    # Holm with two tests: the smaller p doubles, the larger is max(2*p_min, p)
    assert good.p_adjusted == approx(2 * good.p_value)
    assert same.p_adjusted == approx(max(2 * good.p_value, same.p_value))
    assert good.significant and good.better
    assert not same.significant and not same.better


def test_compare_variants_significantly_worse_is_not_better() -> None:
    base = passed_runs("baseline", 18, 20)
    out = compare_variants(base, {"bad": passed_runs("bad", 5, 20)}, ObjectiveConfig(), alpha=0.05)
    assert out["bad"].significant and not out["bad"].better
    assert out["bad"].diff == approx(-0.65)


def test_compare_variants_continuous_goal_min() -> None:
    base = [run("baseline", i, latency_ms=float(v)) for i, v in enumerate(range(200, 220))]
    fast = [run("fast", i, latency_ms=float(v)) for i, v in enumerate(range(100, 120))]
    out = compare_variants(base, {"fast": fast}, ObjectiveConfig(metric="latency_ms.mean", goal="min"), alpha=0.05)
    c = out["fast"]
    assert c.metric == "latency_ms"
    assert c.diff == -100.0
    assert c.test == "Mann-Whitney U"
    assert c.ci_low is not None and c.ci_high is not None and c.ci_low < -100 < c.ci_high < 0
    assert c.better
    # same data, goal max: significant, but not better
    out = compare_variants(base, {"fast": fast}, ObjectiveConfig(metric="latency_ms", goal="max"), alpha=0.05)
    assert out["fast"].significant and not out["fast"].better


def test_compare_variants_missing_data() -> None:
    base = passed_runs("baseline", 5, 20)
    broken = [run("broken", i, status="error") for i in range(3)]
    good = passed_runs("good", 19, 20)
    out = compare_variants(base, {"broken": broken, "good": good}, ObjectiveConfig(), alpha=0.05)
    b = out["broken"]
    assert (b.value, b.diff, b.ci_low, b.ci_high, b.p_value, b.p_adjusted) == (None,) * 6
    assert not b.significant and not b.better
    # only one challenger was tested: Holm over one p-value leaves it unchanged
    assert out["good"].p_adjusted == out["good"].p_value


# ---------------------------------------------------------------- choose_winner


def comparison(
    name: str, diff: float, p_adj: float, *, better: bool, value: float = 0.5, alpha: float = 0.05
) -> Comparison:
    return Comparison(
        variant=name, metric="pass_rate", baseline_value=value - diff, value=value, diff=diff,
        ci_low=diff - 0.18, ci_high=diff + 0.18, p_value=p_adj / 2, p_adjusted=p_adj,
        test="Fisher exact", significant=p_adj < alpha, better=better,
    )  # fmt: skip


def test_winner_significant() -> None:
    comps = {"empathetic": comparison("empathetic", 0.30, 0.002, better=True, value=0.9)}
    winner, reason = choose_winner("baseline", {"baseline": 0.6, "empathetic": 0.9}, comps, {"baseline", "empathetic"}, "max")
    assert winner == "empathetic"
    assert reason == "empathetic: pass_rate +0.30 (95% CI +0.12..+0.48), p=0.002 (Holm)"


def test_winner_not_significant_keeps_baseline() -> None:
    comps = {"empathetic": comparison("empathetic", 0.10, 0.31, better=False, value=0.7)}
    winner, reason = choose_winner("baseline", {"baseline": 0.6, "empathetic": 0.7}, comps, {"baseline", "empathetic"}, "max")
    assert winner == "baseline"
    assert reason.startswith("no significant winner")
    assert "empathetic: pass_rate +0.10" in reason and "p=0.310" in reason


def test_winner_better_but_gated_out() -> None:
    comps = {"terse": comparison("terse", 0.30, 0.01, better=True, value=0.9)}
    winner, reason = choose_winner("baseline", {"baseline": 0.6, "terse": 0.9}, comps, {"baseline"}, "max")
    assert winner == "baseline"
    assert reason.startswith("no challenger passed the gates")
    assert "terse" in reason


def test_winner_best_of_two_better_challengers() -> None:
    comps = {
        "a": comparison("a", 0.20, 0.001, better=True, value=0.8),
        "b": comparison("b", 0.30, 0.004, better=True, value=0.9),
    }
    values = {"baseline": 0.6, "a": 0.8, "b": 0.9}
    assert choose_winner("baseline", values, comps, {"baseline", "a", "b"}, "max")[0] == "b"
    # b gated out: a wins
    assert choose_winner("baseline", values, comps, {"baseline", "a"}, "max")[0] == "a"
    # goal min: the lower value wins (diffs would be negative in practice; only the rule matters here)
    assert choose_winner("baseline", values, comps, {"baseline", "a", "b"}, "min")[0] == "a"


def test_winner_ties_go_to_lower_p_then_declaration_order() -> None:
    values = {"baseline": 0.5, "a": 0.9, "b": 0.9}
    comps = {"a": comparison("a", 0.4, 0.02, better=True, value=0.9), "b": comparison("b", 0.4, 0.01, better=True, value=0.9)}
    assert choose_winner("baseline", values, comps, {"a", "b"}, "max")[0] == "b"
    comps = {"a": comparison("a", 0.4, 0.01, better=True, value=0.9), "b": comparison("b", 0.4, 0.01, better=True, value=0.9)}
    assert choose_winner("baseline", values, comps, {"a", "b"}, "max")[0] == "a"


def test_winner_without_challengers_or_data() -> None:
    assert choose_winner("baseline", {"baseline": 0.5}, {}, {"baseline"}, "max") == ("baseline", "no challengers")
    empty = Comparison("x", "pass_rate", 0.5, None, None, None, None, None, None, "Fisher exact", False, False)
    winner, reason = choose_winner("baseline", {"baseline": 0.5, "x": None}, {"x": empty}, {"baseline", "x"}, "max")
    assert winner == "baseline" and "no significant winner" in reason


def test_end_to_end_rates_to_winner() -> None:
    base = passed_runs("baseline", 10, 30)
    challengers = {"empathetic": passed_runs("empathetic", 27, 30), "terse": passed_runs("terse", 12, 30)}
    comps = compare_variants(base, challengers, ObjectiveConfig(), alpha=0.05)
    values = {"baseline": 10 / 30, "empathetic": 0.9, "terse": 0.4}
    winner, reason = choose_winner("baseline", values, comps, {"baseline", "empathetic", "terse"}, "max")
    assert winner == "empathetic"
    assert reason.startswith("empathetic: pass_rate +0.57 (95% CI +")
    assert reason.endswith("p<0.001 (Holm)")

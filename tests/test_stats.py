"""Statistics: aggregates, intervals, tests, Holm, the winner (SPEC 5 and 6).

Expected values are worked out by hand in the comments (sign patterns
counted, binomial sums), or from tables (Student's t quantiles)."""

from __future__ import annotations

import math
import random

import pytest

from pytest_promptab.analysis import design, paired
from pytest_promptab.analysis.stats import (
    aggregate,
    case_means,
    choose_winner,
    compare_variants,
    describe,
    holm,
    mean_of_cases,
    nearest_rank,
    pass_rate_interval,
    variant_interval,
    wilson_interval,
)
from pytest_promptab.analysis.summary import Comparison, VariantSummary
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
    assert d["p99"] == 9.0  # ceil(7.92)-1 = 7 -> 8th


def test_describe_p99_nearest_rank() -> None:
    # the vectors configurable-agents' calculate_percentiles gives (format notes, section 8)
    assert describe(list(range(1, 101)))["p99"] == 99.0
    assert describe(list(range(1, 11)))["p99"] == 10.0
    assert describe(list(range(1, 21)))["p99"] == 20.0
    assert describe([5, 1, 3])["p99"] == 5.0
    assert describe(list(range(1, 201)))["p99"] == 198.0  # ceil(198)-1 = 197 -> 198th, not the maximum


def test_describe_one_value_and_empty() -> None:
    assert describe([3.5]) == {"n": 1, "mean": 3.5, "std": 0.0, "min": 3.5, "max": 3.5, "p50": 3.5, "p95": 3.5,
                             "p99": 3.5}
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


# ---------------------------------------------------------------- sign-flip test


def _brute_p(d: list[float], delta: float = 0.0) -> float:
    """Every sign pattern written out: the share with |sum| >= the observed one."""
    import itertools

    x = [v - delta for v in d]
    observed = abs(sum(x))
    hits = sum(abs(sum(s * v for s, v in zip(signs, x))) >= observed - 1e-9 for signs in itertools.product((1, -1), repeat=len(x)))
    return hits / 2 ** len(x)


def test_sign_flip_counts_sign_patterns() -> None:
    # all three positive: only +++ and --- reach |sum| = 1.2 -> 2/8
    assert paired.paired_test([0.2, 0.4, 0.6], "cases")[0].p_value == approx(2 / 8)
    # d = .1 .2 .3 .4 .5 -.1, sum 1.4: a flipped set F gives 1.4 - 2 sum(F); |.| >= 1.4 iff
    # sum(F) <= 0 or >= 1.4: F in {}, {-.1}, {.1,-.1} and their complements -> 6/64 (ties count)
    assert paired.paired_test([0.1, 0.2, 0.3, 0.4, 0.5, -0.1], "cases")[0].p_value == approx(6 / 64)
    # no difference at all
    assert paired.paired_test([0.0, 0.0, 0.0], "cases")[0].p_value == 1.0


def test_sign_flip_meet_in_the_middle_matches_brute_force() -> None:
    rng = random.Random(3)
    for k in (1, 2, 5, 9):
        d = [round(rng.uniform(-1, 1), 1) for _ in range(k)]
        flip = paired.SignFlip.of(d)
        assert flip.exact
        for delta in (0.0, 0.15, -0.3):
            assert flip.p_value(delta) == approx(_brute_p(d, delta)), (d, delta)


def test_sign_flip_monte_carlo_beyond_20_units_is_deterministic() -> None:
    d = [0.1 * ((i % 5) - 1) for i in range(30)]
    first, second = paired.SignFlip.of(d), paired.SignFlip.of(d)
    assert not first.exact
    assert first.p_value() == second.p_value()
    assert 1 / 20_000 <= first.p_value() <= 1
    assert paired.paired_test([1.0] * 25, "runs")[0].p_value == approx(1 / 20_000)


def test_interval_is_the_set_of_shifts_the_test_keeps() -> None:
    d = [0.2, 0.4, 0.0, 0.6, 0.2, 0.4, 0.2, 0.0]
    flip = paired.SignFlip.of(d)
    low, high = flip.interval(0.05)
    assert low is not None and high is not None and low < flip.mean < high
    # a hair inside the bounds is kept (p >= 0.05), a hair outside rejected: by brute force
    for inside, outside in ((low + 1e-6, low - 1e-6), (high - 1e-6, high + 1e-6)):
        assert _brute_p(d, inside) >= 0.05
        assert _brute_p(d, outside) < 0.05
    # here the bounds are subset means (Hartigan 1969): 1/15 and 0.4
    assert (low, high) == (approx(1 / 15, abs=1e-6), approx(0.4, abs=1e-6))
    # at a level the design never reaches, no shift is rejected: no bound
    assert paired.SignFlip.of([0.2, 0.4]).interval(0.05) == (None, None)
    # no spread: only the observed difference is compatible
    assert paired.SignFlip.of([0.4] * 8).interval(0.05) == (0.4, 0.4)


def test_holm_levels() -> None:
    # sorted .01 < .05/2 (rejected at .025), .04 < .05/1 (rejected at .05)
    assert paired.holm_levels([0.04, 0.01], 0.05) == approx([0.05, 0.025])
    # .03 >= .025: Holm stops at the first; both are judged at .025
    assert paired.holm_levels([0.03, 0.04], 0.05) == approx([0.025, 0.025])
    assert paired.holm_levels([0.01, 0.02, 0.04], 0.05) == approx([0.05 / 3, 0.025, 0.05])
    assert paired.holm_levels([0.2], 0.05) == [0.05]


def test_units_needed_and_the_smallest_p() -> None:
    # the smallest p with k units is 2/2**k; Holm multiplies it by the number of challengers
    assert design.min_p_value(6) == 2 / 64
    assert design.units_needed(1, 0.05) == 6  # 2/32 = .0625 >= .05; 2/64 = .03125 < .05
    assert design.units_needed(2, 0.05) == 7  # 2 * 2/64 = .0625 (the example); 2 * 2/128 < .05
    assert design.units_needed(3, 0.05) == 7  # 3 * 2/128 = .047 < .05
    assert design.units_needed(1, 0.01) == 8  # 2/128 = .0156; 2/256 = .0078
    assert design.too_few_message(7, 5, 2, 0.05) is None
    text = design.too_few_message(6, 5, 2, 0.05)
    assert text is not None and "smallest possible adjusted p = 0.0625" in text and "at least 7 cases" in text
    one = design.too_few_message(1, 5, 1, 0.05)
    assert one is not None and one.startswith("too few runs") and "at least 6 runs" in one


def test_detectable_difference_paired_t() -> None:
    # (t(.975, 9) + t(.80, 9)) * sd / sqrt(10) = (2.262157 + 0.883404) * 0.2 / 3.162278 = 0.198944
    assert paired.detectable_difference(10, 0.2, 0.05, 1) == approx(0.198944, abs=1e-5)
    # two challengers: the first Holm step tests at .025, t(.9875, 9) = 2.685011
    assert paired.detectable_difference(10, 0.2, 0.05, 2) == approx((2.685011 + 0.883404) * 0.2 / 10**0.5, abs=1e-5)
    assert paired.detectable_difference(5, 0.2, 0.05, 1) is None  # 5 cases can never decide


# ---------------------------------------------------------------- case-level pass rate


def test_case_means_and_mean_of_cases() -> None:
    runs = case_runs("v", [(5, 5), (1, 2)])  # 100% and 50%: every case weighs the same
    assert case_means(runs, "passed") == {"c0": 1.0, "c1": 0.5}
    assert mean_of_cases(runs, "passed") == 0.75  # the pooled rate would be 6/7


def test_pass_rate_interval_over_cases() -> None:
    # case rates 1.0, 0.6, 0.8: mean .8, sd .2, t(.975, 2) = 4.302653
    # -> .8 -/+ 4.302653 * .2 / sqrt(3) = .8 -/+ .496827 -> [.303173, 1.296827], clipped at 1;
    # the Wilson interval of the 12/15 pooled runs [.5481, .9295] lies inside it
    low, high = pass_rate_interval(case_runs("v", [(5, 5), (3, 5), (4, 5)]))  # type: ignore[misc]
    assert low == approx(0.303173, abs=1e-5) and high == 1.0
    # every case at 100%: the t interval has no width; the pooled Wilson interval is the floor
    assert pass_rate_interval(case_runs("v", [(5, 5)] * 3)) == approx(wilson_interval(15, 15))
    # a single case: Wilson over its runs
    assert pass_rate_interval(case_runs("v", [(8, 10)])) == approx(wilson_interval(8, 10))


def test_variant_interval_at_a_gate_confidence() -> None:
    v = VariantSummary(
        name="v", role="challenger", runs=15, failed_runs=0, aggregates={}, pass_rate=0.8, pass_rate_ci=None,
        case_means={"a": {"passed": 1.0}, "b": {"passed": 0.6}, "c": {"passed": 0.8}}, passed_runs=12,
    )  # fmt: skip
    assert variant_interval(v, "pass_rate", 0.95)[0] == approx(0.303173, abs=1e-5)  # type: ignore[index]
    # 80%: t(.90, 2) = 1.885618 -> .8 - 1.885618 * .2 / sqrt(3) = .582265 (Wilson 80%: .6581 is inside)
    assert variant_interval(v, "pass_rate", 0.80)[0] == approx(0.582265, abs=1e-5)  # type: ignore[index]


# ---------------------------------------------------------------- compare_variants (the case is the unit)


def case_runs(variant: str, rates: list[tuple[int, int]]) -> list[RunRecord]:
    """Runs of ``variant``: case i has ``rates[i] = (passed, runs)``."""
    out = []
    for index, (passed, n) in enumerate(rates):
        for i in range(n):
            out.append(RunRecord(file="wf.yaml", ab_test="t", variant=variant, case=f"c{index}", run=i + 1,
                                 status="passed", metrics={"passed": 1.0 if i < passed else 0.0}))  # fmt: skip
    return out


def test_compare_variants_pairs_cases_and_tests_by_sign_flip() -> None:
    # 8 cases x 5 runs; the challenger is better on every case: per-case differences
    # +0.4,+0.2,+0.2,+0.6,+0.2,+0.4,+0.2,+0.4 -> only all-+ and all-- are as extreme: p = 2/256
    base = case_runs("baseline", [(2, 5), (3, 5), (1, 5), (0, 5), (4, 5), (2, 5), (3, 5), (1, 5)])
    good = case_runs("good", [(4, 5), (4, 5), (2, 5), (3, 5), (5, 5), (4, 5), (4, 5), (3, 5)])
    c = compare_variants(base, {"good": good}, ObjectiveConfig(), alpha=0.05)["good"]
    assert (c.unit, c.units) == ("cases", 8)
    assert c.diff == approx(2.6 / 8)
    assert c.baseline_value == approx(16 / 40) and c.value == approx(29 / 40)
    assert c.p_value == approx(2 / 256) and c.p_adjusted == c.p_value
    assert c.test == "sign-flip permutation on 8 paired cases (exact)"
    assert c.significant and c.better and c.ci_level == approx(0.95)
    assert c.ci_low is not None and c.ci_high is not None and 0 < c.ci_low < c.diff < c.ci_high


def test_runs_of_one_case_are_not_new_inputs() -> None:
    # pseudo-replication: 2 cases x 50 runs, 20% -> 80% on both. Pooled over runs
    # (Fisher) this is p < 1e-15; with the case as the unit, 2 cases can give no p below 2/4.
    base = case_runs("baseline", [(10, 50), (10, 50)])
    better = case_runs("better", [(40, 50), (40, 50)])
    c = compare_variants(base, {"better": better}, ObjectiveConfig(), alpha=0.05)["better"]
    assert c.diff == approx(0.6) and c.units == 2
    assert c.p_value == approx(0.5)
    assert not c.significant and not c.better
    assert c.ci_low is not None and c.ci_high is not None and c.ci_low <= 0 <= c.ci_high


def test_a_single_case_pairs_runs_by_number_mcnemar() -> None:
    # one case: runs are the unit. Paired by run number: 7 runs only the challenger
    # passes, 1 only the baseline, 4 ties. Exact McNemar: 2 * P(X <= 1 | 8, 1/2) = 2 * 9/256
    base = [run("baseline", i, passed=p) for i, p in enumerate([1, 0, 0, 0, 0, 0, 0, 0, 1, 1, 0, 0], 1)]
    chal = [run("v", i, passed=p) for i, p in enumerate([0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0], 1)]
    c = compare_variants(base, {"v": chal}, ObjectiveConfig(), alpha=0.05)["v"]
    assert (c.unit, c.units) == ("runs", 12)
    assert c.p_value == approx(18 / 256)
    assert c.diff == approx(6 / 12)


def test_compare_variants_holm_and_intervals_at_the_holm_level() -> None:
    # 8 cases; "good" wins on all (p = 2/256), "meh" on 6 of 8 with a loss on 2
    base = case_runs("baseline", [(2, 5)] * 8)
    good = case_runs("good", [(4, 5)] * 8)
    meh = case_runs("meh", [(3, 5)] * 6 + [(1, 5)] * 2)
    out = compare_variants(base, {"good": good, "meh": meh}, ObjectiveConfig(), alpha=0.05)
    g, m = out["good"], out["meh"]
    assert list(out) == ["good", "meh"]
    assert g.p_adjusted == approx(2 * g.p_value)
    assert m.p_adjusted == approx(max(2 * g.p_value, m.p_value))
    # good is rejected first at 0.05/2: its interval is at 97.5%; meh (not rejected) at 0.05/1
    assert g.significant and g.ci_level == approx(0.975)
    assert not m.significant and m.ci_level == approx(0.95)
    assert g.ci_low > 0 and m.ci_low <= 0 <= m.ci_high  # type: ignore[operator]


def test_intervals_agree_with_the_adjusted_decision() -> None:
    rng = random.Random(7)
    for _ in range(60):
        k = rng.randint(3, 12)
        base = case_runs("baseline", [(rng.randint(0, 5), 5) for _ in range(k)])
        challengers = {
            name: case_runs(name, [(rng.randint(0, 5), 5) for _ in range(k)]) for name in ("a", "b", "c")
        }
        for c in compare_variants(base, challengers, ObjectiveConfig(), alpha=0.1).values():
            assert c.ci_low is not None and c.ci_high is not None
            excludes_zero = c.ci_low > 0 or c.ci_high < 0
            assert excludes_zero == c.significant, c


def test_compare_variants_continuous_goal_min() -> None:
    base = [RunRecord(file="f", ab_test="t", variant="baseline", case=f"c{i}", run=1, status="passed",
                      metrics={"latency_ms": 200.0 + i}) for i in range(8)]  # fmt: skip
    fast = [RunRecord(file="f", ab_test="t", variant="fast", case=f"c{i}", run=1, status="passed",
                      metrics={"latency_ms": 100.0 + 2 * i}) for i in range(8)]  # fmt: skip
    out = compare_variants(base, {"fast": fast}, ObjectiveConfig(metric="latency_ms.mean", goal="min"), alpha=0.05)
    c = out["fast"]
    assert c.metric == "latency_ms"
    assert c.diff == approx(-100.0 + 3.5)
    assert c.p_value == approx(2 / 256)
    assert c.ci_low is not None and c.ci_high is not None and c.ci_low < c.diff < c.ci_high < 0
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
    # empathetic is rejected first by Holm, at 0.05/2: its interval is at 97.5%
    assert reason.startswith("empathetic: pass_rate +0.57 (97.5% CI +")
    assert reason.endswith("p<0.001 (Holm)")

"""Regression on per-run numbers is paired on the run number when both
sessions ran the same run numbers of every case (issue 13 point 3), and
unpaired otherwise; yes/no outcomes stay stratified by case."""

from __future__ import annotations

import pytest

from pytest_promptab.analysis.regression import compare_metric
from pytest_promptab.analysis.summary import ABTestSummary, VariantSummary
from pytest_promptab.analysis.within_cases import _paired_means, _paired_t
from pytest_promptab.run.records import RunRecord


def _ab(latencies: dict[str, list[float]], *, first_run: int = 1) -> ABTestSummary:
    runs = [
        RunRecord("f.yaml", "ab", "baseline", case, first_run + i, "passed",
                  metrics={"passed": 1.0, "latency_ms": value})
        for case, values in latencies.items() for i, value in enumerate(values)
    ]
    variant = VariantSummary("baseline", "baseline", len(runs), 0, {}, None, None, model="m", prompts={"a": "p"})
    return ABTestSummary("f.yaml", "w", "ab", "f.yaml::ab", "baseline", "pass_rate", "max", 0.05, [variant], runs=runs)


SPREAD = [100.0, 250.0, 400.0, 550.0, 700.0, 850.0]  # run k is slow or fast in both sessions (e.g. its seed)


def test_pairing_on_run_number_sees_a_shift_the_spread_hides() -> None:
    before = _ab({"a": SPREAD, "b": SPREAD})
    after = _ab({"a": [x + 20 for x in SPREAD], "b": [x + 20 for x in SPREAD]})
    change = compare_metric(after, "baseline", before, "baseline", "latency_ms.mean", 0.05)
    assert change.diff == pytest.approx(20.0)
    assert change.test.startswith("paired by run number") and change.significant
    assert [c["case"] for c in change.cases_worse] == ["a", "b"]


def test_different_run_numbers_are_compared_unpaired() -> None:
    before = _ab({"a": SPREAD, "b": SPREAD})
    after = _ab({"a": [x + 20 for x in SPREAD], "b": [x + 20 for x in SPREAD]}, first_run=2)  # runs 2..7
    change = compare_metric(after, "baseline", before, "baseline", "latency_ms.mean", 0.05)
    assert change.diff == pytest.approx(20.0)
    assert change.test.startswith("stratified t over cases (within-case variances") and not change.significant
    assert change.cases_worse == []


def test_pass_rate_is_not_paired() -> None:
    before, after = _ab({"a": SPREAD}), _ab({"a": SPREAD})
    change = compare_metric(after, "baseline", before, "baseline", "pass_rate", 0.05)
    assert change.test == "Cochran-Mantel-Haenszel over cases"


def test_paired_tests_by_hand() -> None:
    # one case, differences 1, 2, 3: mean 2, sd 1, t = 2 / (1 / sqrt 3) = 3.464, df 2
    from scipy.stats import t

    assert _paired_t([1.0, 2.0, 3.0]) == pytest.approx(2 * t.sf(2 * 3 ** 0.5, 2))
    assert _paired_t([5.0, 5.0]) == 0.0 and _paired_t([0.0, 0.0]) == 1.0 and _paired_t([1.0]) is None
    # two cases: t = mean of case means / (sqrt(sum var_c / n_c) / k), Welch-Satterthwaite df:
    # x: var 2, n 2 -> term 1.0 (df 1); y: var 0 -> term 0; df = 1^2 / (1^2 / 1) = 1
    import math

    p, test = _paired_means({"x": [1.0, 3.0], "y": [2.0, 2.0]})
    se = math.sqrt(2.0 / 2 + 0.0) / 2
    assert p == pytest.approx(2 * t.sf(2.0 / se, 1)) and "stratified t" in test
    p1, test1 = _paired_means({"x": [1.0], "y": [3.0], "z": [2.0]})  # one run per case: t over the cases
    assert "one run per case" in test1 and p1 is not None


def test_few_runs_per_case_do_not_make_noise_significant() -> None:
    # no change at all, 1 case x 2 runs and 2 cases x 3 runs: at alpha 0.05 a
    # test keeps its promise near 5%; a normal tail on variances from 2-3 runs
    # called 30% and 12% significant
    import random

    from benchmarks.bench_regression_fpr import false_positives

    rng = random.Random(7)
    for cases, runs in [(1, 2), (2, 3)]:
        paired, unpaired = false_positives(cases, runs, 1000, rng)
        assert paired < 0.075 and unpaired < 0.075, (cases, runs, paired, unpaired)

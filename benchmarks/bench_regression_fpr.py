"""Benchmark: how often a regression comparison of a number per run calls
"significant" when nothing changed (the false-positive rate at alpha 0.05).

Both within-case tests of :mod:`pytest_promptab.analysis.within_cases`, on
normal noise with no difference between the sessions: paired on the run
number (:func:`_paired_means`) and unpaired (:func:`_stratified_means`), for
suites of few cases and few runs, where a normal tail on variances estimated
from 2-3 runs would be far too small. A rate at or below 0.05 is the promise.

    python benchmarks/bench_regression_fpr.py [--trials 4000]
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pytest_promptab.analysis.within_cases import _paired_means, _stratified_means  # noqa: E402


def false_positives(cases: int, runs: int, trials: int, rng: random.Random) -> tuple[float, float]:
    """The share of ``trials`` no-change comparisons of ``cases`` x ``runs``
    called significant at 0.05: (paired, unpaired)."""
    paired = unpaired = 0
    for _ in range(trials):
        diffs = {f"c{i}": [rng.gauss(0, 1) for _ in range(runs)] for i in range(cases)}
        p, _ = _paired_means(diffs)
        paired += p is not None and p < 0.05
        before = {f"c{i}": [rng.gauss(0, 1) for _ in range(runs)] for i in range(cases)}
        after = {f"c{i}": [rng.gauss(0, 1) for _ in range(runs)] for i in range(cases)}
        p, _ = _stratified_means(before, after)
        unpaired += p is not None and p < 0.05
    return paired / trials, unpaired / trials


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=4000)
    trials = parser.parse_args().trials
    rng = random.Random(1)
    print("| cases | runs | paired false positives | unpaired false positives |")
    print("|---|---|---|---|")
    for cases, runs in [(1, 2), (1, 3), (2, 3), (3, 3), (5, 5), (10, 3)]:
        paired, unpaired = false_positives(cases, runs, trials, rng)
        print(f"| {cases} | {runs} | {paired:.3f} | {unpaired:.3f} |")


if __name__ == "__main__":
    main()

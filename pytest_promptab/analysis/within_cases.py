"""The within-case tests of a regression question (SPEC 12): this session
against a reference, the cases as strata, never as the sampling unit
(:mod:`pytest_promptab.analysis.regression` says which test serves which metric).

- yes/no per run (pass rate, error rate): :func:`_cmh` over the cases,
  :func:`_fisher` per case;
- a number per run, unpaired: :func:`_stratified_means` over the cases (a
  t test with Welch-Satterthwaite degrees of freedom, :func:`_stratified_t`),
  :func:`_welch` per case;
- a number per run, paired on the run number (both sessions ran the same run
  numbers of each case): :func:`_paired_means` over the cases, from the
  within-case differences run k - run k, :func:`_paired_t` per case;
- :func:`holm_by_key` (Holm) over the cases, to name the ones that changed.

Pure functions of plain lists; scipy only where a distribution is needed.
"""

from __future__ import annotations

import math

from .stats import describe, holm


def _stat(values: list[float], stat: str) -> float | None:
    """One of :func:`~.stats.describe`'s statistics of ``values`` (the table's
    own: the same nearest rank, the same sample std); None when empty."""
    described = describe(values)
    return None if not described["n"] else described.get(stat)


def _cmh(before: dict[str, list[float]], after: dict[str, list[float]]) -> float | None:
    """Two-sided CMH test (with continuity correction) over 2x2 tables per case."""
    num = var = 0.0
    for c in after:
        x1, n1 = sum(after[c]), len(after[c])
        x0, n0 = sum(before[c]), len(before[c])
        n, m = n1 + n0, x1 + x0
        if n < 2 or m in (0, n):
            continue  # no variation in this case: it carries no evidence
        num += x1 - n1 * m / n
        var += n1 * n0 * m * (n - m) / (n * n * (n - 1))
    if var <= 0:
        return 1.0 if num == 0 else None
    stat = max(abs(num) - 0.5, 0.0) ** 2 / var
    return math.erfc(math.sqrt(stat / 2))  # the chi-square(1) tail


def _fisher(before: list[float], after: list[float]) -> float | None:
    x0, x1 = sum(before), sum(after)
    if x0 / len(before) == x1 / len(after):
        return 1.0
    from scipy.stats import fisher_exact

    table = [[int(x1), len(after) - int(x1)], [int(x0), len(before) - int(x0)]]
    return float(fisher_exact(table)[1])


def _welch(before: list[float], after: list[float]) -> float | None:
    if len(before) < 2 or len(after) < 2:
        return None
    from scipy.special import (
        stdtr,  # Student's t CDF: a ufunc, far cheaper than scipy.stats per case
    )

    sa, sb = _stat(after, "std") or 0.0, _stat(before, "std") or 0.0
    na, nb = len(after), len(before)
    diff = sum(after) / na - sum(before) / nb
    va, vb = sa * sa / na, sb * sb / nb
    if va + vb == 0:
        return 1.0 if diff == 0 else 0.0
    t = diff / math.sqrt(va + vb)
    df = (va + vb) ** 2 / ((va * va / (na - 1) if na > 1 else 0) + (vb * vb / (nb - 1) if nb > 1 else 0))
    return float(2 * stdtr(df, -abs(t)))


def _stratified_means(before: dict[str, list[float]], after: dict[str, list[float]]) -> tuple[float | None, str]:
    diffs, parts = [], []
    for c in after:
        a, b = after[c], before[c]
        diffs.append(sum(a) / len(a) - sum(b) / len(b))
        if len(a) >= 2 and len(b) >= 2:
            parts += [((_stat(a, "std") or 0) ** 2 / len(a), len(a) - 1), ((_stat(b, "std") or 0) ** 2 / len(b), len(b) - 1)]
    k = len(diffs)
    mean = sum(diffs) / k
    if len(parts) == 2 * k:
        p = _stratified_t(mean, k, parts)
        if p is None:
            return (1.0 if mean == 0 else 0.0), "within cases (no run-to-run variation)"
        return p, "stratified t over cases (within-case variances, Welch-Satterthwaite df)"
    if k >= 2 and any(d != diffs[0] for d in diffs):
        from scipy.stats import ttest_1samp

        return float(ttest_1samp(diffs, 0.0).pvalue), "paired t over case means (one run per case)"
    return None, "too few runs to test"


def _stratified_t(mean: float, k: int, parts: list[tuple[float, int]]) -> float | None:
    """Two-sided p of "the mean over ``k`` cases of the within-case
    differences is 0": ``parts`` are each case's variance terms (``s^2 / n``)
    with their degrees of freedom, the standard error ``sqrt(sum) / k``, and
    Welch-Satterthwaite degrees of freedom, so that few runs per case give
    the wide tails they should (a normal tail is too small then). None
    when there is no variation at all."""
    total = sum(v for v, _ in parts)
    if total == 0:
        return None
    df = total * total / sum(v * v / d for v, d in parts if v > 0)
    from scipy.special import stdtr

    return float(2 * stdtr(df, -abs(mean) / (math.sqrt(total) / k)))


def holm_by_key(pvalues: dict[str, float]) -> dict[str, float]:
    """:func:`~.stats.holm` over a mapping's values."""
    return dict(zip(pvalues, holm(list(pvalues.values()))))


def _paired_means(diffs: dict[str, list[float]]) -> tuple[float | None, str]:
    """Per case the differences (after - before) of the runs paired by run
    number: the mean of the cases' mean differences, with a stratified t test
    from each case's variance of its differences; with a single pair per case,
    the paired t test over the cases' differences."""
    cases = [d for d in diffs.values() if d]
    k = len(cases)
    if not k:
        return None, "no paired runs"
    means = [sum(d) / len(d) for d in cases]
    mean = sum(means) / k
    if all(len(d) >= 2 for d in cases):
        p = _stratified_t(mean, k, [((_stat(d, "std") or 0.0) ** 2 / len(d), len(d) - 1) for d in cases])
        if p is None:
            return (1.0 if mean == 0 else 0.0), "paired by run number, stratified by case (no variation in the differences)"
        return p, "paired by run number, stratified t over cases"
    if k >= 2 and any(m != means[0] for m in means):
        from scipy.stats import ttest_1samp

        return float(ttest_1samp(means, 0.0).pvalue), "paired t over case differences (one run per case)"
    return None, "too few runs to test"


def _paired_t(diffs: list[float]) -> float | None:
    """Paired t test of one case's differences (run k after - run k before)."""
    n = len(diffs)
    if n < 2:
        return None
    mean = sum(diffs) / n
    sd = _stat(diffs, "std") or 0.0
    if sd == 0:
        return 1.0 if mean == 0 else 0.0
    from scipy.special import stdtr

    return float(2 * stdtr(n - 1, -abs(mean / (sd / math.sqrt(n)))))

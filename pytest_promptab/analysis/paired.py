"""Paired comparisons with the case as the unit (SPEC section 6).

A challenger and the baseline ran on the same cases. For each case, the
difference of the run-means (challenger - baseline) is one unit of evidence;
the runs of a case only make that case's difference more precise. With a
single case the runs are the unit instead, paired by run number (the same
seed for both variants), and the claim is about that one input.

The test is the sign-flip permutation test on the mean of the differences:
under "the variant makes no difference", the label of each pair is
exchangeable, so every pattern of signs on the differences is equally likely.
It is exact (enumerated) up to :data:`EXACT_MAX` units, and Monte Carlo with a
fixed seed beyond (deterministic: the same data give the same p-value). On
0/1 outcomes paired by run it is McNemar's exact test.

The interval of the mean difference is the set of shifts ``delta`` that the
same test does not reject at the level Holm applied to the challenger
(:func:`holm_levels`), so an interval excludes 0 exactly when the adjusted
decision is "significant".
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .design import EXACT_MAX, MONTE_CARLO_DRAWS, min_p_value

MONTE_CARLO_SEED = 20_241_111
_MC_BUDGET = 200_000_000
"""Draws x units at most for Monte Carlo (runs as units can number 100000)."""


def _sign_matrix(k: int) -> np.ndarray:
    """Every sign pattern of ``k`` units, one per row (2**k x k, values +-1)."""
    codes = np.arange(2**k, dtype=np.int64)[:, None]
    return ((codes >> np.arange(k, dtype=np.int64)) & 1).astype(np.float64) * 2.0 - 1.0


@dataclass
class SignFlip:
    """The sign-flip distribution of one set of differences.

    ``a[j]`` is ``sum(s_j * d)`` and ``b[j]`` is ``sum(s_j)`` for sign pattern
    ``j``, so the statistic after a shift ``delta`` is ``a - delta * b``
    without redrawing anything."""

    diffs: np.ndarray
    a: np.ndarray
    b: np.ndarray
    exact: bool

    @classmethod
    def of(cls, diffs: Sequence[float]) -> SignFlip:
        d = np.sort(np.asarray(list(diffs), dtype=np.float64))
        k = len(d)
        if k == 0:
            raise ValueError("a sign-flip test needs at least one difference")
        if k <= EXACT_MAX:
            low, high = k // 2, k - k // 2
            s_low, s_high = _sign_matrix(low), _sign_matrix(high)
            a = (s_low @ d[:low])[:, None] + (s_high @ d[low:])[None, :]
            b = s_low.sum(axis=1)[:, None] + s_high.sum(axis=1)[None, :]
            return cls(d, a.ravel(), b.ravel(), exact=True)
        draws = max(1_999, min(MONTE_CARLO_DRAWS, _MC_BUDGET // k))
        rng = np.random.default_rng(MONTE_CARLO_SEED)
        a = np.empty(draws)
        b = np.empty(draws)
        chunk = max(1, 2_000_000 // k)
        for start in range(0, draws, chunk):
            stop = min(draws, start + chunk)
            signs = rng.integers(0, 2, size=(stop - start, k)).astype(np.float64) * 2.0 - 1.0
            a[start:stop] = signs @ d
            b[start:stop] = signs.sum(axis=1)
        return cls(d, a, b, exact=False)

    @property
    def k(self) -> int:
        return len(self.diffs)

    @property
    def mean(self) -> float:
        return math.fsum(self.diffs.tolist()) / self.k

    def p_value(self, delta: float = 0.0) -> float:
        """Two-sided p-value of "the mean difference is ``delta``"."""
        shifted_sum = math.fsum(self.diffs.tolist()) - self.k * delta
        observed = abs(shifted_sum)
        tol = 1e-9 * (float(np.abs(self.diffs).sum()) + self.k * abs(delta)) + 1e-12
        hits = int(np.count_nonzero(np.abs(self.a - delta * self.b) >= observed - tol))
        if self.exact:
            return hits / len(self.a)
        return (1 + hits) / (len(self.a) + 1)

    def smallest_p(self) -> float:
        return min_p_value(self.k) if self.exact else 1 / (len(self.a) + 1)

    def interval(self, level: float) -> tuple[float | None, float | None]:
        """The shifts not rejected at ``level`` (reject when p < level):
        ``(low, high)``; a side is ``None`` when no shift is ever rejected
        (too few units for this level)."""
        centre = self.mean
        if self.smallest_p() >= level:
            return (None, None)
        if np.all(self.diffs == self.diffs[0]):
            return (centre, centre)  # no spread at all: only the observed shift is compatible
        spread = float(self.diffs[-1] - self.diffs[0])
        return (self._bound(centre, -1.0, spread, level), self._bound(centre, 1.0, spread, level))

    def _bound(self, centre: float, direction: float, spread: float, level: float) -> float | None:
        inside, step = centre, max(spread, 1e-12)
        outside = centre + direction * step
        for _ in range(80):
            if self.p_value(outside) < level:
                break
            inside, step = outside, step * 2
            outside = centre + direction * step
        else:
            return None
        for _ in range(45):
            mid = (inside + outside) / 2
            if mid in (inside, outside):
                break
            if self.p_value(mid) < level:
                outside = mid
            else:
                inside = mid
        return inside


def holm_levels(p_values: Sequence[float], alpha: float) -> list[float]:
    """The level Holm tested each hypothesis at, in the input order.

    Sorted ascending, the i-th (from 0) is rejected at ``alpha / (m - i)``
    while every earlier one was; the first one not rejected stops the
    procedure, and it and all after it get its level ``alpha / (m - s)`` (s
    rejected). Inverting each test at its level gives intervals that exclude
    0 exactly for the rejected hypotheses."""
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    levels = [0.0] * m
    stopped: float | None = None
    for rank, i in enumerate(order):
        level = alpha / (m - rank)
        if stopped is None and p_values[i] < level:
            levels[i] = level
        else:
            stopped = stopped if stopped is not None else level
            levels[i] = stopped
    return levels


@dataclass(frozen=True)
class PairedResult:
    """A challenger against the baseline: the mean paired difference."""

    diff: float
    p_value: float
    units: int
    unit: str
    """``cases`` or ``runs``."""
    exact: bool
    sd: float
    """Sample standard deviation of the differences (0.0 for one unit)."""


def paired_test(diffs: Sequence[float], unit: str) -> tuple[PairedResult, SignFlip]:
    flip = SignFlip.of(diffs)
    d = flip.diffs
    sd = float(np.std(d, ddof=1)) if len(d) > 1 else 0.0
    p = 1.0 if np.all(d == 0) else min(1.0, flip.p_value(0.0))
    return PairedResult(flip.mean, p, flip.k, unit, flip.exact, sd), flip


def method_name(result: PairedResult) -> str:
    how = "exact" if result.exact else f"Monte Carlo, {MONTE_CARLO_DRAWS} draws, fixed seed"
    return f"sign-flip permutation on {result.units} paired {result.unit} ({how})"


def detectable_difference(units: int, sd: float, alpha: float, challengers: int, power: float = 0.8) -> float | None:
    """The smallest true mean difference this design detects with ``power``
    at ``alpha`` (Bonferroni level ``alpha / challengers``, the first Holm
    step), by the paired t approximation: ``(t_{1-a/2} + t_power) * sd / sqrt(n)``.
    ``None`` when the design can never reach significance."""
    from .quantiles import t_ppf

    m = max(1, challengers)
    if units < 2 or m * min_p_value(units) >= alpha:
        return None
    level = alpha / m
    df = units - 1
    factor = t_ppf(1 - level / 2, df) + t_ppf(power, df)
    return factor * sd / math.sqrt(units)

"""Quantiles of the normal and Student's t distributions, in pure Python.

The statistics need only ``norm.ppf`` and ``t.ppf`` from scipy; importing
``scipy.special`` for them costs about 0.2 s and 26 MB after a session's last
item. Here:

- :func:`norm_ppf` is :meth:`statistics.NormalDist.inv_cdf` (Wichura's
  AS 241, accurate to about 1e-16);
- :func:`t_ppf` solves ``P(T > t) = p`` for the upper tail ``p`` by Newton's
  method inside a bracket, from the Cornish-Fisher start, with the tail
  computed as the regularized incomplete beta function ``I_x(df/2, 1/2) / 2``
  (``x = df / (df + t^2)``) by its continued fraction (Lentz). It matches
  ``scipy.special.stdtrit`` to about 1e-12 relative (tests/test_stats.py).
"""

from __future__ import annotations

import math
from statistics import NormalDist

__all__ = ["norm_ppf", "t_ppf"]

_NORMAL = NormalDist()
_EPS = 1e-15


def norm_ppf(q: float) -> float:
    """The ``q`` quantile of the standard normal distribution (-inf at 0,
    inf at 1, NaN outside [0, 1])."""
    if not 0 < q < 1:
        return -math.inf if q == 0 else math.inf if q == 1 else math.nan
    return _NORMAL.inv_cdf(q)


def t_ppf(q: float, df: float) -> float:
    """The ``q`` quantile of Student's t distribution with ``df`` > 0
    degrees of freedom (NaN for an invalid ``df`` or ``q``)."""
    if not (df > 0) or not 0 <= q <= 1 or math.isnan(q):
        return math.nan
    if q == 0 or q == 1:
        return -math.inf if q == 0 else math.inf
    if q == 0.5:
        return 0.0
    sign, p = (1.0, 1.0 - q) if q > 0.5 else (-1.0, q)  # p: the upper tail of |t|, below 0.5
    if math.isinf(df):
        return sign * -norm_ppf(p)
    if df == 1:  # Cauchy
        return sign / math.tan(math.pi * p)
    if df == 2:
        return sign * (1 - 2 * p) * math.sqrt(2 / (4 * p * (1 - p)))
    return sign * _upper_t(p, df)


def _upper_t(p: float, df: float) -> float:
    """The t > 0 whose upper tail is ``p`` (0 < p < 0.5): Newton's method on
    ``log P(T > t) = log p`` in ``log t`` (nearly linear there, even far in
    the tail), kept inside a bracket."""
    z = -norm_ppf(p)
    if df >= 3000:  # the expansion's error is O(z^11 / df^5); the beta function's lgamma terms lose digits here
        return _cornish_fisher(z, df)
    target = math.log(p)
    log_density_norm = math.lgamma((df + 1) / 2) - math.lgamma(df / 2) - 0.5 * math.log(df * math.pi)
    low, high = -math.inf, math.inf  # in log t
    u = math.log(max(_cornish_fisher(z, df), z, 1e-8))
    for _ in range(100):
        t = math.exp(u)
        log_tail = _log_upper_tail(t, df)
        excess = log_tail - target  # decreasing in u
        if excess == 0:
            return t
        if excess > 0:
            low = u
        else:
            high = u
        log_density = log_density_norm - (df + 1) / 2 * math.log1p(t * t / df)
        slope = math.exp(min(u + log_density - log_tail, 700.0))  # -d log P(T > t) / d log t
        new = u + excess / slope if slope > 0 else math.inf
        if not (low < new < high):  # Newton left the bracket: bisect it, or widen it
            new = (low + high) / 2 if math.isfinite(low) and math.isfinite(high) else u + (1.0 if excess > 0 else -1.0)
        new = min(new, 700.0)  # t below 1e304: for p above about 1e-300 even at df 1
        if abs(new - u) <= _EPS:
            return math.exp(new)
        u = new
    return math.exp(u)


def _cornish_fisher(z: float, df: float) -> float:
    """The t quantile's expansion in 1/df around the normal quantile ``z``
    (Abramowitz and Stegun 26.7.5): a starting point."""
    z2 = z * z
    g1 = (z2 + 1) * z / 4
    g2 = ((5 * z2 + 16) * z2 + 3) * z / 96
    g3 = (((3 * z2 + 19) * z2 + 17) * z2 - 15) * z / 384
    g4 = ((((79 * z2 + 776) * z2 + 1482) * z2 - 1920) * z2 - 945) * z / 92160
    return z + (g1 + (g2 + (g3 + g4 / df) / df) / df) / df


def _log_upper_tail(t: float, df: float) -> float:
    """``log P(T > t)`` for t > 0: ``P = I_x(df/2, 1/2) / 2`` with
    ``x = df / (df + t^2)``, from the incomplete beta function's continued
    fraction (modified Lentz), on the side of ``x`` where it converges."""
    a, b = df / 2, 0.5
    t2, log_t2 = t * t, 2 * math.log(t)
    log_sum = log_t2 + math.log1p(df / t2) if t2 > df else math.log(df) + math.log1p(t2 / df)  # log(df + t^2)
    log_x, log_one_minus_x = math.log(df) - log_sum, log_t2 - log_sum  # 1 - x without cancellation
    x, one_minus_x = math.exp(log_x), math.exp(log_one_minus_x)
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * log_x + b * log_one_minus_x
    if x < (a + 1) / (a + b + 2):
        return math.log(0.5) + log_front + math.log(_beta_fraction(x, a, b) / a)
    return math.log(0.5) + math.log1p(-math.exp(log_front) * _beta_fraction(one_minus_x, b, a) / b)


def _beta_fraction(x: float, a: float, b: float) -> float:
    """The continued fraction of the incomplete beta function (modified Lentz)."""
    tiny = 1e-300
    qab, qap, qam = a + b, a + 1, a - 1
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 1000):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        delta = d * c
        h *= delta
        if abs(delta - 1.0) <= 1e-16:
            break
    return h

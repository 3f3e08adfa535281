"""Quantiles of the normal and Student's t distributions.

From ``scipy.special`` (``ndtri``, ``stdtrit``): the same values as
``scipy.stats``' ``norm.ppf`` and ``t.ppf``, for a fraction of the import
time and memory, which a session pays after its last item.
"""

from __future__ import annotations

from scipy import special


def norm_ppf(q: float) -> float:
    """The ``q`` quantile of the standard normal distribution."""
    return float(special.ndtri(q))


def t_ppf(q: float, df: float) -> float:
    """The ``q`` quantile of Student's t distribution with ``df`` degrees of freedom."""
    return float(special.stdtrit(df, q))

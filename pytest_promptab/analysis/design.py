"""What an A/B test's design can decide, known before any call (SPEC 6).

The sign-flip test (:mod:`.paired`) on ``k`` units (cases; runs when there
is a single case) can give no p-value below ``2 / 2**k``; Holm multiplies the
smallest by the number of challengers. When even that cannot fall below
``alpha``, no result whatsoever can name a winner: this is said at
collection, with the number of cases that would be needed, and again in the
table. Pure Python (it runs at collection time): no numpy, no scipy.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..workflow.loader import LoadedWorkflow

EXACT_MAX = 20
"""Up to this many units the sign-flip test enumerates every sign pattern."""
MONTE_CARLO_DRAWS = 19_999
"""Beyond it, this many random sign patterns (fixed seed)."""


def min_p_value(units: int) -> float:
    """The smallest p-value the sign-flip test can give with ``units`` units:
    2 of the 2**units sign patterns (all +, all -) are as extreme as the data."""
    if units < 1:
        return 1.0
    if units > EXACT_MAX:
        return 1 / (MONTE_CARLO_DRAWS + 1)
    return 2.0 / 2**units


def units_needed(challengers: int, alpha: float) -> int:
    """The fewest units with which the smallest Holm-adjusted p-value
    (``challengers * min_p``) can fall below ``alpha``."""
    m = max(1, challengers)
    k = 1
    while m * min_p_value(k) >= alpha:
        k += 1
    return k


def design_unit(cases: int) -> str:
    return "runs" if cases <= 1 else "cases"


def decidable(cases: int, runs: int, challengers: int, alpha: float) -> bool:
    units = runs if cases <= 1 else cases
    return challengers == 0 or units >= units_needed(challengers, alpha)


def too_few_message(cases: int, runs: int, challengers: int, alpha: float) -> str | None:
    """The sentence saying this design can never name a winner, or None."""
    if decidable(cases, runs, challengers, alpha):
        return None
    need = units_needed(challengers, alpha)
    m = max(1, challengers)
    who = f"{challengers} challengers (Holm)" if challengers > 1 else "1 challenger"
    if cases <= 1:
        return (
            f"too few runs to ever decide: a single case with {runs} runs per variant cannot reach "
            f"significance at alpha {alpha:g} with {who}, whatever the results "
            f"(smallest possible adjusted p = {m * min_p_value(runs):.4g}); "
            f"use at least {need} runs, or better, more cases"
        )
    return (
        f"too few cases to ever decide: {cases} cases cannot reach significance at alpha {alpha:g} "
        f"with {who}, whatever the results (smallest possible adjusted p = {m * min_p_value(cases):.4g}); "
        f"at least {need} cases are needed"
    )


def collection_warning(loaded: LoadedWorkflow, runs_per_case: int) -> str | None:
    """The too-few sentence for a loaded file, or None (said at collection)."""
    ab = loaded.config.ab_test
    return too_few_message(len(loaded.cases), runs_per_case, len(ab.variants), ab.alpha)

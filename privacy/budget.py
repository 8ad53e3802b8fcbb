"""Budget arithmetic in integer micro-ε, so repeated charges never drift past the cap.

Floats summed in different orders round differently; a ledger must not. Charges round *up*
and caps round *down* to whole micro-ε units, so rounding can only ever under-spend.
"""

from __future__ import annotations

import math

UNITS_PER_EPSILON = 1_000_000
MAX_EPSILON_PER_JOB = 10.0


class BudgetError(ValueError):
    """An ε amount that cannot be charged; the message names the fix."""


def charge_units(epsilon: float) -> int:
    """Micro-ε units a job of ``epsilon`` costs (rounded up)."""
    if not (math.isfinite(epsilon) and 0 < epsilon <= MAX_EPSILON_PER_JOB):
        raise BudgetError(
            f"epsilon must be a number in (0, {MAX_EPSILON_PER_JOB:g}]; got {epsilon}"
        )
    return math.ceil(epsilon * UNITS_PER_EPSILON - 1e-9)


def cap_units(epsilon: float) -> int:
    """Micro-ε units a cap of ``epsilon`` allows (rounded down)."""
    if not (math.isfinite(epsilon) and epsilon >= 0):
        raise BudgetError(f"a budget cap must be a finite number >= 0; got {epsilon}")
    return math.floor(epsilon * UNITS_PER_EPSILON + 1e-9)


def to_epsilon(units: int) -> float:
    return units / UNITS_PER_EPSILON


def remaining_units(cap: int, spent: int, reserved: int) -> int:
    return cap - spent - reserved

"""Budget arithmetic in integer micro-ε (and femto-δ), so repeated charges never drift past
the cap.

Floats summed in different orders round differently; a ledger must not. Charges round *up*
and caps round *down* to whole units, so rounding can only ever under-spend. ε and δ compose
by simple addition (basic composition): a team's releases on a dataset are together
(Σε, Σδ)-DP, which the caps bound.
"""

from __future__ import annotations

import math

UNITS_PER_EPSILON = 1_000_000
MAX_EPSILON_PER_JOB = 10.0
#: The public floor: a job asks for at least this ε. Below it a charge would round to a
#: handful of units (or none: ε = 1e-300 once cost nothing) while the job still runs on the
#: full data, a free probe of whatever the data decides about its success.
MIN_EPSILON_PER_JOB = 0.001


class BudgetError(ValueError):
    """An ε amount that cannot be charged; the message names the fix."""


def charge_units(epsilon: float) -> int:
    """Micro-ε units a job of ``epsilon`` costs.

    A job then *runs* at ``to_epsilon(units)``, not at the ε asked for, so what it spends is
    exactly what it is charged whatever the rounding; the tolerance only keeps decimal inputs
    (0.1 is 0.1000000000000000055…) from costing a unit more.
    """
    if not (math.isfinite(epsilon) and MIN_EPSILON_PER_JOB <= epsilon <= MAX_EPSILON_PER_JOB):
        raise BudgetError(
            f"epsilon must be a number in [{MIN_EPSILON_PER_JOB:g}, {MAX_EPSILON_PER_JOB:g}] "
            f"(the floor keeps every full-data run charged); got {epsilon}"
        )
    return math.ceil(epsilon * UNITS_PER_EPSILON - 1e-6)


def cap_units(epsilon: float) -> int:
    """Micro-ε units a cap of ``epsilon`` allows (rounded down)."""
    if not (math.isfinite(epsilon) and epsilon >= 0):
        raise BudgetError(f"a budget cap must be a finite number >= 0; got {epsilon}")
    return math.floor(epsilon * UNITS_PER_EPSILON + 1e-9)


def to_epsilon(units: int) -> float:
    return units / UNITS_PER_EPSILON


UNITS_PER_DELTA = 10**15
MAX_DELTA_PER_JOB = 1e-4
MIN_DELTA_PER_JOB = 1e-12  # for δ > 0: the same floor, in femto-δ (1,000 units)


def delta_charge_units(delta: float) -> int:
    """Femto-δ units a job of ``delta`` costs; 0 for a pure ε-DP job. It runs at ``to_delta``."""
    if not (
        math.isfinite(delta) and (delta == 0 or MIN_DELTA_PER_JOB <= delta <= MAX_DELTA_PER_JOB)
    ):
        raise BudgetError(
            f"delta must be 0 or a number in [{MIN_DELTA_PER_JOB:g}, {MAX_DELTA_PER_JOB:g}]; "
            f"got {delta}"
        )
    return math.ceil(delta * UNITS_PER_DELTA - 1e-6)


def delta_cap_units(delta: float) -> int:
    """Femto-δ units a cap of ``delta`` allows (rounded down)."""
    if not (math.isfinite(delta) and 0 <= delta < 1):
        raise BudgetError(f"a delta cap must be a number in [0, 1); got {delta}")
    return math.floor(delta * UNITS_PER_DELTA + 1e-6)


def to_delta(units: int) -> float:
    return units / UNITS_PER_DELTA


def remaining_units(cap: int, spent: int, reserved: int) -> int:
    return cap - spent - reserved

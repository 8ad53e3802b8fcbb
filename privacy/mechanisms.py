"""Noise mechanisms, drawn only from an OS-backed secure RNG.

Every draw goes through diffprivlib with ``random_state=None``, which diffprivlib turns into
``secrets.SystemRandom()`` for its mechanisms. No function here accepts a seed or an RNG: nothing
a caller (let alone a contestant) controls can reach the noise. Statistical tests therefore run
against the real RNG with fixed trial counts and a stated false-failure rate.

* Real values: diffprivlib's ``Laplace``, which samples from four uniform variates (Holohan and
  Braghin, "Secure Random Sampling in Differential Privacy", 2021) so that the low bits of a
  release do not give away the input the way textbook inverse-CDF Laplace does (Mironov 2012).
  No release path uses it any more: sums and means are exact integers on a public grid with
  discrete Laplace noise (``privacy.discrete``); it stays for ``bench/query.py``'s emulation of
  the float release the grid replaced.
* Counts: diffprivlib's ``Geometric``, the two-sided geometric mechanism — integer-valued, so a
  count stays an integer and no floating-point attack applies.
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Sequence

from diffprivlib.mechanisms import Geometric, Laplace


class MechanismError(ValueError):
    """Parameters that would not give the stated guarantee."""


def _check(sensitivity: float, epsilon: float) -> None:
    if not (math.isfinite(epsilon) and epsilon > 0):
        raise MechanismError(f"epsilon must be a finite number > 0; got {epsilon}")
    if not (math.isfinite(sensitivity) and sensitivity >= 0):
        raise MechanismError(f"sensitivity must be a finite number >= 0; got {sensitivity}")


def laplace_scale(sensitivity: float, epsilon: float) -> float:
    """Scale ``b = Δ / ε`` of the Laplace mechanism.

    Proof sketch: for neighbouring inputs the true values differ by at most the L1 sensitivity
    Δ, and the density ratio of Lap(b) at any point is at most ``exp(Δ / b) = exp(ε)``.
    """
    _check(sensitivity, epsilon)
    return sensitivity / epsilon


def laplace_error_bound(scale: float, confidence: float = 0.95) -> float:
    """Half-width ``t`` with ``P(|Lap(b)| <= t) = confidence``, i.e. ``t = b · ln(1 / (1 - c))``."""
    if not 0 < confidence < 1:
        raise MechanismError(f"confidence must lie in (0, 1); got {confidence}")
    return scale * math.log(1.0 / (1.0 - confidence))


def laplace_release(value: float, sensitivity: float, epsilon: float) -> float:
    """Return ``value + Lap(Δ / ε)`` from a secure RNG: ε-DP for an L1-sensitivity-Δ value."""
    _check(sensitivity, epsilon)
    if not math.isfinite(value):
        raise MechanismError(f"value to release must be finite; got {value}")
    if sensitivity == 0:
        return float(value)
    mechanism = Laplace(epsilon=epsilon, sensitivity=sensitivity, random_state=None)
    return float(_secure(mechanism).randomise(float(value)))


def laplace_release_many(
    values: Sequence[float], sensitivity: float, epsilon: float
) -> list[float]:
    """``laplace_release`` of each value (each draw independent), with one mechanism object:
    the guarantee is per value; what the *vector* costs is the caller's composition to state."""
    _check(sensitivity, epsilon)
    if not all(math.isfinite(value) for value in values):
        raise MechanismError("values to release must be finite")
    if sensitivity == 0:
        return [float(value) for value in values]
    mechanism = _secure(Laplace(epsilon=epsilon, sensitivity=sensitivity, random_state=None))
    return [float(mechanism.randomise(float(value))) for value in values]


def _secure(mechanism: Laplace | Geometric) -> Laplace | Geometric:
    """Defence in depth: refuse to draw if diffprivlib ever stops using the OS RNG."""
    if not isinstance(mechanism._rng, secrets.SystemRandom):
        raise RuntimeError("diffprivlib did not select a secure RNG; refusing to draw noise")
    return mechanism


def _check_count_sensitivity(sensitivity: int) -> None:
    if isinstance(sensitivity, bool) or not isinstance(sensitivity, int) or sensitivity < 1:
        raise MechanismError(f"a count's sensitivity must be an integer >= 1; got {sensitivity}")


def geometric_alpha(sensitivity: int, epsilon: float) -> float:
    """``a = exp(-ε / Δ)``: the added noise X has ``P(X = k) = (1 - a) / (1 + a) · a^|k|``.

    Proof sketch: neighbouring integer inputs differ by at most Δ, and the probability ratio of
    any output is ``a^(|k| - |k + d|) <= a^-|d| <= exp(ε)`` for ``|d| <= Δ``.
    """
    _check_count_sensitivity(sensitivity)
    _check(float(sensitivity), epsilon)
    return math.exp(-epsilon / sensitivity)


def geometric_error_bound(sensitivity: int, epsilon: float, confidence: float = 0.95) -> int:
    """Smallest integer ``t`` with ``P(|X| <= t) >= confidence``.

    ``P(|X| > t) = 2 a^(t+1) / (1 + a)``, so ``t + 1 >= ln((1 - c)(1 + a) / 2) / ln a``.
    """
    if not 0 < confidence < 1:
        raise MechanismError(f"confidence must lie in (0, 1); got {confidence}")
    alpha = geometric_alpha(sensitivity, epsilon)
    needed = math.log((1 - confidence) * (1 + alpha) / 2) / math.log(alpha)
    return max(0, math.ceil(needed - 1e-12) - 1)


def geometric_release(count: int, sensitivity: int, epsilon: float) -> int:
    """Return ``count + X``, X two-sided geometric with ``a = exp(-ε / Δ)``: ε-DP, integer."""
    if isinstance(count, bool) or not isinstance(count, int):
        raise MechanismError(f"a count must be an integer; got {count!r}")
    geometric_alpha(sensitivity, epsilon)  # validates both parameters
    mechanism = Geometric(epsilon=epsilon, sensitivity=sensitivity, random_state=None)
    return int(_secure(mechanism).randomise(count))


def selection_threshold(max_partitions: int, epsilon: float, delta: float) -> int:
    """Smallest integer threshold ``t`` for DP partition selection with geometric noise.

    Each key's count of distinct units gets two-sided geometric noise ``X`` with
    ``a = exp(-ε / G)``, ``G`` the most keys one unit may appear in (``max_partitions``); a key
    is released when ``count + X >= t``.

    Proof sketch (add/remove one unit). Keys present with and without the unit: their unit
    counts move by at most 1 each and by at most ``G`` in L1, so the noisy counts (and which of
    them pass) are ε-DP. Keys that exist *only* because of the unit have count exactly 1: one
    passes with probability ``P(X >= t - 1) = a^(t-1) / (1 + a)``, so any of at most ``G`` do
    with probability at most ``G · a^(t-1) / (1 + a) <= δ``. Together: (ε, δ)-DP. Solving for
    ``t``: ``t - 1 >= ln(δ (1 + a) / G) / ln a``.
    """
    _check_count_sensitivity(max_partitions)
    alpha = geometric_alpha(max_partitions, epsilon)
    if not (math.isfinite(delta) and 0 < delta < 1):
        raise MechanismError(f"delta must lie in (0, 1); got {delta}")
    needed = math.log(delta * (1 + alpha) / max_partitions) / math.log(alpha)
    return max(1, math.ceil(needed - 1e-12) + 1)


def geometric_release_many(counts: Sequence[int], sensitivity: int, epsilon: float) -> list[int]:
    """``geometric_release`` of each count (independent draws) with one mechanism object, which
    halves the cost per draw; as for Laplace, composing the vector is the caller's to state."""
    if any(isinstance(count, bool) or not isinstance(count, int) for count in counts):
        raise MechanismError("counts must be integers")
    geometric_alpha(sensitivity, epsilon)
    mechanism = _secure(Geometric(epsilon=epsilon, sensitivity=sensitivity, random_state=None))
    return [int(mechanism.randomise(count)) for count in counts]


def round_release(value: float, noise_scale: float) -> float:
    """Round a noisy value to a tenth of its noise scale (down to a power of ten).

    Post-processing, so free of budget: digits far below the noise carry no information about
    the data, only noise, and a shorter number reads as what it is. At most ``scale / 20`` moves.
    """
    if not (math.isfinite(value) and math.isfinite(noise_scale)) or noise_scale <= 0:
        return value
    exponent = math.floor(math.log10(noise_scale / 10))
    return (
        round(value, -exponent)
        if exponent < 0
        else float(round(value / 10**exponent) * 10**exponent)
    )

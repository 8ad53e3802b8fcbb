"""Noise mechanisms, drawn only from an OS-backed secure RNG.

Every draw goes through diffprivlib with ``random_state=None``, which diffprivlib turns into
``secrets.SystemRandom()`` for its mechanisms. No function here accepts a seed or an RNG: nothing
a caller (let alone a contestant) controls can reach the noise. Statistical tests therefore run
against the real RNG with fixed trial counts and a stated false-failure rate.
"""

from __future__ import annotations

import math
import secrets

from diffprivlib.mechanisms import Laplace


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
    # Defence in depth: refuse to draw if diffprivlib ever stops using the OS RNG here.
    if not isinstance(mechanism._rng, secrets.SystemRandom):
        raise RuntimeError("diffprivlib did not select a secure RNG; refusing to draw noise")
    return float(mechanism.randomise(float(value)))

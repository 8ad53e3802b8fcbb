"""Exact discrete noise: integers in, integers out, randomness from the OS, no float anywhere.

Floating-point Laplace noise is not ε-DP on a finite computer: the set of floats a release can
take depends on the input (Mironov 2012, "On significance of the least significant bits for
differential privacy"), and at a large magnitude with a tiny scale the noise rounds away
entirely. Here every release path works on integers on a public grid, and the noise is the
discrete Laplace (two-sided geometric) distribution, sampled exactly from uniform integers
(``secrets.randbelow``) by the rejection sampler of Canonne, Kamath and Steinke, "The Discrete
Gaussian for Differential Privacy" (NeurIPS 2020), Algorithms 1 and 2.

``discrete_laplace(scale)`` returns ``X`` with ``P(X = x) ∝ exp(-|x| / scale)`` for a rational
``scale``. Adding it to an integer of L1 sensitivity ``Δ`` with ``scale = Δ / ε`` is ε-DP:
for ``|d| <= Δ`` the probability ratio of any output is ``exp((|x - d| - |x|) / scale)
<= exp(Δ / scale) = exp(ε)``. Nothing is approximated: ``scale`` is an exact fraction and each
Bernoulli trial compares a uniform integer with an integer numerator.

No function accepts a seed or an RNG.
"""

from __future__ import annotations

import math
import secrets
from fractions import Fraction

Rational = Fraction | int


class DiscreteNoiseError(ValueError):
    """Parameters that would not give the stated guarantee."""


def bernoulli_exp(gamma: Rational) -> bool:
    """True with probability exactly ``exp(-gamma)`` for a rational ``gamma >= 0``.

    CKS Algorithm 1: for ``gamma <= 1``, draw ``A_k ~ Bernoulli(gamma / k)`` for k = 1, 2, …
    until the first failure at K; ``P(K odd) = exp(-gamma)`` (the alternating series of the
    exponential). A larger ``gamma`` is split into whole units: ``exp(-gamma) =
    exp(-1)^floor(gamma) · exp(-(gamma - floor(gamma)))``.
    """
    gamma = Fraction(gamma)
    if gamma < 0:
        raise DiscreteNoiseError(f"gamma must be >= 0; got {gamma}")
    return _bernoulli_exp(gamma.numerator, gamma.denominator)


def _bernoulli_exp(numerator: int, denominator: int) -> bool:
    """``bernoulli_exp(numerator / denominator)`` on integers alone (the sampler's hot path):
    ``Bernoulli(gamma / k)`` is ``randbelow(denominator · k) < numerator``."""
    while numerator > denominator:
        if not _bernoulli_exp(1, 1):
            return False
        numerator -= denominator
    k = 1
    while secrets.randbelow(denominator * k) < numerator:
        k += 1
    return k % 2 == 1


def discrete_laplace(scale: Rational) -> int:
    """One draw of ``X`` with ``P(X = x) = (1 - a) / (1 + a) · a^|x|``, ``a = exp(-1 / scale)``.

    CKS Algorithm 2 with ``scale = t / s``: ``U`` uniform on ``{0, …, t-1}`` kept with
    probability ``exp(-U / t)``, plus ``t · V`` with ``V`` geometric (``P(V >= v) = e^-v``),
    gives ``X' = U + tV`` with ``P(X' = x) ∝ exp(-x / t)``; ``floor(X' / s)`` is then geometric
    with ratio ``exp(-s / t)``; a fair sign, rejecting the negative zero, makes it two-sided.
    """
    scale = Fraction(scale)
    if scale <= 0:
        raise DiscreteNoiseError(f"the noise scale must be > 0; got {scale}")
    t, s = scale.numerator, scale.denominator
    while True:
        u = secrets.randbelow(t)
        if not _bernoulli_exp(u, t):
            continue
        v = 0
        while _bernoulli_exp(1, 1):
            v += 1
        magnitude = (u + t * v) // s
        negative = secrets.randbelow(2) == 1
        if negative and magnitude == 0:
            continue
        return -magnitude if negative else magnitude


def tail_bound(scale: Rational, confidence: float = 0.95) -> int:
    """Smallest integer ``t`` with ``P(|X| <= t) >= confidence`` (public: for display).

    ``P(|X| > t) = 2 a^(t+1) / (1 + a)`` with ``a = exp(-1 / scale)``.
    """
    if not 0 < confidence < 1:
        raise DiscreteNoiseError(f"confidence must lie in (0, 1); got {confidence}")
    alpha = math.exp(-1 / float(scale))
    if alpha <= 0.0:
        return 0
    needed = math.log((1 - confidence) * (1 + alpha) / 2) / math.log(alpha)
    return max(0, math.ceil(needed - 1e-12) - 1)


def exact_epsilon(epsilon: float) -> Fraction:
    """The ε a float stands for, as a fraction, never above the float's own value.

    A job's ε is charged in micro-ε units and runs at ``units / 10**6``, whose float may lie
    half an ulp above or below that fraction; the smaller of the two is used, so the noise is
    never calibrated to more ε than was charged.
    """
    if not (math.isfinite(epsilon) and epsilon > 0):
        raise DiscreteNoiseError(f"epsilon must be a finite number > 0; got {epsilon}")
    exact = Fraction(epsilon)
    return min(exact, exact.limit_denominator(10**6))


def pow2_floor(x: Rational) -> Fraction:
    """The largest power of two ``<= x`` (``x > 0``), exactly."""
    x = Fraction(x)
    if x <= 0:
        raise DiscreteNoiseError(f"x must be > 0; got {x}")
    exponent = x.numerator.bit_length() - x.denominator.bit_length()
    power = Fraction(2) ** exponent
    while power > x:
        power /= 2
    while power * 2 <= x:
        power *= 2
    return power


#: Query-mode sums hold each row's clipped value as a whole number of steps of
#: ``2^-FIXED_POINT_BITS`` times the smallest power of two at least its bound's magnitude.
FIXED_POINT_BITS = 30


def fixed_point_step(magnitude: float) -> Fraction:
    """The public step of a row's value in an exact integer sum: a power of two, so a float
    divided by it is exact, and fine enough (``magnitude / 2^30`` at most) that snapping a
    row moves it by a billionth of its bound; a row is then at most ``2^30`` steps."""
    if not (math.isfinite(magnitude) and magnitude > 0):
        raise DiscreteNoiseError(f"magnitude must be a finite number > 0; got {magnitude}")
    ceiling = pow2_floor(Fraction(magnitude))
    if ceiling < Fraction(magnitude):
        ceiling *= 2
    return ceiling / 2**FIXED_POINT_BITS


def round_half_even(x: Fraction) -> int:
    """``x`` rounded to the nearest integer, ties to even: exact for any fraction."""
    return round(x)

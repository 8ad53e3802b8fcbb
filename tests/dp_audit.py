"""A statistical audit of ε-DP for the tests: can any threshold event tell two output
distributions apart by more than e^ε? Test-harness code only (never imported by production).

For outputs of a mechanism on neighbouring inputs, P(M(D) ∈ S) <= e^ε P(M(D') ∈ S) must hold
for every event S. The audit tries S = {y >= t} at 41 quantiles of the pooled samples, both
ways, with one-sided Clopper-Pearson bounds; a truly ε-DP mechanism fails it with probability
at most 164 · AUDIT_BETA < 2e-6 (the stated false-failure rate).
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats

AUDIT_TRIALS = 20_000
AUDIT_BETA = 1e-8  # per one-sided Clopper-Pearson bound


def violation(first: np.ndarray, second: np.ndarray, epsilon: float) -> float | None:
    """Smallest threshold t at which P(A >= t) provably exceeds e^ε P(B >= t), either way."""
    values = np.concatenate([first, second])
    thresholds = np.unique(np.quantile(values, np.linspace(0.025, 0.975, 41)))
    n = len(first)
    for t in thresholds:
        for a, b in ((first, second), (second, first)):
            hits_a, hits_b = int((a >= t).sum()), int((b >= t).sum())
            lower_a = stats.beta.ppf(AUDIT_BETA, hits_a, n - hits_a + 1) if hits_a else 0.0
            upper_b = (stats.beta.ppf(1 - AUDIT_BETA, hits_b + 1, n - hits_b)
                       if hits_b < n else 1.0)  # fmt: skip
            if lower_a > math.exp(epsilon) * upper_b:
                return float(t)
    return None

"""Exact releases: discrete noise sampled exactly, block values on a public integer grid, and
bounds too narrow for their magnitude refused. Statistical tests use fixed trial counts; each
states its false-failure rate."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
from scipy import stats

from privacy.discrete import bernoulli_exp, discrete_laplace, exact_epsilon, pow2_floor
from privacy.outputs import Combine, OutputSpecError, make_output_spec
from privacy.sample_aggregate import BlockAccumulator, aggregate_and_release, plan_noise
from tests.dp_audit import AUDIT_TRIALS, violation

CHI2_ALPHA = 1e-6  # false-failure rate of each goodness-of-fit test
TRIALS = 20_000
ONE_ULP = (5e11, math.nextafter(5e11, math.inf))  # the attack of issue 14: width 6.1e-5


def _pmf(scale: Fraction, support: np.ndarray) -> np.ndarray:
    alpha = math.exp(-1 / float(scale))
    return (1 - alpha) / (1 + alpha) * alpha ** np.abs(support)


def _chi2_pvalue(draws: np.ndarray, scale: Fraction, limit: int) -> float:
    """Goodness of fit to DLap(scale) on {-limit..limit} plus the two tails pooled."""
    support = np.arange(-limit, limit + 1)
    expected = _pmf(scale, support) * len(draws)
    observed = np.array([(draws == x).sum() for x in support], dtype=float)
    tail_expected = len(draws) - expected.sum()
    tail_observed = len(draws) - observed.sum()
    return float(
        stats.chisquare(np.append(observed, tail_observed), np.append(expected, tail_expected))[1]
    )


def test_discrete_laplace_has_the_exact_distribution() -> None:
    """χ² of 20,000 draws at scale 3/2 against the pmf (false-failure rate 1e-6); the same
    draws are rejected against scale 1.8, so the test can see a scale 20 % off."""
    scale = Fraction(3, 2)
    draws = np.array([discrete_laplace(scale) for _ in range(TRIALS)])
    assert _chi2_pvalue(draws, scale, 6) > CHI2_ALPHA
    assert _chi2_pvalue(draws, Fraction(9, 5), 6) < CHI2_ALPHA
    assert abs(draws.mean()) < 6 * math.sqrt(2 * 1.5**2 / TRIALS)  # symmetric


def test_bernoulli_exp_has_probability_exp_minus_gamma() -> None:
    """20,000 trials each: within 6 standard deviations (false-failure rate ≈ 2e-9 each)."""
    for gamma in (Fraction(0), Fraction(1, 3), Fraction(7, 5), Fraction(3)):
        p = math.exp(-float(gamma))
        hits = sum(bernoulli_exp(gamma) for _ in range(TRIALS))
        assert abs(hits / TRIALS - p) <= 6 * math.sqrt(p * (1 - p) / TRIALS) + 1e-12


def test_exact_epsilon_never_exceeds_the_charged_fraction() -> None:
    assert exact_epsilon(0.1) == Fraction(1, 10)  # the float 0.1 is just above 1/10
    assert exact_epsilon(1.0) == 1
    assert exact_epsilon(1 / 3) <= Fraction(1 / 3)
    assert pow2_floor(Fraction(3)) == 2 and pow2_floor(Fraction(1, 3)) == Fraction(1, 4)


def test_the_one_ulp_attack_is_refused_with_the_smallest_width_that_works() -> None:
    spec = make_output_spec("x", *ONE_ULP)
    with pytest.raises(OutputSpecError, match="widen them to at least") as refused:
        plan_noise([spec], Combine.MEAN, 20, 1.0)
    smallest = float(str(refused.value).split("at least ")[1].split(" ")[0])
    assert 0.05 < smallest < 0.1  # 64 · k · ε · ulp(5e11) = 64 · 20 · 6.1e-5
    assert plan_noise([make_output_spec("x", 5e11, 5e11 + smallest)], Combine.MEAN, 20, 1.0)
    with pytest.raises(OutputSpecError):
        plan_noise([make_output_spec("x", 5e11, 5e11 + smallest * 0.9)], Combine.MEAN, 20, 1.0)


@pytest.mark.parametrize("combine", [Combine.MEAN, Combine.SUM])
@pytest.mark.parametrize(
    ("lo", "hi", "blocks", "epsilon"),
    [(0.0, 10.0, 20, 1.0), (-3.5, 1e-3, 7, 0.3), (5e11, 5e11 + 0.5, 50, 2.0), (-1e12, 1e12, 3, 9)],
)
def test_released_values_lie_on_the_documented_grid(
    combine: Combine, lo: float, hi: float, blocks: int, epsilon: float
) -> None:
    spec = make_output_spec("x", lo, hi)
    (plan,) = plan_noise([spec], combine, blocks, epsilon)
    step = Fraction(plan.grid_step)
    assert step.numerator == 1 or step.denominator == 1  # a power of two
    assert plan.grid_step >= math.ulp(max(abs(lo), abs(hi)))  # every step a float there
    per = 1 if combine is Combine.MEAN else 1 / blocks  # a sum: k blocks snap, k times the error
    assert plan.grid_step <= plan.noise_scale / 64 * per * 1.02
    values = [lo + (hi - lo) * (i / blocks) for i in range(blocks)]
    for _ in range(50):
        (released,) = aggregate_and_release([{"x": v} for v in values], [spec], combine,
                                            blocks, epsilon)  # fmt: skip
        assert (Fraction(released.value) / step).denominator == 1


def _releases(blocks: list[float], lo: float, hi: float, combine: Combine, outputs: int,
              epsilon: float, trials: int) -> np.ndarray:  # fmt: skip
    """The first output's releases; the other outputs are declared (they take their share of
    ε) and fixed."""
    specs = [make_output_spec(f"o{i}", lo, hi) for i in range(outputs)]
    rows = [{f"o{i}": value for i in range(outputs)} for value in blocks]
    return np.array(
        [aggregate_and_release(rows, specs, combine, len(blocks), epsilon)[0].value
         for _ in range(trials)]
    )  # fmt: skip


ADVERSARIAL = [
    # the one-ulp magnitude at the narrowest width the grid accepts, mean and sum
    pytest.param(5e11, 5e11 + 0.08, Combine.MEAN, 1, 0, id="huge-narrow-mean-first"),
    pytest.param(5e11, 5e11 + 0.08, Combine.SUM, 1, 19, id="huge-narrow-sum-last"),
    pytest.param(-1e12, -1e12 + 0.2, Combine.SUM, 1, 10, id="negative-huge-sum-middle"),
    pytest.param(0.0, 1e-9, Combine.MEAN, 1, 7, id="tiny-width"),
    pytest.param(0.0, 10.0, Combine.MEAN, 10, 3, id="ten-outputs"),
]


@pytest.mark.slow  # a statistical audit (tests/dp_audit.py)
@pytest.mark.parametrize(("lo", "hi", "combine", "outputs", "position"), ADVERSARIAL)
def test_audit_over_adversarial_specs_finds_no_more_than_the_claimed_epsilon(
    lo: float, hi: float, combine: Combine, outputs: int, position: int
) -> None:
    """Neighbours move one block (at ``position`` in the summation order) from lo to hi; the
    first output's releases pass the ε/m audit (false-failure rate < 2e-6 each, see
    tests/dp_audit.py). Before the grid, the first case released the exact value."""
    k, epsilon = 20, 1.0
    base = [lo + (hi - lo) * ((i * 7) % k) / k for i in range(k)]
    first, second = list(base), list(base)
    first[position], second[position] = lo, hi
    trials = AUDIT_TRIALS if outputs == 1 else AUDIT_TRIALS // 4
    a = _releases(first, lo, hi, combine, outputs, epsilon, trials)
    b = _releases(second, lo, hi, combine, outputs, epsilon, trials)
    assert violation(a, b, epsilon / outputs) is None
    assert len(np.unique(a)) > 20  # the noise covers the value: many distinct releases


@pytest.mark.slow  # a statistical audit (tests/dp_audit.py)
def test_the_audit_sees_noise_that_is_too_small() -> None:
    """Power: the same neighbours audited at a tenth of the claimed ε must fail."""
    lo, hi = 5e11, 5e11 + 0.08
    base = [lo] * 20
    a = _releases(base, lo, hi, Combine.MEAN, 1, 1.0, AUDIT_TRIALS)
    b = _releases([hi, *base[1:]], lo, hi, Combine.MEAN, 1, 1.0, AUDIT_TRIALS)
    assert violation(a, b, 0.1) is not None


def test_integer_sums_do_not_depend_on_the_block_order() -> None:
    """Float sums do (the `sum` attack moved up to 128 times the sensitivity); integers cannot."""
    spec = make_output_spec("x", 5e11, 5e11 + 1.0)
    values = [5e11 + (i % 3) * 0.37 for i in range(40)]
    totals = set()
    for order in (values, values[::-1], sorted(values)):
        accumulator = BlockAccumulator([spec], Combine.SUM, 40, 1.0)
        for index, value in enumerate(order):
            accumulator.add(index, {"x": value})
        totals.add(accumulator.exact()["x"])
    assert len(totals) == 1

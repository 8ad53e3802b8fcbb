"""The synthesizer's DP part (privacy/synthesis.py) and its post-processing, without a server:
the bound per unit, the budget split, and an empirical DP audit of the synthetic output on
neighbouring tables (one unit added), with a control that the same audit catches a
synthesizer that forgets the bound."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from privacy.synthesis import (
    Attribute,
    Split,
    SynthesisError,
    Tally,
    bound_rows,
    measure,
    permute_and_flip,
)
from runner.synthesize import sample_model, unit_sizes
from tests.dp_audit import violation

ATTRS = (Attribute("a", "category", ("x", "y")), Attribute("b", "category", (0, 1)))
R = 20
EPSILON = 1.0
#: Runs per side. The audit tries 82 one-sided events with Clopper-Pearson bounds at 1e-8
#: each: a truly ε-DP synthesizer fails it with probability < 1e-6 (the false-failure rate).
RUNS = 300
ROWS = 2_000


def table(extra_unit: bool) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """100 units of 1-5 rows (fixed data), and the neighbour with one unit more: R rows, all
    in the cell (x, 0), the worst case for that cell's count."""
    rng = np.random.default_rng(7)
    sizes = rng.integers(1, 6, 100)
    units = np.repeat(np.arange(100), sizes)
    a = rng.choice(np.array(["x", "y"], dtype=object), len(units), p=[0.3, 0.7])
    b = rng.integers(0, 2, len(units))
    if extra_unit:
        units = np.concatenate([units, np.full(R, 999)])
        a = np.concatenate([a, np.array(["x"] * R, dtype=object)])
        b = np.concatenate([b, np.zeros(R, np.int64)])
    return {"a": a, "b": b}, units


def synthetic_count(extra_unit: bool, event_level: bool = False) -> int:
    """Rows with a = x in one synthetic output. ``event_level``: the broken synthesizer that
    treats every row as its own unit, bounded to one row (noise meant for one trip)."""
    columns, units = table(extra_unit)
    if event_level:
        units = np.arange(len(units))
    tally = Tally(ATTRS, 1 if event_level else R)
    tally.add(columns, units)
    rows = sample_model(measure(tally, EPSILON), ROWS)
    return int((rows["a"] == 0).sum())


def test_each_unit_keeps_at_most_r_rows_chosen_among_its_own() -> None:
    units = np.repeat(np.arange(50), np.arange(1, 51))
    kept, per_unit = bound_rows(units, 7)
    assert np.array_equal(per_unit, np.minimum(np.arange(1, 51), 7))
    assert np.array_equal(np.bincount(units[kept]), per_unit)
    tally = Tally((Attribute("v", "numeric", lo=0, hi=1, bins=4),), 7)
    tally.add({"v": np.linspace(0, 1, len(units))}, units)
    assert tally.bounded[("v",)].sum() == per_unit.sum()
    assert tally.full[("v",)].sum() == len(units)  # the report's truth: unbounded
    assert tally.units_histogram.sum() == 50 and tally.units_histogram[-1] == 44


@pytest.mark.parametrize(("d", "chosen"), [(0, False), (1, False), (2, True), (5, False)])
def test_the_split_adds_up_to_exactly_epsilon(d: int, chosen: bool) -> None:
    eps = Fraction(3, 7)
    split = Split.of(eps, d, chosen)
    assert split.units + split.one_way + split.select + split.two_way == eps


def test_noise_scales_follow_the_user_level_sensitivity() -> None:
    columns, units = table(False)
    tally = Tally(ATTRS, R)
    tally.add(columns, units)
    m = measure(tally, EPSILON)
    eps = Fraction(1)
    assert m.scales[("a",)] == Fraction(R * 2) / (eps * 3 / 10)  # R·d/ε_1
    assert m.scales[("a", "b")] == Fraction(R * 1) / (eps * 3 / 10)  # R·(d-1)/ε_2
    assert len(m.units_histogram) == R and m.pairs_selected


def test_permute_and_flip_always_keeps_the_best_of_one_and_prefers_high_scores() -> None:
    assert permute_and_flip([3], Fraction(1), 1) == 0
    picks = [permute_and_flip([0, 100], Fraction(1), 1) for _ in range(200)]
    assert sum(picks) >= 199  # exp(-50) per look at the low one


def test_bad_specifications_are_refused_with_the_fix() -> None:
    with pytest.raises(SynthesisError, match="key set"):
        Attribute("e", "category", ())
    with pytest.raises(SynthesisError, match="lo < hi"):
        Attribute("f", "numeric", lo=2, hi=1, bins=4)
    with pytest.raises(SynthesisError, match="rows_per_unit"):
        Tally(ATTRS, 0)
    big = tuple(Attribute(f"c{i}", "numeric", lo=0, hi=1, bins=3000) for i in range(3))
    with pytest.raises(SynthesisError, match="fewer bins"):
        Tally(big, 5)
    tally = Tally(ATTRS, R)
    with pytest.raises(SynthesisError, match="two different"):
        measure(tally, 1.0, [("a", "zzz")])


def test_unit_sizes_add_up_to_the_rows_asked_for() -> None:
    rng = np.random.default_rng(1)
    sizes = unit_sizes([0, 10, -3, 5], 1_001, rng)
    assert sizes.sum() == 1_001 and sizes.min() >= 1 and sizes[:-1].max() <= 4
    assert set(np.unique(sizes[:-1])) <= {2, 4}  # negative and empty bins are never drawn


@pytest.mark.slow  # a statistical audit (tests/dp_audit.py)
def test_synthetic_marginal_counts_pass_an_empirical_dp_audit_on_neighbours() -> None:
    first = np.array([synthetic_count(False) for _ in range(RUNS)])
    second = np.array([synthetic_count(True) for _ in range(RUNS)])
    assert violation(first, second, EPSILON) is None
    # The audit can fail: accounting per row (every row its own unit), the added person moves
    # the cell by R = 20 at a noise scale meant for one row, and the same audit sees it.
    broken_first = np.array([synthetic_count(False, True) for _ in range(RUNS)])
    broken_second = np.array([synthetic_count(True, True) for _ in range(RUNS)])
    assert violation(broken_first, broken_second, EPSILON) is not None

"""Query mode: a declarative plan run by trusted code, with user-level contribution bounding.

A plan filters rows, groups them by keys with a *public* domain (a dataset key set such as the
stations, ``hour``/``weekday`` of a timestamp, or the ``bucket`` of a value between public
edges — a histogram is a count grouped by buckets), and asks for ``count``, ``sum``, ``mean``,
``variance`` or ``quantile`` aggregates with declared bounds. Every cell of the key domain is
released, empty or not, so which groups exist is never revealed.

Privacy unit and bounding. Neighbouring datasets differ in *all rows of one unit* (a card, a
taxi). Each block computes partial aggregates after bounding every unit's contribution:

* a unit counts in at most ``G = max_groups_per_unit`` groups (its first ``G`` groups in the
  block's order, which is a function of that unit's own rows only), and
* in each of them with at most ``R = max_rows_per_unit`` rows (its first ``R``);
* summed values are clipped to ``[lo, hi]``.

Sensitivity (L1 over the whole vector of cells, add/remove one unit): the unit's rows move at
most ``G`` cells, each by at most ``R`` rows, so counts move by at most ``G·R`` in total, sums
by at most ``G·R·max(|lo|, |hi|)`` and sums of squares by at most ``G·R·max(lo², hi²)``. Each
noisy quantity (the counts, one sum per summed column, one sum of squares per variance column)
gets an even share of ε; counts take two-sided geometric noise (integers). Sums are exact
integers too: each row's clipped value (or its square) is snapped to a whole number of public
fixed-point steps (``privacy.discrete.fixed_point_step``: a power of two, 2^-30 of the bound's
magnitude rounded up), summed in int64 per block and across blocks, so neither the block order
nor float accumulation can move a sum (snapping, Mironov 2012); they take discrete Laplace
noise sampled exactly (Canonne, Kamath, Steinke 2020) at ``G·R`` times a row's most steps over
the share of ε. Each quantity at its L1 sensitivity / share: the whole release is ε-DP by
sequential composition.
Means (S/N) and variances (SS/N - (S/N)²) are post-processing of those noisy quantities: no
extra budget.

Quantiles. A quantile column is binned into ``bins`` equal-width bins of its public ``[lo, hi]``
(values clipped into the end bins) in every cell: one histogram per cell. A unit's kept rows
fall in at most ``G·R`` (cell, bin) places in total, so the whole set of histograms has L1
sensitivity ``G·R``, like the counts, and takes geometric noise at its share of ε. Every
quantile of that column (median, p90, ...) is then post-processing of the noisy histogram:
negative bins are set to zero and the quantile is read off the cumulative counts,
interpolating linearly inside its bin. Its 95 % error bound is computed from the noisy
histogram too: the value moved by the noise's rank error (``sqrt(bins)`` times one bin's 95 %
bound, a union-free approximation of the spread of a cumulative sum of independent noises) on
either side, plus one bin width. It is an estimate, not a guarantee: the released value is
exact post-processing, the bound is approximate.

Keys without a public set (a column the dataset lists no values for) go through DP partition
selection: each key's count of distinct units (after bounding, so a unit is in at most ``G``
keys) gets geometric noise at one more share of ε, and the key is released only when the noisy
count reaches the threshold of ``privacy.mechanisms.selection_threshold`` for the job's δ; the
whole release is then (ε, δ)-DP. Keys released are never those of one unit alone, except with
probability δ. If more keys pass than the plan may release, those with the largest noisy unit
counts are kept (post-processing).

Blocks hold disjoint sets of units, so per-block partials are summed before the noise is drawn
once; the same blocks serve aggregate mode, and the partials can come from many workers.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np

from privacy.discrete import discrete_laplace, exact_epsilon, tail_bound
from privacy.mechanisms import (
    MechanismError,
    geometric_error_bound,
    geometric_release_many,
    round_release,
    selection_threshold,
)
from privacy.partials import Partials, block_partials, combine_partials, referenced_columns
from privacy.query_plan import (
    COUNT,
    NEEDS_COUNT,
    QUANTILE,
    Aggregate,
    DatasetPolicy,
    PlanError,
    QueryPlan,
    parse_plan,
)

__all__ = [
    "DatasetPolicy",
    "Partials",
    "PlanError",
    "QuantityNoise",
    "QueryPlan",
    "ReleasedCell",
    "block_partials",
    "check_delta",
    "combine_partials",
    "parse_plan",
    "plan_query_noise",
    "referenced_columns",
    "release_query",
]


@dataclass(frozen=True)
class QuantityNoise:
    """One noisy quantity (the counts, or one column's sums) over every cell."""

    quantity: str
    sensitivity: float
    epsilon: float
    noise_scale: float
    error_bound_95: float
    describes: str = ""
    #: sums only: the fixed-point step of the integer sum, and the discrete Laplace scale in
    #: steps (exact fractions; the float fields above are for display)
    step: Fraction | None = dataclasses.field(default=None, repr=False)
    steps_scale: Fraction | None = dataclasses.field(default=None, repr=False)


KEYS = "keys"


def check_delta(plan: QueryPlan, delta: float) -> None:
    """δ is spent on partition selection only: required with a private key, refused without."""
    private = [key.name for key in plan.group_by if key.domain is None]
    if private and not (math.isfinite(delta) and 0 < delta <= MAX_DELTA):
        raise PlanError(
            f"group_by {', '.join(map(repr, private))} has no public set of keys, so keys are "
            f"chosen by DP partition selection, which needs delta in (0, {MAX_DELTA:g}] "
            "(e.g. 1e-8); or group by a column with a public key set"
        )
    if not private and delta != 0:
        raise PlanError("delta is spent only when grouping by keys without a public set; drop it")


MAX_DELTA = 1e-4


def plan_query_noise(plan: QueryPlan, epsilon: float, delta: float = 0.0) -> list[QuantityNoise]:
    """Noise of every quantity, from public parameters only (what ``/estimate`` returns)."""
    check_delta(plan, delta)
    quantities: list[QuantityNoise] = []
    needs_count = any(a.op in NEEDS_COUNT for a in plan.aggregates)
    noisy = (
        int(needs_count)
        + len(plan.summed_columns)
        + len(plan.squared_columns)
        + len(plan.histogram_columns)
        + int(not plan.public)
    )
    share = epsilon / noisy
    contributions = plan.max_groups_per_unit * plan.max_rows_per_unit
    if not plan.public:
        groups = plan.max_groups_per_unit
        try:
            threshold = selection_threshold(groups, share, delta)
        except MechanismError as exc:
            raise PlanError(str(exc)) from exc
        quantities.append(
            QuantityNoise(KEYS, groups, share, groups / share, float(threshold),
                          f"partition selection: a key is released only if its noisy count of "
                          f"units reaches {threshold} (the error bound column; delta={delta:g}); "
                          f"keys with far fewer units are dropped")
        )  # fmt: skip
    if needs_count:
        bound = geometric_error_bound(contributions, share)
        quantities.append(
            QuantityNoise(COUNT, contributions, share, contributions / share, float(bound),
                          "rows counted in each cell")
        )  # fmt: skip
    summed = [("sum", a, 1) for a in plan.summed_columns]
    squared = [("sumsq", a, 2) for a in plan.squared_columns]
    exact_share = exact_epsilon(epsilon) / noisy
    for prefix, aggregate, power in summed + squared:
        step = aggregate.sum_step if power == 1 else aggregate.square_step
        steps = contributions * aggregate.row_steps(power)  # L1 sensitivity, in whole steps
        scale = steps / exact_share  # of the discrete Laplace noise, in steps
        name = f"{prefix}:{aggregate.column}"
        what = f"{'sum' if prefix == 'sum' else 'sum of squares'} of {aggregate.column} per cell"
        quantities.append(
            QuantityNoise(name, float(steps * step), share, float(scale * step),
                          float(tail_bound(scale) * step), what, step, scale)
        )  # fmt: skip
    for aggregate in plan.histogram_columns:
        rank = math.sqrt(aggregate.bins) * geometric_error_bound(contributions, share)
        quantities.append(
            QuantityNoise(f"hist:{aggregate.column}", contributions, share,
                          contributions / share, rank,
                          f"rank error, in rows, of quantiles of {aggregate.column} "
                          f"({aggregate.bins} bins; noise scale is per bin)")
        )  # fmt: skip
    return quantities


@dataclass(frozen=True)
class ReleasedCell:
    keys: dict[str, Any]
    name: str
    value: float
    noise_scale: float
    error_bound_95: float
    epsilon: float  # of the noisy quantities behind this value


def release_query(
    plan: QueryPlan, combined: Partials, epsilon: float, delta: float = 0.0
) -> list[ReleasedCell]:
    """Draw the noise once per quantity and cell; every cell of a public domain is released,
    and of keys without one, those partition selection keeps."""
    noise = {q.quantity: q for q in plan_query_noise(plan, epsilon, delta)}
    if plan.public:
        cells, chosen = plan.cells, combined
    else:
        cells, chosen = _select_partitions(plan, combined, noise.pop(KEYS))
    drawn = _draw(chosen, noise)
    names = [key.name for key in plan.group_by]
    released: list[ReleasedCell] = []
    for index, cell in enumerate(cells):
        noisy = {quantity: values[index] for quantity, values in drawn.items()}
        keys = dict(zip(names, cell, strict=True))
        for aggregate in plan.aggregates:
            if aggregate.op == QUANTILE:
                released.append(_quantile(keys, aggregate, noisy, noise))
                continue
            cell_out = _cell(keys, aggregate, noisy, noise)
            value = round_release(cell_out.value, cell_out.noise_scale)
            if aggregate.op == "mean":  # still within its bounds after rounding
                value = min(max(value, aggregate.lo), aggregate.hi)
            released.append(dataclasses.replace(cell_out, value=value))
    return released


def _select_partitions(
    plan: QueryPlan, combined: Partials, selection: QuantityNoise
) -> tuple[list[tuple[Any, ...]], Partials]:
    """Keys whose noisy unit count reaches the threshold (at most ``plan.max_partitions``, the
    most populous first), in key order, and the partials of just those keys."""
    assert combined.keys is not None and combined.units is not None
    noisy = geometric_release_many(
        combined.units.astype(np.int64).tolist(), int(selection.sensitivity), selection.epsilon
    )
    passed = [i for i, count in enumerate(noisy) if count >= selection.error_bound_95]
    passed = sorted(passed, key=lambda i: -noisy[i])[: plan.max_partitions]
    passed.sort(key=lambda i: tuple(map(_sortable, combined.keys[i])))  # type: ignore[index]
    index = np.array(passed, dtype=np.int64)
    chosen = Partials(
        combined.counts[index],
        {quantity: total[index] for quantity, total in combined.sums.items()},
        {name: bins[index] for name, bins in combined.histograms.items()},
    )
    return [combined.keys[i] for i in passed], chosen


def _sortable(value: Any) -> tuple[int, Any]:
    """Keys of mixed types sort without comparing a number with a string."""
    return (0, value) if isinstance(value, (int, float)) else (1, str(value))


def _draw(combined: Partials, noise: dict[str, QuantityNoise]) -> dict[str, Any]:
    """Every noisy quantity over every cell: one independent draw per cell (and per bin)."""
    drawn: dict[str, Any] = {}
    for quantity, spec in noise.items():
        if quantity == COUNT:
            counts = combined.counts.astype(np.int64).tolist()
            drawn[quantity] = [
                float(v)
                for v in geometric_release_many(counts, int(spec.sensitivity), spec.epsilon)
            ]
        elif quantity.startswith("hist:"):
            bins = combined.histograms[quantity]
            flat = geometric_release_many(
                bins.astype(np.int64).ravel().tolist(), int(spec.sensitivity), spec.epsilon
            )
            drawn[quantity] = np.asarray(flat, dtype=float).reshape(bins.shape)
        else:  # exact integer sums in fixed-point steps, discrete noise, exactly
            assert spec.step is not None and spec.steps_scale is not None
            drawn[quantity] = [
                float(spec.step * (int(total) + discrete_laplace(spec.steps_scale)))
                for total in combined.sums[quantity].tolist()
            ]
    return drawn


def _cell(
    keys: dict[str, Any],
    aggregate: Aggregate,
    noisy: dict[str, float],
    noise: dict[str, QuantityNoise],
) -> ReleasedCell:
    if aggregate.op == COUNT:
        count = noise[COUNT]
        return ReleasedCell(keys, aggregate.name, noisy[COUNT], count.noise_scale,
                            count.error_bound_95, count.epsilon)  # fmt: skip
    sums = noise[f"sum:{aggregate.column}"]
    total = noisy[sums.quantity]
    if aggregate.op == "sum":
        return ReleasedCell(
            keys, aggregate.name, total, sums.noise_scale, sums.error_bound_95, sums.epsilon
        )
    # mean and variance: post-processing of noisy releases; their error is propagated from
    # theirs at the released count (no data is touched to compute it).
    count = noise[COUNT]
    denominator = max(noisy[COUNT], 1.0)
    if aggregate.op == "variance":
        return _variance(keys, aggregate, noisy, noise, denominator)
    mean = min(max(total / denominator, aggregate.lo), aggregate.hi)
    bound = (sums.error_bound_95 + aggregate.magnitude * count.error_bound_95) / denominator
    scale = (sums.noise_scale + aggregate.magnitude * count.noise_scale) / denominator
    bound = min(bound, aggregate.hi - aggregate.lo)
    return ReleasedCell(keys, aggregate.name, mean, scale, bound, sums.epsilon + count.epsilon)


def _variance(
    keys: dict[str, Any],
    aggregate: Aggregate,
    noisy: dict[str, float],
    noise: dict[str, QuantityNoise],
    denominator: float,
) -> ReleasedCell:
    """``SS/N - (S/N)^2`` from the noisy count N, sum S and sum of squares SS, kept within
    ``[0, ((hi - lo) / 2)^2]``, the largest variance values in ``[lo, hi]`` can have."""
    count, sums = noise[COUNT], noise[f"sum:{aggregate.column}"]
    squares = noise[f"sumsq:{aggregate.column}"]
    mean = min(max(noisy[sums.quantity] / denominator, aggregate.lo), aggregate.hi)
    largest = ((aggregate.hi - aggregate.lo) / 2) ** 2
    variance = min(max(noisy[squares.quantity] / denominator - mean**2, 0.0), largest)
    m, m2 = aggregate.magnitude, aggregate.square_magnitude
    bound = squares.error_bound_95 + 2 * m * sums.error_bound_95 + m2 * count.error_bound_95
    scale = squares.noise_scale + 2 * m * sums.noise_scale + m2 * count.noise_scale
    epsilon = count.epsilon + sums.epsilon + squares.epsilon
    return ReleasedCell(keys, aggregate.name, variance, scale / denominator,
                        min(bound / denominator, largest), epsilon)  # fmt: skip


def _quantile(
    keys: dict[str, Any],
    aggregate: Aggregate,
    noisy: dict[str, Any],
    noise: dict[str, QuantityNoise],
) -> ReleasedCell:
    """Read the ``q``-quantile off one cell's noisy histogram (post-processing only)."""
    spec = noise[f"hist:{aggregate.column}"]
    counts = np.maximum(noisy[spec.quantity], 0.0)
    width = (aggregate.hi - aggregate.lo) / aggregate.bins
    total = float(counts.sum())
    if total <= 0:  # nothing left after noise: the middle of the range, knowing nothing
        middle = (aggregate.lo + aggregate.hi) / 2
        half = (aggregate.hi - aggregate.lo) / 2
        return ReleasedCell(keys, aggregate.name, middle, half, half, spec.epsilon)
    cumulative = np.cumsum(counts)

    def at_rank(rank: float) -> float:
        return value_at_rank(counts, cumulative, aggregate.lo, width, rank)

    target = aggregate.q * total
    value = at_rank(target)
    spread = math.sqrt(aggregate.bins) * spec.noise_scale
    scale = max((at_rank(target + spread) - at_rank(target - spread)) / 2, width / 2)
    moved = max(at_rank(target + spec.error_bound_95) - value,
                value - at_rank(target - spec.error_bound_95))  # fmt: skip
    bound = min(moved + width, aggregate.hi - aggregate.lo)
    value = min(max(round_release(value, scale), aggregate.lo), aggregate.hi)
    return ReleasedCell(keys, aggregate.name, value, scale, bound, spec.epsilon)


def value_at_rank(counts: np.ndarray, cumulative: np.ndarray, lo: float, width: float,
                  rank: float) -> float:  # fmt: skip
    """The value at ``rank`` (kept within the total) of a histogram of non-negative
    ``counts`` in equal bins of ``width`` from ``lo``, interpolating linearly inside its bin:
    how a quantile is read off a histogram, noisy (a release) or exact (``privacy.exact``)."""
    rank = min(max(rank, 0.0), float(cumulative[-1]))
    index = min(int(np.searchsorted(cumulative, rank, side="left")), len(counts) - 1)
    before = float(cumulative[index - 1]) if index else 0.0
    inside = (rank - before) / counts[index] if counts[index] > 0 else 0.0
    return lo + width * (index + min(max(inside, 0.0), 1.0))

"""Query mode: a declarative plan run by trusted code, with user-level contribution bounding.

A plan filters rows, groups them by keys with a *public* domain (a dataset key set such as the
stations, ``hour``/``weekday`` of a timestamp, or the ``bucket`` of a value between public
edges — a histogram is a count grouped by buckets), and asks for ``count``, ``sum``, ``mean``
or ``variance`` aggregates with declared bounds. Every cell of the key domain is released,
empty or not, so which groups exist is never revealed.

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
gets an even share of ε; counts take two-sided geometric noise (integers), sums float-safe
Laplace, each at L1 sensitivity / share: the whole release is ε-DP by sequential composition.
Means (S/N) and variances (SS/N - (S/N)²) are post-processing of those noisy quantities: no
extra budget.

Blocks hold disjoint sets of units, so per-block partials are summed before the noise is drawn
once; the same blocks serve aggregate mode, and the partials can come from many workers.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from privacy.expressions import ExpressionError, evaluate, key_domain, validate
from privacy.mechanisms import (
    geometric_error_bound,
    geometric_release,
    laplace_error_bound,
    laplace_release,
    laplace_scale,
    round_release,
)

AGGREGATES = ("count", "sum", "mean", "variance")
NEEDS_COUNT = frozenset({"count", "mean", "variance"})
COUNT = "count"


class PlanError(ValueError):
    """A plan that cannot run with the stated guarantee; the message names the fix."""


@dataclass(frozen=True)
class GroupKey:
    name: str
    expression: dict[str, Any]
    domain: tuple[Any, ...]


@dataclass(frozen=True)
class Aggregate:
    name: str
    op: str
    column: str | None = None
    lo: float = 0.0
    hi: float = 0.0

    @property
    def square_magnitude(self) -> float:
        """Largest value one clipped row can add to a sum of squares."""
        return max(self.lo**2, self.hi**2)

    @property
    def magnitude(self) -> float:
        """Largest absolute value one clipped row can add to a sum."""
        return max(abs(self.lo), abs(self.hi))


@dataclass(frozen=True)
class QueryPlan:
    filter: dict[str, Any] | None
    group_by: tuple[GroupKey, ...]
    aggregates: tuple[Aggregate, ...]
    max_rows_per_unit: int
    max_groups_per_unit: int

    @property
    def cells(self) -> list[tuple[Any, ...]]:
        """Every key combination, released whether or not any row falls in it."""
        return list(itertools.product(*(key.domain for key in self.group_by)))

    @property
    def squared_columns(self) -> list[Aggregate]:
        """One sum-of-squares quantity per distinct column of a variance."""
        seen: dict[str, Aggregate] = {}
        for aggregate in self.aggregates:
            if aggregate.op == "variance" and aggregate.column not in seen:
                seen[str(aggregate.column)] = aggregate
        return list(seen.values())

    @property
    def summed_columns(self) -> list[Aggregate]:
        """One sum quantity per distinct column (sum and mean of a column share it)."""
        seen: dict[str, Aggregate] = {}
        for aggregate in self.aggregates:
            if aggregate.op != COUNT and aggregate.column not in seen:
                seen[str(aggregate.column)] = aggregate
        return list(seen.values())


@dataclass(frozen=True)
class DatasetPolicy:
    """What the dataset makes public: schema, unit, bounds, key sets and limits."""

    columns: Mapping[str, str]
    unit_column: str
    bounds: Mapping[str, tuple[float, float]]
    key_sets: Mapping[str, list[Any]]
    max_cells: int = 10_000
    max_rows_per_unit: int = 100
    max_groups_per_unit: int = 10


def _positive_int(raw: Mapping[str, Any], name: str, default: int, limit: int) -> int:
    value = raw.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= limit:
        raise PlanError(
            f"{name} must be an integer from 1 to {limit} (dataset policy); got {value!r}"
        )
    return value


def parse_plan(raw: Mapping[str, Any], policy: DatasetPolicy) -> QueryPlan:
    """Validate a JSON plan against the dataset's public policy, before any data is read."""
    unknown = set(raw) - {"filter", "group_by", "aggregates", "max_rows_per_unit",
                          "max_groups_per_unit"}  # fmt: skip
    if unknown:
        raise PlanError(f"unknown plan fields: {', '.join(sorted(unknown))}")
    try:
        if raw.get("filter") is not None:
            validate(raw["filter"], policy.columns)
        keys = [_group_key(item, policy) for item in raw.get("group_by", [])]
    except ExpressionError as exc:
        raise PlanError(str(exc)) from exc
    if len({key.name for key in keys}) != len(keys):
        raise PlanError("group_by names must be distinct")
    aggregates = [_aggregate(item, policy) for item in raw.get("aggregates", [])]
    if not aggregates:
        raise PlanError(
            "a plan needs at least one aggregate, e.g. {'name': 'trips', 'op': 'count'}"
        )
    if len({a.name for a in aggregates}) != len(aggregates):
        raise PlanError("aggregate names must be distinct")
    plan = QueryPlan(
        filter=raw.get("filter"),
        group_by=tuple(keys),
        aggregates=tuple(aggregates),
        max_rows_per_unit=_positive_int(
            raw, "max_rows_per_unit", policy.max_rows_per_unit, policy.max_rows_per_unit
        ),
        max_groups_per_unit=_positive_int(
            raw, "max_groups_per_unit", policy.max_groups_per_unit, policy.max_groups_per_unit
        ),
    )
    cells = math.prod(len(key.domain) for key in keys) * len(aggregates)
    if cells > policy.max_cells:
        raise PlanError(
            f"the plan releases {cells:,} cells, more than the {policy.max_cells:,} allowed; "
            "group by fewer keys or filter to fewer values"
        )
    return plan


def _group_key(item: object, policy: DatasetPolicy) -> GroupKey:
    if isinstance(item, str):
        item = {"name": item, "expr": {"col": item}}
    if not isinstance(item, dict) or set(item) != {"name", "expr"}:
        raise PlanError("a group_by item is a column name or {'name': ..., 'expr': {...}}")
    validate(item["expr"], policy.columns)
    domain = key_domain(item["expr"], policy.key_sets)
    if domain is None:
        public = ", ".join(sorted(policy.key_sets)) or "none"
        raise PlanError(
            f"group_by {item['name']!r} has no public set of keys; group by a column with one "
            f"({public}) or by hour/weekday of a timestamp"
        )
    return GroupKey(str(item["name"]), item["expr"], tuple(domain))


def _aggregate(item: object, policy: DatasetPolicy) -> Aggregate:
    if not isinstance(item, dict) or not isinstance(item.get("name"), str) or not item["name"]:
        raise PlanError("an aggregate is {'name': ..., 'op': 'count'|'sum'|'mean', ...}")
    op = item.get("op")
    if op not in AGGREGATES:
        raise PlanError(f"aggregate {item['name']!r}: op must be one of {', '.join(AGGREGATES)}")
    if op == COUNT:
        return Aggregate(item["name"], COUNT)
    column = item.get("column")
    if column not in policy.columns or column == policy.unit_column:
        raise PlanError(f"aggregate {item['name']!r}: 'column' must name a numeric column")
    lo, hi = item.get("lo"), item.get("hi")
    if lo is None and hi is None and column in policy.bounds:
        lo, hi = policy.bounds[column]
    if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in (lo, hi)) or lo >= hi:
        raise PlanError(
            f"aggregate {item['name']!r} needs finite bounds lo < hi (or dataset bounds for "
            f"{column!r}); got lo={lo!r}, hi={hi!r}"
        )
    return Aggregate(item["name"], op, column, float(lo), float(hi))


# --- per block: bounded partial aggregates ----------------------------------------------------


@dataclass(frozen=True)
class Partials:
    """Per cell of the plan's dense key grid (``plan.cells`` order): row counts, and clipped sums
    per summed column. Partials of blocks with disjoint units add up to the whole."""

    counts: np.ndarray
    sums: dict[str, np.ndarray]

    def __add__(self, other: Partials) -> Partials:
        return Partials(
            self.counts + other.counts,
            {quantity: total + other.sums[quantity] for quantity, total in self.sums.items()},
        )

    def cell(self, index: int) -> dict[str, float]:
        values = {COUNT: float(self.counts[index])}
        values.update({quantity: float(total[index]) for quantity, total in self.sums.items()})
        return values


def referenced_columns(plan: QueryPlan, unit_column: str) -> list[str]:
    """The only columns a block has to be read with."""
    found = {unit_column}
    trees = [key.expression for key in plan.group_by]
    if plan.filter is not None:
        trees.append(plan.filter)
    while trees:
        tree = trees.pop()
        if "col" in tree:
            found.add(tree["col"])
        trees.extend(arg for arg in tree.get("args", []) if isinstance(arg, dict))
    found.update(str(a.column) for a in plan.summed_columns)
    return sorted(found)


def block_partials(plan: QueryPlan, frame: pd.DataFrame, unit_column: str) -> Partials:
    """Bounded partial aggregates of one block, on its dense cell grid.

    Trusted code over one block. A unit's rows all lie in this block, so its bounding only
    looks at this block; "first" means in the block's row order (sorted by unit, then as
    stored), a function of the unit's own rows.
    """
    sizes = [len(key.domain) for key in plan.group_by]
    cells = math.prod(sizes)
    keep = np.ones(len(frame), dtype=bool)
    if plan.filter is not None:
        selected = evaluate(plan.filter, frame)
        if isinstance(selected, pd.Series):
            keep &= selected.fillna(False).to_numpy(dtype=bool)
        elif not selected:
            keep[:] = False
    codes = []
    for key in plan.group_by:
        values = evaluate(key.expression, frame)
        code = pd.Index(key.domain).get_indexer(pd.Series(values, index=frame.index))
        keep &= code >= 0  # outside the public domain: never released, so never counted
        codes.append(code)
    rows = np.flatnonzero(keep)
    cell = (
        np.ravel_multi_index([c[rows] for c in codes], sizes)
        if codes
        else np.zeros(len(rows), dtype=np.int64)
    )
    units = frame[unit_column].to_numpy()[rows]
    kept = _bounded(units, cell, cells, plan.max_groups_per_unit, plan.max_rows_per_unit)
    rows, cell = rows[kept], cell[kept]
    counts = np.bincount(cell, minlength=cells).astype(np.int64)
    sums = {}
    for aggregate, power in [(a, 1) for a in plan.summed_columns] + [
        (a, 2) for a in plan.squared_columns
    ]:
        values = frame[aggregate.column].to_numpy(dtype=float, na_value=np.nan)[rows]
        clipped = np.nan_to_num(np.clip(values, aggregate.lo, aggregate.hi), nan=0.0)
        quantity = f"{'sum' if power == 1 else 'sumsq'}:{aggregate.column}"
        sums[quantity] = np.bincount(cell, weights=clipped**power, minlength=cells)
    return Partials(counts, sums)


def _rank_in_runs(keys: np.ndarray, order: np.ndarray) -> np.ndarray:
    """For items sorted by ``order`` (grouping equal ``keys`` together, stably): each item's
    position within its run of equal keys."""
    ordered = keys[order]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    lengths = np.diff(np.r_[starts, len(ordered)])
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order)) - np.repeat(starts, lengths)
    return rank


def _bounded(units: np.ndarray, cell: np.ndarray, cells: int, groups: int, rows: int) -> np.ndarray:
    """Mask of the rows kept: each unit's first ``groups`` cells, its first ``rows`` in each."""
    if len(units) == 0:
        return np.zeros(0, dtype=bool)
    unit_code, _ = pd.factorize(units)
    pair = unit_code.astype(np.int64) * cells + cell
    pairs, first_row, pair_of_row = np.unique(pair, return_index=True, return_inverse=True)
    pair_unit = pairs // cells
    by_unit_then_first = np.lexsort((first_row, pair_unit))
    pair_allowed = _rank_in_runs(pair_unit, by_unit_then_first) < groups
    row_rank = _rank_in_runs(pair_of_row, np.argsort(pair_of_row, kind="stable"))
    return pair_allowed[pair_of_row] & (row_rank < rows)


def combine_partials(partials: Iterable[Partials]) -> Partials:
    """Sum block partials cell by cell (blocks hold disjoint units)."""
    total: Partials | None = None
    for partial in partials:
        total = partial if total is None else total + partial
    if total is None:
        raise ValueError("no block partials to combine")
    return total


# --- release: noise once over the combined partials -------------------------------------------


@dataclass(frozen=True)
class QuantityNoise:
    """One noisy quantity (the counts, or one column's sums) over every cell."""

    quantity: str
    sensitivity: float
    epsilon: float
    noise_scale: float
    error_bound_95: float


def plan_query_noise(plan: QueryPlan, epsilon: float) -> list[QuantityNoise]:
    """Noise of every quantity, from public parameters only (what ``/estimate`` returns)."""
    quantities: list[QuantityNoise] = []
    needs_count = any(a.op in NEEDS_COUNT for a in plan.aggregates)
    share = epsilon / (int(needs_count) + len(plan.summed_columns) + len(plan.squared_columns))
    contributions = plan.max_groups_per_unit * plan.max_rows_per_unit
    if needs_count:
        bound = geometric_error_bound(contributions, share)
        quantities.append(
            QuantityNoise(COUNT, contributions, share, contributions / share, float(bound))
        )
    summed = [("sum", a, a.magnitude) for a in plan.summed_columns]
    squared = [("sumsq", a, a.square_magnitude) for a in plan.squared_columns]
    for prefix, aggregate, magnitude in summed + squared:
        delta = contributions * magnitude
        scale = laplace_scale(delta, share)
        name = f"{prefix}:{aggregate.column}"
        quantities.append(QuantityNoise(name, delta, share, scale, laplace_error_bound(scale)))
    return quantities


@dataclass(frozen=True)
class ReleasedCell:
    keys: dict[str, Any]
    name: str
    value: float
    noise_scale: float
    error_bound_95: float
    epsilon: float  # of the noisy quantities behind this value


def release_query(plan: QueryPlan, combined: Partials, epsilon: float) -> list[ReleasedCell]:
    """Draw the noise once per quantity and cell; every cell of the domain is released."""
    noise = {q.quantity: q for q in plan_query_noise(plan, epsilon)}
    names = [key.name for key in plan.group_by]
    released: list[ReleasedCell] = []
    for index, cell in enumerate(plan.cells):
        exact = combined.cell(index)
        noisy: dict[str, float] = {}
        for quantity, spec in noise.items():
            if quantity == COUNT:
                count = round(exact[COUNT])
                noisy[COUNT] = float(geometric_release(count, int(spec.sensitivity), spec.epsilon))
            else:
                noisy[quantity] = laplace_release(exact[quantity], spec.sensitivity, spec.epsilon)
        keys = dict(zip(names, cell, strict=True))
        for aggregate in plan.aggregates:
            cell_out = _cell(keys, aggregate, noisy, noise)
            value = round_release(cell_out.value, cell_out.noise_scale)
            if aggregate.op == "mean":  # still within its bounds after rounding
                value = min(max(value, aggregate.lo), aggregate.hi)
            released.append(dataclasses.replace(cell_out, value=value))
    return released


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

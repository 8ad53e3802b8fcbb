"""Query mode: a declarative plan run by trusted code, with user-level contribution bounding.

A plan filters rows, groups them by keys with a *public* domain (a dataset key set such as the
stations, or ``hour``/``weekday`` of a timestamp), and asks for ``count``, ``sum`` or ``mean``
aggregates with declared bounds. Every cell of the key domain is released, empty or not, so
which groups exist is never revealed.

Privacy unit and bounding. Neighbouring datasets differ in *all rows of one unit* (a card, a
taxi). Each block computes partial aggregates after bounding every unit's contribution:

* a unit counts in at most ``G = max_groups_per_unit`` groups (its first ``G`` groups in the
  block's order, which is a function of that unit's own rows only), and
* in each of them with at most ``R = max_rows_per_unit`` rows (its first ``R``);
* summed values are clipped to ``[lo, hi]``.

Sensitivity (L1 over the whole vector of cells, add/remove one unit): the unit's rows move at
most ``G`` cells, each by at most ``R`` rows, so counts move by at most ``G·R`` in total and
sums by at most ``G·R·max(|lo|, |hi|)``. Each noisy quantity (the counts, and one sum per summed
column) gets an even share of ε; counts take two-sided geometric noise (integers), sums
float-safe Laplace, each at L1 sensitivity / share: the whole release is ε-DP by sequential
composition. Means are noisy sum / noisy count: post-processing, no extra budget.

Blocks hold disjoint sets of units, so per-block partials are summed before the noise is drawn
once; the same blocks serve aggregate mode, and the partials can come from many workers.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd

from privacy.expressions import ExpressionError, evaluate, key_domain, validate
from privacy.mechanisms import (
    geometric_error_bound,
    geometric_release,
    laplace_error_bound,
    laplace_release,
    laplace_scale,
)

AGGREGATES = ("count", "sum", "mean")
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


def block_partials(plan: QueryPlan, frame: pd.DataFrame, unit_column: str) -> pd.DataFrame:
    """Per cell: the row count and the clipped sum of each summed column, after bounding.

    Trusted code over one block. A unit's rows all lie in this block, so its bounding only
    looks at this block.
    """
    rows = frame
    if plan.filter is not None:
        keep = evaluate(plan.filter, frame)
        keep = keep.fillna(False).astype(bool) if isinstance(keep, pd.Series) else bool(keep)
        rows = frame[keep] if isinstance(keep, pd.Series) else (frame if keep else frame.iloc[:0])
    table = pd.DataFrame({"_unit": rows[unit_column].to_numpy()}, index=rows.index)
    names = [key.name for key in plan.group_by]
    inside = pd.Series(True, index=rows.index)
    for key in plan.group_by:
        values = evaluate(key.expression, rows)
        table[key.name] = values
        inside &= pd.Series(values, index=rows.index).isin(key.domain)
    for aggregate in plan.summed_columns:
        clipped = rows[aggregate.column].astype(float).clip(aggregate.lo, aggregate.hi)
        table[f"sum:{aggregate.column}"] = clipped.fillna(0.0)  # a missing value adds nothing
    table = table[inside.to_numpy()]
    table = _bound(table, names, plan.max_groups_per_unit, plan.max_rows_per_unit)
    table["count"] = 1
    measures = ["count"] + [f"sum:{a.column}" for a in plan.summed_columns]
    if names:
        return table.groupby(names, sort=False)[measures].sum()
    return table[measures].sum().to_frame().T.set_axis(pd.Index([()]), axis=0)


def _bound(table: pd.DataFrame, names: list[str], groups: int, rows: int) -> pd.DataFrame:
    """Keep each unit's first ``groups`` groups and, in each, its first ``rows`` rows."""
    if table.empty:
        return table
    unit_and_group = ["_unit", *names]
    firsts = table.drop_duplicates(unit_and_group)[unit_and_group]
    allowed = firsts[firsts.groupby("_unit", sort=False).cumcount() < groups]
    table = table.merge(allowed, on=unit_and_group, how="inner")
    return table[table.groupby(unit_and_group, sort=False).cumcount() < rows]


def combine_partials(partials: Iterable[pd.DataFrame]) -> pd.DataFrame:
    """Sum block partials cell by cell (blocks hold disjoint units)."""
    total: pd.DataFrame | None = None
    for partial in partials:
        total = partial if total is None else total.add(partial, fill_value=0)
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
    needs_count = any(a.op in (COUNT, "mean") for a in plan.aggregates)
    share = epsilon / (int(needs_count) + len(plan.summed_columns))
    contributions = plan.max_groups_per_unit * plan.max_rows_per_unit
    if needs_count:
        bound = geometric_error_bound(contributions, share)
        quantities.append(
            QuantityNoise(COUNT, contributions, share, contributions / share, float(bound))
        )
    for aggregate in plan.summed_columns:
        delta = contributions * aggregate.magnitude
        scale = laplace_scale(delta, share)
        quantities.append(
            QuantityNoise(
                f"sum:{aggregate.column}", delta, share, scale, laplace_error_bound(scale)
            )
        )
    return quantities


@dataclass(frozen=True)
class ReleasedCell:
    keys: dict[str, Any]
    name: str
    value: float
    noise_scale: float
    error_bound_95: float
    epsilon: float  # of the noisy quantities behind this value


def release_query(plan: QueryPlan, combined: pd.DataFrame, epsilon: float) -> list[ReleasedCell]:
    """Draw the noise once per quantity and cell; every cell of the domain is released."""
    noise = {q.quantity: q for q in plan_query_noise(plan, epsilon)}
    names = [key.name for key in plan.group_by]
    exact_by_cell = {
        (key if isinstance(key, tuple) else (key,)): row
        for key, row in combined.to_dict("index").items()
    }
    released: list[ReleasedCell] = []
    for cell in plan.cells:
        exact = exact_by_cell.get(cell, {})
        noisy: dict[str, float] = {}
        for quantity, spec in noise.items():
            value = float(exact.get(quantity, 0.0))
            if quantity == COUNT:
                noisy[quantity] = float(
                    geometric_release(round(value), int(spec.sensitivity), spec.epsilon)
                )
            else:
                noisy[quantity] = laplace_release(value, spec.sensitivity, spec.epsilon)
        keys = dict(zip(names, cell, strict=True))
        for aggregate in plan.aggregates:
            released.append(_cell(keys, aggregate, noisy, noise))
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
    # mean: post-processing of two noisy releases; its error is propagated from theirs at the
    # released count (no data is touched to compute it).
    count = noise[COUNT]
    denominator = max(noisy[COUNT], 1.0)
    mean = min(max(total / denominator, aggregate.lo), aggregate.hi)
    bound = (sums.error_bound_95 + aggregate.magnitude * count.error_bound_95) / denominator
    scale = (sums.noise_scale + aggregate.magnitude * count.noise_scale) / denominator
    bound = min(bound, aggregate.hi - aggregate.lo)
    return ReleasedCell(keys, aggregate.name, mean, scale, bound, sums.epsilon + count.epsilon)

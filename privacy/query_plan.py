"""Query plans: the JSON a contestant sends, checked against the dataset's public policy.

Nothing here reads data. A plan that parses can run with the guarantee ``privacy.query``
states; anything else is a ``PlanError`` whose message names the fix.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, TypeGuard

from privacy.discrete import fixed_point_step, round_half_even
from privacy.expressions import (
    BOOL,
    NUMBER,
    ExpressionError,
    column_kind,
    key_domain,
    kind_of,
    validate,
)

AGGREGATES = ("count", "sum", "mean", "variance", "quantile")
NEEDS_COUNT = frozenset({"count", "mean", "variance"})
SUMMED = frozenset({"sum", "mean", "variance"})
COUNT = "count"
QUANTILE = "quantile"
MAX_BINS = 1_000
#: Cells x bins of every quantile histogram: each bin is one noise draw.
MAX_HISTOGRAM_BINS = 100_000


class PlanError(ValueError):
    """A plan that cannot run with the stated guarantee; the message names the fix."""


@dataclass(frozen=True)
class GroupKey:
    name: str
    expression: dict[str, Any]
    domain: tuple[Any, ...] | None  # None: no public set; keys come from DP partition selection


@dataclass(frozen=True)
class Aggregate:
    name: str
    op: str
    column: str | None = None
    lo: float = 0.0
    hi: float = 0.0
    q: float = 0.0  # quantile only: which one, in (0, 1)
    bins: int = 0  # quantile only: equal-width bins of [lo, hi] in the histogram behind it

    @property
    def square_magnitude(self) -> float:
        """Largest value one clipped row can add to a sum of squares."""
        return max(self.lo**2, self.hi**2)

    @property
    def magnitude(self) -> float:
        """Largest absolute value one clipped row can add to a sum."""
        return max(abs(self.lo), abs(self.hi))

    @property
    def sum_step(self) -> Fraction:
        """The fixed-point step a row's clipped value is summed in (public: from the bounds)."""
        return fixed_point_step(self.magnitude)

    @property
    def square_step(self) -> Fraction:
        """The fixed-point step of a row's squared clipped value."""
        return fixed_point_step(self.square_magnitude)

    def row_steps(self, power: int) -> int:
        """The most steps one clipped row adds to its sum (power 1) or sum of squares (2)."""
        magnitude, step = (
            (self.magnitude, self.sum_step)
            if power == 1
            else (self.square_magnitude, self.square_step)
        )
        return round_half_even(Fraction(magnitude) / step)


@dataclass(frozen=True)
class QueryPlan:
    filter: dict[str, Any] | None
    group_by: tuple[GroupKey, ...]
    aggregates: tuple[Aggregate, ...]
    max_rows_per_unit: int
    max_groups_per_unit: int
    max_partitions: int = 0  # most keys released when they come from partition selection

    @property
    def public(self) -> bool:
        """Every key has a public domain: the dense grid of cells is released, nothing chosen."""
        return all(key.domain is not None for key in self.group_by)

    @property
    def cells(self) -> list[tuple[Any, ...]]:
        """Every key combination, released whether or not any row falls in it."""
        if not self.public:
            raise ValueError("a plan with keys from partition selection has no fixed grid")
        return list(itertools.product(*(key.domain or () for key in self.group_by)))

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
        """One sum quantity per distinct column (sum, mean and variance of a column share it)."""
        seen: dict[str, Aggregate] = {}
        for aggregate in self.aggregates:
            if aggregate.op in SUMMED and aggregate.column not in seen:
                seen[str(aggregate.column)] = aggregate
        return list(seen.values())

    @property
    def histogram_columns(self) -> list[Aggregate]:
        """One histogram per distinct column of a quantile (all its quantiles share it)."""
        return _histogram_columns(self.aggregates)


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
            if kind_of(raw["filter"], policy.columns) not in (BOOL, NUMBER):
                raise ExpressionError("the filter must be true/false, e.g. a comparison")
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
    _check_shared_bounds(aggregates)
    bins = sum(a.bins for a in _histogram_columns(aggregates))
    if all(key.domain is not None for key in keys):
        grid = math.prod(len(key.domain or ()) for key in keys)
        if grid * len(aggregates) > policy.max_cells:
            raise PlanError(
                f"the plan releases {grid * len(aggregates):,} cells, more than the "
                f"{policy.max_cells:,} allowed; group by fewer keys or filter to fewer values"
            )
        if grid * bins > MAX_HISTOGRAM_BINS:
            raise PlanError(
                f"the quantiles need {grid * bins:,} histogram bins (cells x bins), more than "
                f"the {MAX_HISTOGRAM_BINS:,} allowed; use fewer bins or group by fewer keys"
            )
        partitions = grid
    else:  # keys chosen by the data: release at most this many (those with most units)
        partitions = min(policy.max_cells // len(aggregates), MAX_HISTOGRAM_BINS // max(bins, 1))
    return QueryPlan(
        filter=raw.get("filter"),
        group_by=tuple(keys),
        aggregates=tuple(aggregates),
        max_rows_per_unit=_positive_int(
            raw, "max_rows_per_unit", policy.max_rows_per_unit, policy.max_rows_per_unit
        ),
        max_groups_per_unit=_positive_int(
            raw, "max_groups_per_unit", policy.max_groups_per_unit, policy.max_groups_per_unit
        ),
        max_partitions=partitions,
    )


def _histogram_columns(aggregates: list[Aggregate] | tuple[Aggregate, ...]) -> list[Aggregate]:
    """One histogram per distinct column of a quantile (all its quantiles share it)."""
    seen: dict[str, Aggregate] = {}
    for aggregate in aggregates:
        if aggregate.op == QUANTILE and aggregate.column not in seen:
            seen[str(aggregate.column)] = aggregate
    return list(seen.values())


def _check_shared_bounds(aggregates: list[Aggregate]) -> None:
    """Aggregates of one column share its clipped sum or histogram, so they share its bounds."""
    first: dict[str, Aggregate] = {}
    for aggregate in aggregates:
        if aggregate.column is None:
            continue
        seen = first.setdefault(aggregate.column, aggregate)
        if (seen.lo, seen.hi) != (aggregate.lo, aggregate.hi):
            raise PlanError(
                f"aggregates {seen.name!r} and {aggregate.name!r} clip {aggregate.column!r} "
                f"to different bounds; give every aggregate of one column the same lo and hi"
            )
        if QUANTILE == seen.op == aggregate.op and seen.bins != aggregate.bins:
            raise PlanError(
                f"quantiles {seen.name!r} and {aggregate.name!r} of {aggregate.column!r} use "
                "different bins; give them the same bins (they share one histogram)"
            )


def _group_key(item: object, policy: DatasetPolicy) -> GroupKey:
    if isinstance(item, str):
        item = {"name": item, "expr": {"col": item}}
    if not isinstance(item, dict) or set(item) != {"name", "expr"}:
        raise PlanError("a group_by item is a column name or {'name': ..., 'expr': {...}}")
    validate(item["expr"], policy.columns)
    kind_of(item["expr"], policy.columns)
    if item["expr"].get("col") == policy.unit_column:
        raise PlanError(
            f"group_by {item['name']!r} is the privacy unit itself: no group would ever be "
            "released; group by what units have in common (a station, a line, an hour)"
        )
    domain = key_domain(item["expr"], policy.key_sets)
    return GroupKey(str(item["name"]), item["expr"], None if domain is None else tuple(domain))


def _finite_number(value: object) -> TypeGuard[float]:
    """A JSON number (a bool counts, as ``isinstance`` has it) that is neither inf nor nan."""
    return isinstance(value, (int, float)) and math.isfinite(value)


def _aggregate(item: object, policy: DatasetPolicy) -> Aggregate:
    if not isinstance(item, dict) or not isinstance(item.get("name"), str) or not item["name"]:
        raise PlanError("an aggregate is {'name': ..., 'op': 'count'|'sum'|'mean'|..., ...}")
    op = item.get("op")
    if op not in AGGREGATES:
        raise PlanError(f"aggregate {item['name']!r}: op must be one of {', '.join(AGGREGATES)}")
    if op == COUNT:
        return Aggregate(item["name"], COUNT)
    column = item.get("column")
    if not isinstance(column, str) or column not in policy.columns or column == policy.unit_column:
        raise PlanError(f"aggregate {item['name']!r}: 'column' must name a numeric column")
    if column_kind(policy.columns[column]) != NUMBER:
        raise PlanError(
            f"aggregate {item['name']!r}: column {column!r} is of type "
            f"{policy.columns[column]}, not a number; {op} takes a numeric column"
        )
    lo, hi = item.get("lo"), item.get("hi")
    if lo is None and hi is None and column in policy.bounds:
        lo, hi = policy.bounds[column]
    if not (_finite_number(lo) and _finite_number(hi)) or lo >= hi:
        raise PlanError(
            f"aggregate {item['name']!r} needs finite bounds lo < hi (or dataset bounds for "
            f"{column!r}); got lo={lo!r}, hi={hi!r}"
        )
    if op != QUANTILE:
        if set(item) - {"name", "op", "column", "lo", "hi"}:
            raise PlanError(f"aggregate {item['name']!r}: q and bins belong to quantiles only")
        return Aggregate(item["name"], op, column, float(lo), float(hi))
    q, bins = item.get("q"), item.get("bins", 100)
    if isinstance(q, bool) or not isinstance(q, (int, float)) or not 0 < q < 1:
        raise PlanError(
            f"quantile {item['name']!r} needs q strictly between 0 and 1 (0.5 for the median, "
            f"0.9 for p90); got {q!r}"
        )
    if isinstance(bins, bool) or not isinstance(bins, int) or not 2 <= bins <= MAX_BINS:
        raise PlanError(
            f"quantile {item['name']!r}: bins must be an integer from 2 to {MAX_BINS}; got {bins!r}"
        )
    return Aggregate(item["name"], op, column, float(lo), float(hi), float(q), bins)

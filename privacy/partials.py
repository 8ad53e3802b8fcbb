"""Per-block partial aggregates with user-level contribution bounding (trusted code).

Each block computes, on the plan's dense grid of cells, row counts, clipped sums (and sums of
squares) per column and, for quantiles, a histogram of clipped values per column — after
bounding every unit to its first ``G`` cells and its first ``R`` rows in each (see
``privacy.query`` for the sensitivity this gives). Blocks hold disjoint units, so partials of
all blocks add up to the partials of the whole table: the noise is drawn once, afterwards.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from privacy.expressions import evaluate
from privacy.query_plan import COUNT, QueryPlan


@dataclass(frozen=True)
class Partials:
    """Per cell of the plan's dense key grid (``plan.cells`` order): row counts, clipped sums
    per summed column (``sum:col``, ``sumsq:col``), and histograms of clipped values, one row of
    bins per cell (``hist:col``). Partials of blocks with disjoint units add up to the whole."""

    counts: np.ndarray
    sums: dict[str, np.ndarray]
    histograms: dict[str, np.ndarray]

    def __add__(self, other: Partials) -> Partials:
        return Partials(
            self.counts + other.counts,
            {quantity: total + other.sums[quantity] for quantity, total in self.sums.items()},
            {name: bins + other.histograms[name] for name, bins in self.histograms.items()},
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
    found.update(str(a.column) for a in plan.summed_columns + plan.histogram_columns)
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
    histograms = {}
    for aggregate in plan.histogram_columns:
        values = frame[aggregate.column].to_numpy(dtype=float, na_value=np.nan)[rows]
        present = ~np.isnan(values)  # a missing value has no rank: it is in no bin
        width = (aggregate.hi - aggregate.lo) / aggregate.bins
        index = np.clip((values[present] - aggregate.lo) // width, 0, aggregate.bins - 1)
        flat = cell[present] * aggregate.bins + index.astype(np.int64)
        histograms[f"hist:{aggregate.column}"] = np.bincount(
            flat, minlength=cells * aggregate.bins
        ).reshape(cells, aggregate.bins)
    return Partials(counts, sums, histograms)


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

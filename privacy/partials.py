"""Per-block partial aggregates with user-level contribution bounding (trusted code).

Each block computes, on the plan's dense grid of cells, row counts, clipped sums (and sums of
squares) per column and, for quantiles, a histogram of clipped values per column — after
bounding every unit to its first ``G`` cells and its first ``R`` rows in each (see
``privacy.query`` for the sensitivity this gives). Blocks hold disjoint units, so partials of
all blocks add up to the partials of the whole table: the noise is drawn once, afterwards.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from privacy.expressions import evaluate
from privacy.query_plan import COUNT, QueryPlan


@dataclass(frozen=True)
class Partials:
    """Per cell: row counts, clipped sums per summed column (``sum:col``, ``sumsq:col``), and
    histograms of clipped values, one row of bins per cell (``hist:col``). Partials of blocks
    with disjoint units add up to the whole.

    Cells are the plan's dense grid (``plan.cells`` order) when every key is public; otherwise
    ``keys`` lists the key tuples this block saw, and ``units`` counts the distinct units kept
    in each (what partition selection thresholds).
    """

    counts: np.ndarray
    sums: dict[str, np.ndarray]
    histograms: dict[str, np.ndarray]
    keys: tuple[tuple[Any, ...], ...] | None = None
    units: np.ndarray | None = None

    def __add__(self, other: Partials) -> Partials:
        if self.keys is None or other.keys is None:
            return Partials(
                self.counts + other.counts,
                {quantity: total + other.sums[quantity] for quantity, total in self.sums.items()},
                {name: bins + other.histograms[name] for name, bins in self.histograms.items()},
            )
        keys = tuple(dict.fromkeys(self.keys + other.keys))
        where = {key: index for index, key in enumerate(keys)}
        mine = np.array([where[key] for key in self.keys], dtype=np.int64)
        theirs = np.array([where[key] for key in other.keys], dtype=np.int64)

        def union(a: np.ndarray, b: np.ndarray) -> np.ndarray:
            out = np.zeros((len(keys), *a.shape[1:]), dtype=np.result_type(a, b))
            np.add.at(out, mine, a)
            np.add.at(out, theirs, b)
            return out

        assert self.units is not None and other.units is not None
        return Partials(
            union(self.counts, other.counts),
            {quantity: union(total, other.sums[quantity]) for quantity, total in self.sums.items()},
            {name: union(bins, other.histograms[name]) for name, bins in self.histograms.items()},
            keys,
            union(self.units, other.units),
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
    """Bounded partial aggregates of one block, on its dense cell grid (or, for keys without
    a public set, on the key combinations the block saw).

    Trusted code over one block. A unit's rows all lie in this block, so its bounding only
    looks at this block; "first" means in the block's row order (sorted by unit, then as
    stored), a function of the unit's own rows.
    """
    keep = np.ones(len(frame), dtype=bool)
    if plan.filter is not None:
        selected = evaluate(plan.filter, frame)
        if isinstance(selected, pd.Series):
            keep &= selected.fillna(False).to_numpy(dtype=bool)
        elif not selected:
            keep[:] = False
    codes, domains = [], []
    for key in plan.group_by:
        values = pd.Series(evaluate(key.expression, frame), index=frame.index)
        if key.domain is not None:
            code, domain = _domain_index(key.domain).get_indexer(values), key.domain
        else:  # a missing key is no key: its rows are in no group
            code, uniques = pd.factorize(values, use_na_sentinel=True)
            domain = tuple(_plain(value) for value in uniques)
        keep &= code >= 0  # outside the public domain: never released, so never counted
        codes.append(code)
        domains.append(domain)
    rows = np.flatnonzero(keep)
    sizes = [max(len(domain), 1) for domain in domains]
    cell = (
        np.ravel_multi_index([c[rows] for c in codes], sizes)
        if codes
        else np.zeros(len(rows), dtype=np.int64)
    )
    keys = None
    if plan.public:
        cells = math.prod(sizes)
    else:  # only the key combinations this block saw
        seen, cell = np.unique(cell, return_inverse=True)
        cells = len(seen)
        parts = np.unravel_index(seen, sizes) if len(seen) else [[] for _ in sizes]
        keys = tuple(zip(*(
            [domain[i] for i in part] for domain, part in zip(domains, parts, strict=True)
        ), strict=True))  # fmt: skip
    units = frame[unit_column].to_numpy()[rows]
    kept = _bounded(units, cell, cells, plan.max_groups_per_unit, plan.max_rows_per_unit)
    rows, cell, units = rows[kept], cell[kept], units[kept]
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
    if keys is None:
        return Partials(counts, sums, histograms)
    unit_code, _ = pd.factorize(units)
    pairs = np.unique(unit_code.astype(np.int64) * max(cells, 1) + cell)
    distinct = np.bincount(pairs % max(cells, 1), minlength=cells).astype(np.int64)
    return Partials(counts, sums, histograms, keys, distinct)


@functools.lru_cache(maxsize=64)
def _domain_index(domain: tuple[Any, ...]) -> pd.Index:
    """One lookup index per public key set, reused by every block (building it is not free)."""
    return pd.Index(domain)


def _plain(value: Any) -> Any:
    """A key as a plain JSON-able Python value (numpy and pandas scalars unwrapped)."""
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    return value.item() if hasattr(value, "item") else value


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

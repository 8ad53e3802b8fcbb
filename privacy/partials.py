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
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from privacy.discrete import FIXED_POINT_BITS
from privacy.expressions import evaluate
from privacy.query_plan import QueryPlan


@dataclass(frozen=True)
class Partials:
    """Per cell: row counts, clipped sums per summed column (``sum:col``, ``sumsq:col``, in
    whole fixed-point steps of ``Aggregate.sum_step`` / ``square_step``: exact integers), and
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
        values = evaluate(key.expression, frame)
        if not isinstance(values, pd.Series):  # a literal key: one value for every row
            values = pd.Series(values, index=frame.index)
        if key.domain is not None:
            code, domain = _domain_lookup(key.domain).codes(values.to_numpy()), key.domain
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
        parts: Sequence[Iterable[int]] = (
            np.unravel_index(seen, sizes) if len(seen) else [[] for _ in sizes]
        )
        keys = tuple(zip(*(
            [domain[i] for i in part] for domain, part in zip(domains, parts, strict=True)
        ), strict=True))  # fmt: skip
    units = frame[unit_column].to_numpy()[rows]
    kept, opens = _bounded(units, cell, cells, plan.max_groups_per_unit, plan.max_rows_per_unit)
    rows, cell, opens = rows[kept], cell[kept], opens[kept]
    counts = np.bincount(cell, minlength=cells).astype(np.int64)
    sums = {}
    for aggregate, power in [(a, 1) for a in plan.summed_columns] + [
        (a, 2) for a in plan.squared_columns
    ]:
        values = frame[aggregate.column].to_numpy(dtype=float, na_value=np.nan)[rows]
        clipped = np.nan_to_num(np.clip(values, aggregate.lo, aggregate.hi), nan=0.0)
        step = float(aggregate.sum_step if power == 1 else aggregate.square_step)
        steps = np.rint(clipped**power / step).astype(np.int64)  # exact: step is a power of 2
        quantity = f"{'sum' if power == 1 else 'sumsq'}:{aggregate.column}"
        sums[quantity] = _exact_bincount(cell, steps, cells)
    histograms = {}
    for aggregate in plan.histogram_columns:
        values = frame[aggregate.column].to_numpy(dtype=float, na_value=np.nan)[rows]
        present = ~np.isnan(values)  # a missing value has no rank: it is in no bin
        width = (aggregate.hi - aggregate.lo) / aggregate.bins
        # clipped first: ±inf would make the floor division NaN and the bin index garbage
        clipped = np.clip(values[present], aggregate.lo, aggregate.hi)
        index = np.clip((clipped - aggregate.lo) // width, 0, aggregate.bins - 1)
        flat = cell[present] * aggregate.bins + index.astype(np.int64)
        histograms[f"hist:{aggregate.column}"] = np.bincount(
            flat, minlength=cells * aggregate.bins
        ).reshape(cells, aggregate.bins)
    if keys is None:
        return Partials(counts, sums, histograms)
    # a kept pair keeps its opening row (R >= 1): counting those counts distinct units per key
    distinct = np.bincount(cell[opens], minlength=cells).astype(np.int64)
    return Partials(counts, sums, histograms, keys, distinct)


def _exact_bincount(cell: np.ndarray, steps: np.ndarray, cells: int) -> np.ndarray:
    """Integer sums of ``steps`` per cell, exactly (float bincount is exact below 2^53)."""
    if len(steps) * 2 ** (FIXED_POINT_BITS + 1) < 2**53:
        return np.bincount(cell, weights=steps, minlength=cells).astype(np.int64)
    out = np.zeros(cells, dtype=np.int64)
    np.add.at(out, cell, steps)
    return out


#: Widest span of integer keys looked up through a dense table (8 bytes a slot: 32 MB at most).
MAX_DENSE_SPAN = 4_000_000


@dataclass(frozen=True)
class _DomainLookup:
    """Position of each value in a public key set, or -1 for a value outside it.

    Integer key sets (stations, lines, hours) get a dense table over their span, so a block's
    codes are one subtraction and one gather instead of a hash lookup per row; anything else
    goes through a pandas index (equal results, tested).
    """

    index: pd.Index
    low: int = 0
    table: np.ndarray | None = None

    def codes(self, values: np.ndarray) -> np.ndarray:
        if self.table is None or values.dtype.kind not in "iu":
            return self.index.get_indexer(values)
        offsets = values.astype(np.int64, copy=False) - self.low
        inside = (offsets >= 0) & (offsets < len(self.table))
        return np.where(inside, self.table[np.where(inside, offsets, 0)], -1)


@functools.lru_cache(maxsize=64)
def _domain_lookup(domain: tuple[Any, ...]) -> _DomainLookup:
    """One lookup per public key set, reused by every block (building it is not free)."""
    index = pd.Index(domain)
    integers = all(isinstance(v, int | np.integer) and not isinstance(v, bool) for v in domain)
    if not domain or not integers or not index.is_unique:
        return _DomainLookup(index)
    low, high = int(min(domain)), int(max(domain))
    if high - low >= MAX_DENSE_SPAN:
        return _DomainLookup(index)
    table = np.full(high - low + 1, -1, dtype=np.int64)
    table[np.asarray(domain, dtype=np.int64) - low] = np.arange(len(domain))
    return _DomainLookup(index, low, table)


def _plain(value: Any) -> Any:
    """A key as a plain JSON-able Python value (numpy and pandas scalars unwrapped)."""
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    return value.item() if hasattr(value, "item") else value


def _bounded(
    units: np.ndarray, cell: np.ndarray, cells: int, groups: int, rows: int
) -> tuple[np.ndarray, np.ndarray]:
    """Rows kept — each unit's first ``groups`` cells, its first ``rows`` in each, "first" in
    row order — and which kept rows open their (unit, cell) pair (what partition selection
    counts: a unit's distinct cells).

    Blocks store each unit's rows together (sorted by unit), so the common case needs one
    hash pass and one nearly-sorted stable sort; a frame whose units are scattered is first
    grouped by a stable sort, which keeps each unit's rows in their order.
    """
    if len(units) == 0:
        empty = np.zeros(0, dtype=bool)
        return empty, empty
    if units.dtype.kind in "iu" and np.all(units[1:] >= units[:-1]):  # as blocks are stored
        unit_code = np.cumsum(np.r_[0, units[1:] != units[:-1]])
        return _bounded_runs(unit_code, cell, cells, groups, rows)
    unit_code, _ = pd.factorize(units)  # numbered by first appearance
    if np.all(unit_code[1:] >= unit_code[:-1]):  # every unit's rows are contiguous
        return _bounded_runs(unit_code, cell, cells, groups, rows)
    together = np.argsort(unit_code, kind="stable")
    kept, opens = _bounded_runs(unit_code[together], cell[together], cells, groups, rows)
    kept_rows, opens_rows = np.empty_like(kept), np.empty_like(opens)
    kept_rows[together], opens_rows[together] = kept, opens
    return kept_rows, opens_rows


def _bounded_runs(
    unit_code: np.ndarray, cell: np.ndarray, cells: int, groups: int, rows: int
) -> tuple[np.ndarray, np.ndarray]:
    """``_bounded`` for non-decreasing unit codes (each unit's rows contiguous, in order).

    One stable sort by (unit, cell) ranks each row within its pair; a pair's rank among its
    unit's cells is the number of pairs the unit opened before it, a running count in row
    order restarted at each unit.
    """
    n = len(unit_code)
    pair = unit_code.astype(np.int64) * max(cells, 1) + cell
    order = np.argsort(pair, kind="stable")  # already sorted by unit: only cells move
    ordered = pair[order]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    lengths = np.diff(np.r_[starts, n])
    row_rank = np.empty(n, dtype=np.int64)
    row_rank[order] = np.arange(n) - np.repeat(starts, lengths)
    pair_opener = np.empty(n, dtype=np.int64)
    pair_opener[order] = np.repeat(order[starts], lengths)
    opens = row_rank == 0
    opened = np.cumsum(opens)  # pairs opened up to and including each row
    unit_start = np.r_[True, unit_code[1:] != unit_code[:-1]]
    before_unit = np.maximum.accumulate(np.where(unit_start, opened - opens, 0))
    group_rank = opened - before_unit - 1  # meaningful on opening rows
    kept = (group_rank[pair_opener] < groups) & (row_rank < rows)
    return kept, opens


def combine_partials(partials: Iterable[Partials]) -> Partials:
    """Sum block partials cell by cell (blocks hold disjoint units)."""
    total: Partials | None = None
    for partial in partials:
        total = partial if total is None else total + partial
    if total is None:
        raise ValueError("no block partials to combine")
    return total

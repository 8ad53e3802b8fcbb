"""A plan's answers without noise: what a release of the same partials estimates.

Never released to a contestant. It is what organizers' fidelity reports compare (a synthetic
sample's answer against the full data's) and what tests measure a release's error against.
Computed from the same bounded partials as a release (``privacy.partials``), so the only
difference between this and ``privacy.query.release_query`` is the noise: counts and sums
exact, means and variances their ratios, quantiles read off the exact histogram the way a
release reads them off the noisy one.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from privacy.partials import Partials
from privacy.query import value_at_rank
from privacy.query_plan import COUNT, QUANTILE, Aggregate, QueryPlan

#: (group keys, aggregate name) -> its value, or None where a mean of no rows is undefined.
Answers = dict[tuple[tuple[Any, ...], str], float | None]


def exact_answers(plan: QueryPlan, combined: Partials) -> Answers:
    """Every cell's value of every aggregate: the dense grid of a public plan, or the keys the
    partials saw (no partition selection: nothing here is released)."""
    cells = plan.cells if plan.public else list(combined.keys or ())
    answers: Answers = {}
    for index, keys in enumerate(cells):
        for aggregate in plan.aggregates:
            answers[(tuple(keys), aggregate.name)] = _value(aggregate, combined, index)
    return answers


def _value(aggregate: Aggregate, combined: Partials, index: int) -> float | None:
    count = int(combined.counts[index])
    if aggregate.op == COUNT:
        return float(count)
    if aggregate.op == QUANTILE:
        bins = combined.histograms[f"hist:{aggregate.column}"][index]
        return histogram_quantile(bins, aggregate.lo, aggregate.hi, aggregate.q)
    total = int(combined.sums[f"sum:{aggregate.column}"][index]) * float(aggregate.sum_step)
    if aggregate.op == "sum":
        return total
    if count == 0:
        return None
    mean = total / count
    if aggregate.op == "mean":
        return mean
    squares = int(combined.sums[f"sumsq:{aggregate.column}"][index])
    return max(squares * float(aggregate.square_step) / count - mean**2, 0.0)  # variance


def histogram_quantile(bins: np.ndarray, lo: float, hi: float, q: float) -> float | None:
    """The ``q``-quantile of values binned equally over ``[lo, hi]``, interpolating linearly
    inside its bin (None for an empty histogram)."""
    counts = np.maximum(np.asarray(bins, dtype=float), 0.0)
    total = float(counts.sum())
    if total <= 0:
        return None
    return value_at_rank(counts, np.cumsum(counts), lo, (hi - lo) / len(counts), q * total)


def scaled(answers: Answers, plan: QueryPlan, factor: float) -> Answers:
    """Counts and sums multiplied by ``factor`` (a sample's answers put on the full data's
    scale); means, variances and quantiles do not grow with the rows."""
    grows = {a.name for a in plan.aggregates if a.op in (COUNT, "sum")}
    return {
        key: value * factor if value is not None and key[1] in grows else value
        for key, value in answers.items()
    }

"""The differentially private part of a synthetic public sample: MST's measurements, pure ε,
user-level. Everything after them (fitting a graphical model, sampling rows, decoding values,
making units) is post-processing (``runner/synthesize.py``).

**The mechanism** is MST (McKenna, Miklau and Sheldon, "Winning the NIST Contest: a scalable
and general approach to differentially private synthetic data", JPC 2021): measure every 1-way
marginal, privately select a maximum spanning tree of 2-way marginals (the pairs the 1-way
marginals explain worst), measure those, and fit a graphical model to the noisy marginals
(Private-PGM). MST uses Gaussian noise under zCDP; here every measurement is an exact integer
count plus discrete Laplace noise (``privacy.discrete``, sampled exactly from the OS RNG) and the
selection is permute-and-flip (McKenna and Sheldon, NeurIPS 2020) with exact ``exp(-gamma)`` trials,
so the whole is pure ε-DP, charged like a job's ε, and no float decides a noisy count.

**Neighbours** are two tables one of which has one privacy unit more, with all its rows. Before
anything is counted, each unit keeps at most ``R`` of its rows (a uniform choice among its own
rows, made by the unit's rows alone). Then, for one unit added or removed:

- a marginal (counts of bounded rows per cell) moves by at most ``R`` in L1: the unit's ≤ R
  rows each add one to one cell;
- the rows-per-unit histogram (units with j bounded rows, j = 1..R) moves by 1 in L1: the unit
  is in exactly one bin;
- a pair's selection score ``||x_ab - x̂_ab||_1`` moves by at most ``R``: ``x̂_ab`` (the
  independent estimate, integers rounded from the already released 1-way measurements) is fixed
  given those, and each of the unit's rows changes one ``|x - x̂|`` term by 1.

**Accounting** (basic composition, adaptive choices included): ``ε = ε_units + ε_1 + ε_select +
ε_2`` with ``ε_units = ε/10`` for the histogram (scale ``1/ε_units``), ``ε_1 = 3ε/10`` over the d
1-way marginals (each at scale ``R·d/ε_1``), ``ε_select = 3ε/10`` over the d - 1 rounds of
permute-and-flip (each ``ε_select/(d-1)``-DP at sensitivity R) and ``ε_2 = 3ε/10`` over the d - 1
pairs measured (each at scale ``R·(d-1)/ε_2``). When the organizer names the pairs, nothing is
selected and ``ε_1 = ε_2 = 9ε/20``. The Laplace argument is the one of ``privacy.discrete``: a
count vector of L1 sensitivity Δ plus independent discrete Laplace noise of scale Δ/ε' per cell
is ε'-DP. Bounding every unit to R rows makes the guarantee one about a person (user-level),
not about one trip: without the bound, a commuter with 40 taps would move a marginal by 40.

Encoding is a function of each row alone on public domains: key sets, equal-width bins of the
public bounds (values outside are clipped into the edge bins), a public time grid. A row whose
value is missing or outside a key set is dropped before the bound (a per-row filter: neighbours
stay neighbours). The exact counts (``Tally``) never leave the data's node; the fidelity
report's exact marginals are organizer-only (``docs/threat-model.md``).

No function takes a seed: noise comes from ``secrets``, and the row choice of the bound from a
generator seeded by ``secrets`` (it decides which rows count, never how much noise).
"""

from __future__ import annotations

import itertools
import math
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np
import pandas as pd

from privacy.discrete import bernoulli_exp, discrete_laplace, exact_epsilon

#: Rows per unit the bound allows at most: the noise grows linearly with R.
MAX_ROWS_PER_UNIT = 1_000
#: Cells of all 1-way and 2-way marginals counted together (each 2-way one an int64 array).
MAX_CELLS = 4_000_000
#: Codes an attribute may have: a pair of the largest is then 10^6 cells.
MAX_ATTRIBUTE_SIZE = 10_000


class SynthesisError(ValueError):
    """A synthesis specification that cannot be measured as asked; the message names the fix."""


@dataclass(frozen=True)
class Attribute:
    """A column on a public, finite domain of codes 0..size-1.

    ``category``: code i is ``values[i]``. ``numeric``: ``bins`` equal-width bins of
    ``[lo, hi]``. ``time``: ``bins`` steps of ``step_us`` microseconds from ``start_us``.
    """

    name: str
    kind: str
    values: tuple[object, ...] = ()
    lo: float = 0.0
    hi: float = 0.0
    bins: int = 0
    start_us: int = 0
    step_us: int = 0

    def __post_init__(self) -> None:
        if self.kind == "category" and not self.values:
            raise SynthesisError(f"column {self.name!r}: a category needs its public key set")
        if self.kind == "numeric" and not (
            math.isfinite(self.lo) and math.isfinite(self.hi) and self.lo < self.hi
        ):
            raise SynthesisError(f"column {self.name!r}: bounds must be finite with lo < hi")
        if self.kind in ("numeric", "time") and not 1 <= self.bins <= MAX_ATTRIBUTE_SIZE:
            raise SynthesisError(
                f"column {self.name!r}: {self.bins} bins; use 1 to {MAX_ATTRIBUTE_SIZE}"
            )
        if self.kind == "time" and self.step_us <= 0:
            raise SynthesisError(f"column {self.name!r}: the time grid's step must be > 0")
        if self.kind not in ("category", "numeric", "time"):
            raise SynthesisError(f"column {self.name!r}: unknown kind {self.kind!r}")
        if self.size > MAX_ATTRIBUTE_SIZE:
            raise SynthesisError(
                f"column {self.name!r} has {self.size} public values; at most "
                f"{MAX_ATTRIBUTE_SIZE} can be synthesized (coarsen its key set)"
            )

    @property
    def size(self) -> int:
        return len(self.values) if self.kind == "category" else self.bins

    def encode(self, column: np.ndarray) -> np.ndarray:
        """Codes of one column's values, ``-1`` where the value is missing or outside the key
        set (those rows are dropped). Each code depends on its own value alone."""
        if self.kind == "category":
            return pd.Index(list(self.values)).get_indexer(column).astype(np.int64)
        if self.kind == "numeric":
            values = np.asarray(column, dtype=np.float64)
            width = (self.hi - self.lo) / self.bins
            with np.errstate(invalid="ignore"):
                codes = np.floor((np.clip(values, self.lo, self.hi) - self.lo) / width)
            codes = np.where(np.isnan(values), -1, np.clip(codes, 0, self.bins - 1))
            return codes.astype(np.int64)
        micros = np.asarray(column, dtype="datetime64[us]")
        missing = np.isnat(micros)
        offsets = micros.astype(np.int64) - self.start_us
        codes = np.clip(np.floor_divide(offsets, self.step_us), 0, self.bins - 1)
        return np.where(missing, -1, codes).astype(np.int64)


Pair = tuple[str, str]


@dataclass
class Tally:
    """Exact counts of one table, fed chunk by chunk: every unit's rows must come in one chunk
    (a dataset's blocks are a partition by unit), so the bound of R rows per unit holds.

    Keeps the bounded counts that are measured and, for the organizers' fidelity report, the
    unbounded marginals of the full data. Never leaves the data's node.
    """

    attributes: tuple[Attribute, ...]
    rows_per_unit: int
    bounded: dict[tuple[str, ...], np.ndarray] = field(default_factory=dict)
    full: dict[tuple[str, ...], np.ndarray] = field(default_factory=dict)
    units_histogram: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    rows: int = 0

    def __post_init__(self) -> None:
        if not 1 <= self.rows_per_unit <= MAX_ROWS_PER_UNIT:
            raise SynthesisError(
                f"rows_per_unit must be in 1..{MAX_ROWS_PER_UNIT}; got {self.rows_per_unit}"
            )
        names = [a.name for a in self.attributes]
        if len(set(names)) != len(names):
            raise SynthesisError("each column may be synthesized once")
        cells = sum(a.size for a in self.attributes) + sum(
            a.size * b.size for a, b in itertools.combinations(self.attributes, 2)
        )
        if cells > MAX_CELLS:
            big = max(itertools.combinations(self.attributes, 2), default=None,
                      key=lambda p: p[0].size * p[1].size)  # fmt: skip
            hint = f" (the largest pair: {big[0].name} x {big[1].name})" if big else ""
            raise SynthesisError(
                f"the marginals have {cells:,} cells, over {MAX_CELLS:,}{hint}: use fewer bins "
                "or a coarser time grid"
            )
        for clique in self.cliques():
            shape = tuple(self.attribute(n).size for n in clique)
            self.bounded[clique] = np.zeros(shape, np.int64)
            self.full[clique] = np.zeros(shape, np.int64)
        self.units_histogram = np.zeros(self.rows_per_unit, np.int64)

    def attribute(self, name: str) -> Attribute:
        return next(a for a in self.attributes if a.name == name)

    def cliques(self) -> list[tuple[str, ...]]:
        names = [a.name for a in self.attributes]
        return [(n,) for n in names] + list(itertools.combinations(names, 2))

    def add(self, columns: Mapping[str, np.ndarray], units: np.ndarray) -> None:
        """Count one chunk: encode, drop rows with a missing or unknown value, bound each unit
        to R of its rows (uniformly among them), and add up."""
        codes = {a.name: a.encode(columns[a.name]) for a in self.attributes}
        known = np.ones(len(units), bool)
        for c in codes.values():
            known &= c >= 0
        codes = {name: c[known] for name, c in codes.items()}
        self._count(self.full, codes)
        kept, per_unit = bound_rows(np.asarray(units)[known], self.rows_per_unit)
        self._count(self.bounded, {name: c[kept] for name, c in codes.items()})
        self.units_histogram += np.bincount(per_unit, minlength=self.rows_per_unit + 1)[1:]
        self.rows += int(known.sum())

    def _count(self, into: dict[tuple[str, ...], np.ndarray], codes: Mapping[str, np.ndarray]):
        for clique, counts in into.items():
            flat = np.ravel_multi_index(tuple(codes[n] for n in clique), counts.shape)
            counts += np.bincount(flat, minlength=counts.size).reshape(counts.shape)


def bound_rows(units: np.ndarray, limit: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the rows kept (at most ``limit`` per unit, a uniform choice among the unit's
    rows) and each unit's number of kept rows."""
    if len(units) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    _, inverse = np.unique(units, return_inverse=True)
    shuffle = np.random.default_rng(secrets.randbits(128)).random(len(units))
    order = np.lexsort((shuffle, inverse))
    grouped = inverse[order]
    starts = np.flatnonzero(np.r_[True, grouped[1:] != grouped[:-1]])
    rank = np.arange(len(order)) - np.repeat(starts, np.diff(np.r_[starts, len(order)]))
    kept = np.sort(order[rank < limit])
    return kept, np.minimum(np.bincount(inverse), limit)


@dataclass(frozen=True)
class Split:
    """How ε is divided (exact fractions adding up to ε)."""

    units: Fraction
    one_way: Fraction
    select: Fraction
    two_way: Fraction

    @classmethod
    def of(cls, epsilon: Fraction, attributes: int, chosen: bool) -> Split:
        if attributes == 0:
            return cls(epsilon, Fraction(0), Fraction(0), Fraction(0))
        if attributes == 1:
            return cls(epsilon / 10, epsilon * 9 / 10, Fraction(0), Fraction(0))
        if chosen:
            return cls(epsilon / 10, epsilon * 9 / 20, Fraction(0), epsilon * 9 / 20)
        return cls(epsilon / 10, epsilon * 3 / 10, epsilon * 3 / 10, epsilon * 3 / 10)


@dataclass(frozen=True)
class Measurements:
    """What the mechanism releases: noisy integer counts and the public facts about them."""

    attributes: tuple[Attribute, ...]
    rows_per_unit: int
    units_histogram: tuple[int, ...]  # noisy: units with j rows (j = 1..R), may be negative
    marginals: dict[tuple[str, ...], np.ndarray]  # noisy counts, 1-way and the measured pairs
    scales: dict[tuple[str, ...], Fraction]  # each marginal's discrete Laplace scale
    epsilon: Fraction
    split: Split
    pairs_selected: bool  # chosen by MST's private selection, not named by the organizer

    def one_way(self, name: str) -> np.ndarray:
        return self.marginals[(name,)]


def noisy(counts: np.ndarray, scale: Fraction) -> np.ndarray:
    """Counts plus independent discrete Laplace noise of ``scale`` per cell."""
    noise = np.fromiter((discrete_laplace(scale) for _ in range(counts.size)), np.int64,
                        count=counts.size)  # fmt: skip
    return counts + noise.reshape(counts.shape)


def measure(tally: Tally, epsilon: float, pairs: Sequence[Pair] | None = None) -> Measurements:
    """Release MST's measurements of the tallied table at ``epsilon`` (module docstring).

    ``pairs``: the 2-way marginals the organizer chose; None lets MST select a spanning tree.
    """
    names = [a.name for a in tally.attributes]
    chosen = checked_pairs(pairs, names) if pairs is not None else None
    total = exact_epsilon(epsilon)
    split = Split.of(total, len(names), chosen is not None)
    r, d = tally.rows_per_unit, len(names)
    histogram = tuple(int(v) for v in noisy(tally.units_histogram, 1 / split.units))
    marginals: dict[tuple[str, ...], np.ndarray] = {}
    scales: dict[tuple[str, ...], Fraction] = {}
    if d:
        one_scale = Fraction(r * d) / split.one_way
        for name in names:
            marginals[(name,)] = noisy(tally.bounded[(name,)], one_scale)
            scales[(name,)] = one_scale
    if chosen is None and d >= 2:
        chosen = select_tree(tally, marginals, split.select)
    if chosen:
        two_scale = Fraction(r * len(chosen)) / split.two_way
        for pair in chosen:
            marginals[pair] = noisy(tally.bounded[pair], two_scale)
            scales[pair] = two_scale
    return Measurements(tally.attributes, r, histogram, marginals, scales, total, split,
                        pairs is None)  # fmt: skip


def checked_pairs(pairs: Sequence[Pair], names: list[str]) -> list[Pair]:
    seen: list[Pair] = []
    for pair in pairs:
        a, b = pair
        if a not in names or b not in names or a == b:
            raise SynthesisError(
                f"marginal {a} x {b}: name two different synthesized columns ({', '.join(names)})"
            )
        canonical = (a, b) if names.index(a) < names.index(b) else (b, a)
        if canonical not in seen:
            seen.append(canonical)
    return seen


def independent_estimate(measured: Mapping[tuple[str, ...], np.ndarray], a: str, b: str):
    """The 2-way table the 1-way measurements alone predict (a product), rounded to integers:
    post-processing of released values, so public given them."""
    pa_, pb_ = (_distribution(measured[(n,)]) for n in (a, b))
    total = np.median([np.clip(measured[(n,)], 0, None).sum() for n in (a, b)])
    return np.rint(total * np.outer(pa_, pb_)).astype(np.int64)


def _distribution(counts: np.ndarray) -> np.ndarray:
    clipped = np.clip(counts.astype(np.float64), 0, None)
    s = clipped.sum()
    return clipped / s if s > 0 else np.full(len(counts), 1 / len(counts))


def select_tree(tally: Tally, measured: Mapping[tuple[str, ...], np.ndarray],
                epsilon: Fraction) -> list[Pair]:  # fmt: skip
    """MST's selection: d - 1 rounds of permute-and-flip among the pairs joining two different
    components, scored by how badly the independent estimate misses the bounded counts."""
    names = [a.name for a in tally.attributes]
    scores = {
        pair: int(np.abs(tally.bounded[pair] - independent_estimate(measured, *pair)).sum())
        for pair in itertools.combinations(names, 2)
    }
    component = {name: name for name in names}

    def root(name: str) -> str:
        while component[name] != name:
            name = component[name]
        return name

    step = epsilon / (len(names) - 1)
    chosen: list[Pair] = []
    for _ in range(len(names) - 1):
        candidates = [p for p in scores if root(p[0]) != root(p[1])]
        pick = candidates[permute_and_flip([scores[p] for p in candidates], step,
                                           tally.rows_per_unit)]  # fmt: skip
        chosen.append(pick)
        component[root(pick[0])] = root(pick[1])
    return chosen


def permute_and_flip(scores: Sequence[int], epsilon: Fraction, sensitivity: int) -> int:
    """Index of a high score, ε-DP for integer scores of the given sensitivity (McKenna and
    Sheldon 2020): candidates in a uniformly random order, each kept with probability
    ``exp(ε (s - max) / (2 Δ))``; the best is always kept, so it ends within one pass."""
    if not scores:
        raise SynthesisError("nothing to select from")
    best = max(scores)
    order = list(range(len(scores)))
    for i in range(len(order) - 1, 0, -1):  # Fisher-Yates with the OS RNG
        j = secrets.randbelow(i + 1)
        order[i], order[j] = order[j], order[i]
    for index in order:
        if bernoulli_exp(Fraction(epsilon) * (best - scores[index]) / (2 * sensitivity)):
            return index
    raise AssertionError("unreachable: the best score is kept with probability 1")

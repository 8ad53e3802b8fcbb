"""Sample-and-aggregate release (GUPT, Mohan et al., SIGMOD 2012), exact on a public grid.

The dataset is split into ``k`` disjoint blocks by a keyed hash of the privacy unit, so one
person's rows all lie in one block. Each block's untrusted output is clipped to the declared
``[lo, hi]``, snapped to an integer number of grid steps, the integers are summed exactly, and
discrete Laplace noise (``privacy.discrete``) is added to the integer sum.

Grid. The step ``g`` is the largest power of two ``<= width / (64 · k · ε_i)``, fixed by public
parameters only (bounds, ``k``, the output's ε). A clipped value ``v`` becomes
``n = round(v / g)``, exactly (``g`` is a power of two and ``v / g`` is computed on fractions);
``g`` is at least the float spacing (ulp) at the bounds' magnitude, so every grid point there
is a float, and at most 1/64 of the noise scale, so snapping moves a mean by at most 1/128 of
it (a sum by at most ``k · g / 2``, the same fraction of its larger noise). Bounds too narrow for
their magnitude (``lo = 5e11, hi = nextafter(lo)``) are refused with the smallest width that
works, instead of releasing a value the noise cannot cover (snapping, Mironov 2012; an interval
refined to a power-of-two grid, Haney et al. 2022).

Sensitivity. Adding or removing one person changes the data of exactly one block, hence its
``n`` by at most ``Δ = round(hi / g) - round(lo / g)`` steps: the integer sum ``S`` has L1
sensitivity ``Δ``. ``S + X`` with ``X ~ DLap(Δ / ε_i)`` is ε_i-DP (Canonne, Kamath, Steinke
2020); the released number, ``g · round((S + X) / k)`` for a mean or ``g · (S + X)`` for a sum,
is a function of ``S + X`` and public values only (post-processing), and lies on the grid.

With ``m`` outputs the budget is split evenly (basic composition): each output gets
``ε_i = ε / m`` (an exact fraction), so the whole vector is ε-DP whatever code ran.
The accumulator streams blocks, so memory does not grow with ``k``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from fractions import Fraction

from privacy.discrete import (
    discrete_laplace,
    exact_epsilon,
    pow2_floor,
    round_half_even,
    tail_bound,
)
from privacy.outputs import Combine, OutputSpec, OutputSpecError, validate_output_specs

#: The block grid is at most this fraction of the noise scale.
GRID_PER_NOISE = 64


def clip(value: float, spec: OutputSpec) -> float:
    """Clamp to the declared public bounds (a non-finite value has already become the default)."""
    return min(max(value, spec.lo), spec.hi)


def per_output_epsilon(epsilon: float, outputs: int) -> Fraction:
    """Even split of ε over the declared outputs (basic sequential composition), exactly."""
    return exact_epsilon(epsilon) / outputs


@dataclass(frozen=True)
class Grid:
    """One output's public grid: a power-of-two step and the bounds in steps."""

    step: Fraction
    lo_steps: int
    hi_steps: int

    @property
    def span(self) -> int:
        """The L1 sensitivity of the integer sum, in steps: one block moves at most this far."""
        return self.hi_steps - self.lo_steps

    def snap(self, clipped: float) -> int:
        """A clipped value as whole steps (exact: fractions, ties to even)."""
        return round_half_even(Fraction(clipped) / self.step)


def grid_for(spec: OutputSpec, blocks: int, epsilon_each: Fraction) -> Grid:
    """The grid of ``spec``, or an ``OutputSpecError`` naming the smallest width that works."""
    if blocks < 1:
        raise ValueError("blocks must be >= 1")
    width = Fraction(spec.hi) - Fraction(spec.lo)
    spacing = Fraction(math.ulp(max(abs(spec.lo), abs(spec.hi))))
    wanted = width / (GRID_PER_NOISE * blocks * epsilon_each)
    if wanted < spacing:
        smallest = GRID_PER_NOISE * blocks * epsilon_each * spacing
        raise OutputSpecError(
            f"output {spec.name!r}: bounds [{spec.lo!r}, {spec.hi!r}] are too narrow for their "
            f"magnitude: at ε={float(epsilon_each):g} per output over {blocks} blocks the "
            f"release grid would be finer than the float spacing {float(spacing):g} there, so "
            f"noise could not cover the value; widen them to at least "
            f"{float(smallest) * (1 + 1e-9):.6g} (or shift the values nearer zero, or use a "
            "smaller ε)"
        )
    step = pow2_floor(wanted)
    lo_steps, hi_steps = (round_half_even(Fraction(bound) / step) for bound in (spec.lo, spec.hi))
    return Grid(step, lo_steps, hi_steps)


def sensitivity(spec: OutputSpec, combine: Combine, blocks: int) -> float:
    """L1 sensitivity of one combined output under add/remove-one-unit neighbours (real
    numbers; the release's own, on the grid, is ``Grid.span`` steps)."""
    if blocks < 1:
        raise ValueError("blocks must be >= 1")
    return spec.width / blocks if combine is Combine.MEAN else spec.width


@dataclass(frozen=True)
class NoisePlan:
    """Everything public about a release before any data is touched: usable for estimates.

    ``sensitivity``, ``noise_scale`` and ``error_bound_95`` are in the output's units; the
    release itself is ``grid_step`` times an integer.
    """

    name: str
    sensitivity: float
    epsilon: float
    noise_scale: float
    error_bound_95: float
    grid_step: float


def _plan(
    spec: OutputSpec, combine: Combine, blocks: int, eps_each: Fraction
) -> tuple[NoisePlan, Grid, Fraction]:
    grid = grid_for(spec, blocks, eps_each)
    steps_scale = grid.span / eps_each  # DLap scale of the noise on the integer sum
    per = grid.step / blocks if combine is Combine.MEAN else grid.step
    rounding = grid.step / 2 if combine is Combine.MEAN else Fraction(0)
    plan = NoisePlan(
        name=spec.name,
        sensitivity=float(grid.span * per),
        epsilon=float(eps_each),
        noise_scale=float(steps_scale * per),
        error_bound_95=float(tail_bound(steps_scale) * per + rounding),
        grid_step=float(grid.step),
    )
    return plan, grid, steps_scale


def plan_noise(
    specs: list[OutputSpec], combine: Combine, blocks: int, epsilon: float
) -> list[NoisePlan]:
    """Noise scale and 95 % error bound per output; depends on public parameters only.

    Raises ``OutputSpecError`` for bounds the grid cannot serve (see ``grid_for``).
    """
    validate_output_specs(specs)
    eps_each = per_output_epsilon(epsilon, len(specs))
    return [_plan(spec, combine, blocks, eps_each)[0] for spec in specs]


@dataclass(frozen=True)
class ReleasedValue:
    name: str
    value: float
    noise_scale: float
    error_bound_95: float
    epsilon: float


class BlockAccumulator:
    """Streams clipped block values into exact integer totals; noise is drawn once, at the end.

    Built for one ε: the grid depends on it, so it is fixed before the first block arrives.
    """

    def __init__(
        self, specs: list[OutputSpec], combine: Combine, blocks: int, epsilon: float
    ) -> None:
        validate_output_specs(specs)
        if blocks < 1:
            raise ValueError("blocks must be >= 1")
        self._specs = specs
        self._combine = combine
        self._blocks = blocks
        eps_each = per_output_epsilon(epsilon, len(specs))
        self._plans = {spec.name: _plan(spec, combine, blocks, eps_each) for spec in specs}
        self._seen: set[int] = set()
        self._totals = {spec.name: 0 for spec in specs}

    def add(self, block_index: int, values: dict[str, float]) -> None:
        """Add one block's parsed values; each block counts exactly once."""
        if not 0 <= block_index < self._blocks:
            raise ValueError(f"block index {block_index} outside 0..{self._blocks - 1}")
        if block_index in self._seen:
            raise ValueError(f"block {block_index} added twice")
        self._seen.add(block_index)
        for spec in self._specs:
            grid = self._plans[spec.name][1]
            self._totals[spec.name] += grid.snap(clip(values.get(spec.name, spec.default), spec))

    @property
    def complete(self) -> bool:
        return len(self._seen) == self._blocks

    def _check_complete(self) -> None:
        if not self.complete:
            missing = self._blocks - len(self._seen)
            raise ValueError(f"{missing} block(s) not yet added; every block must count")

    def _on_grid(self, name: str, steps: int) -> float:
        grid = self._plans[name][1]
        if self._combine is Combine.MEAN:
            return float(grid.step * round_half_even(Fraction(steps, self._blocks)))
        return float(grid.step * steps)

    def exact(self) -> dict[str, float]:
        """The noiseless combined values on the grid. Trusted code only: never released."""
        self._check_complete()
        return {name: self._on_grid(name, total) for name, total in self._totals.items()}

    def release(self) -> list[ReleasedValue]:
        """Draw the noise: the one step that spends budget."""
        self._check_complete()
        released = []
        for spec in self._specs:
            plan, _, steps_scale = self._plans[spec.name]
            noisy = self._totals[spec.name] + discrete_laplace(steps_scale)
            released.append(
                ReleasedValue(
                    plan.name, self._on_grid(spec.name, noisy), plan.noise_scale,
                    plan.error_bound_95, plan.epsilon,
                )
            )  # fmt: skip
        return released


def aggregate_and_release(
    block_values: Iterable[dict[str, float]],
    specs: list[OutputSpec],
    combine: Combine,
    blocks: int,
    epsilon: float,
) -> list[ReleasedValue]:
    """Convenience: all ``blocks`` parsed outputs in block order, then one noisy release."""
    accumulator = BlockAccumulator(specs, combine, blocks, epsilon)
    for index, values in enumerate(block_values):
        accumulator.add(index, values)
    return accumulator.release()

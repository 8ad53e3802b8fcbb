"""Sample-and-aggregate release (GUPT, Mohan et al., SIGMOD 2012).

The dataset is split into ``k`` disjoint blocks by a keyed hash of the privacy unit, so one
person's rows all lie in one block. Each block's untrusted output is clipped to the declared
``[lo, hi]``; the clipped values are combined over all ``k`` blocks and Laplace noise is added.

Sensitivity. Adding or removing one person changes the data of exactly one block, hence (at
most) that block's clipped value, by at most ``hi - lo``. With ``k`` fixed:

* ``mean`` over blocks moves by at most ``(hi - lo) / k``;
* ``sum`` over blocks moves by at most ``hi - lo``.

With ``m`` outputs the budget is split evenly (basic composition): each output is released with
``ε / m`` and Laplace scale ``Δ_i · m / ε``, so the whole vector is ε-DP whatever code ran.
The accumulator streams blocks, so memory does not grow with ``k``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from privacy.mechanisms import (
    laplace_error_bound,
    laplace_release,
    laplace_scale,
    round_release,
)
from privacy.outputs import Combine, OutputSpec, validate_output_specs


def clip(value: float, spec: OutputSpec) -> float:
    """Clamp to the declared public bounds (a non-finite value has already become the default)."""
    return min(max(value, spec.lo), spec.hi)


def sensitivity(spec: OutputSpec, combine: Combine, blocks: int) -> float:
    """L1 sensitivity of one combined output under add/remove-one-unit neighbours."""
    if blocks < 1:
        raise ValueError("blocks must be >= 1")
    return spec.width / blocks if combine is Combine.MEAN else spec.width


def per_output_epsilon(epsilon: float, outputs: int) -> float:
    """Even split of ε over the declared outputs (basic sequential composition)."""
    return epsilon / outputs


@dataclass(frozen=True)
class NoisePlan:
    """Everything public about a release before any data is touched: usable for estimates."""

    name: str
    sensitivity: float
    epsilon: float
    noise_scale: float
    error_bound_95: float


def plan_noise(
    specs: list[OutputSpec], combine: Combine, blocks: int, epsilon: float
) -> list[NoisePlan]:
    """Noise scale and 95 % error bound per output; depends on public parameters only."""
    validate_output_specs(specs)
    eps_each = per_output_epsilon(epsilon, len(specs))
    plans = []
    for spec in specs:
        delta = sensitivity(spec, combine, blocks)
        scale = laplace_scale(delta, eps_each)
        plans.append(NoisePlan(spec.name, delta, eps_each, scale, laplace_error_bound(scale)))
    return plans


@dataclass(frozen=True)
class ReleasedValue:
    name: str
    value: float
    noise_scale: float
    error_bound_95: float
    epsilon: float


class BlockAccumulator:
    """Streams clipped block values into running totals; noise is drawn once, at the end."""

    def __init__(self, specs: list[OutputSpec], combine: Combine, blocks: int) -> None:
        validate_output_specs(specs)
        if blocks < 1:
            raise ValueError("blocks must be >= 1")
        self._specs = specs
        self._combine = combine
        self._blocks = blocks
        self._seen: set[int] = set()
        self._totals = {spec.name: 0.0 for spec in specs}

    def add(self, block_index: int, values: dict[str, float]) -> None:
        """Add one block's parsed values; each block counts exactly once."""
        if not 0 <= block_index < self._blocks:
            raise ValueError(f"block index {block_index} outside 0..{self._blocks - 1}")
        if block_index in self._seen:
            raise ValueError(f"block {block_index} added twice")
        self._seen.add(block_index)
        for spec in self._specs:
            self._totals[spec.name] += clip(values.get(spec.name, spec.default), spec)

    @property
    def complete(self) -> bool:
        return len(self._seen) == self._blocks

    def exact(self) -> dict[str, float]:
        """The noiseless combined values. Trusted code only: never released as is."""
        if not self.complete:
            missing = self._blocks - len(self._seen)
            raise ValueError(f"{missing} block(s) not yet added; every block must count")
        if self._combine is Combine.MEAN:
            return {name: total / self._blocks for name, total in self._totals.items()}
        return dict(self._totals)

    def release(self, epsilon: float) -> list[ReleasedValue]:
        """Draw the noise: the one step that spends budget."""
        exact = self.exact()
        released = []
        for plan in plan_noise(self._specs, self._combine, self._blocks, epsilon):
            noisy = laplace_release(exact[plan.name], plan.sensitivity, plan.epsilon)
            noisy = round_release(noisy, plan.noise_scale)
            released.append(
                ReleasedValue(plan.name, noisy, plan.noise_scale, plan.error_bound_95, plan.epsilon)
            )
        return released


def aggregate_and_release(
    block_values: Iterable[dict[str, float]],
    specs: list[OutputSpec],
    combine: Combine,
    blocks: int,
    epsilon: float,
) -> list[ReleasedValue]:
    """Convenience: all ``blocks`` parsed outputs in block order, then one noisy release."""
    accumulator = BlockAccumulator(specs, combine, blocks)
    for index, values in enumerate(block_values):
        accumulator.add(index, values)
    return accumulator.release(epsilon)

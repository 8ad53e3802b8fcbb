"""Declared outputs and the strict parser for what one block's untrusted run printed.

Everything a block returns is adversarial. The parser accepts exactly one shape — a JSON object
whose keys are declared output names and whose values are finite numbers — and maps anything
else to the declared defaults, so a malformed block can never fail the job, widen the
sensitivity, or smuggle text past the release pipeline.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum

from privacy.block_line import MAX_RESULT_BYTES as MAX_RESULT_BYTES  # re-exported: the cap
from privacy.block_line import Refusal, read_line

#: Bounds larger than this in magnitude are refused: they only buy noise, and keep floats sane.
MAX_BOUND = 1e12
MAX_OUTPUTS = 100


class Combine(StrEnum):
    """How clipped block values become one statistic."""

    MEAN = "mean"
    SUM = "sum"


@dataclass(frozen=True)
class OutputSpec:
    """One declared output: its name, the public bounds it is clipped to, and its default.

    The default stands in for a block whose run failed or printed garbage; it must lie within
    ``[lo, hi]`` so that substituting it cannot move the aggregate further than clipping could.
    """

    name: str
    lo: float
    hi: float
    default: float

    @property
    def width(self) -> float:
        return self.hi - self.lo


class OutputSpecError(ValueError):
    """A declared output is unusable; the message names the fix."""


def make_output_spec(name: str, lo: float, hi: float, default: float | None = None) -> OutputSpec:
    """Validate one declared output. ``default`` falls back to ``lo``."""
    if not name or not name.isidentifier() or len(name) > 64:
        raise OutputSpecError(
            f"output name {name!r} is not valid: use a Python identifier of at most 64 characters"
        )
    for label, bound in (("lo", lo), ("hi", hi)):
        if not math.isfinite(bound) or abs(bound) > MAX_BOUND:
            raise OutputSpecError(
                f"output {name!r}: {label}={bound} must be a finite number within ±{MAX_BOUND:g}"
            )
    if not lo < hi:
        raise OutputSpecError(f"output {name!r}: lo={lo} must be smaller than hi={hi}")
    chosen = lo if default is None else default
    if not (math.isfinite(chosen) and lo <= chosen <= hi):
        raise OutputSpecError(
            f"output {name!r}: default={chosen} must lie within [lo, hi] = [{lo}, {hi}]"
        )
    return OutputSpec(name=name, lo=float(lo), hi=float(hi), default=float(chosen))


def validate_output_specs(specs: list[OutputSpec]) -> None:
    """Refuse an empty, oversized or duplicated declaration."""
    if not specs:
        raise OutputSpecError("declare at least one output, e.g. mean_fare:0:15")
    if len(specs) > MAX_OUTPUTS:
        raise OutputSpecError(f"at most {MAX_OUTPUTS} outputs per job; got {len(specs)}")
    names = [spec.name for spec in specs]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise OutputSpecError(f"outputs declared twice: {', '.join(duplicates)}")


class BlockOutcome(StrEnum):
    """What became of one block's output; organizer-only (it depends on the data)."""

    OK = "ok"  # every declared value parsed
    PARTIAL = "partial"  # some values missing or non-finite: those took their default
    DEFAULTED = "defaulted"  # the whole block took the defaults


@dataclass(frozen=True)
class ParsedBlock:
    values: dict[str, float]
    outcome: BlockOutcome
    reason: str


def _defaults(specs: list[OutputSpec], reason: str) -> ParsedBlock:
    return ParsedBlock({s.name: s.default for s in specs}, BlockOutcome.DEFAULTED, reason)


def parse_block_output(raw: bytes | str | None, specs: list[OutputSpec]) -> ParsedBlock:
    """Parse the last line a block printed: ``{"status": "ok", "values": {name: number}}``.

    The line is read by :func:`privacy.block_line.read_line`, the rules the runner image and
    the client's local run share:

    * not that envelope, not UTF-8, over :data:`MAX_RESULT_BYTES`, status not ok, or any
      undeclared name → every output takes its default (the whole block is discarded);
    * a declared name missing, or its value not a finite real number (bools, strings, NaN,
      ±inf, integers beyond float range refused) → that output takes its default.
    """
    reading = read_line(raw, [spec.name for spec in specs])
    if reading.refusal is Refusal.UNDECLARED:
        return _defaults(specs, f"{len(reading.undeclared)} undeclared output name(s)")
    if reading.refusal is not None:
        return _defaults(specs, reading.refusal.value)
    values = {spec.name: reading.values.get(spec.name, spec.default) for spec in specs}
    if reading.bad:
        reason = f"{len(reading.bad)} value(s) missing or not finite"
        return ParsedBlock(values, BlockOutcome.PARTIAL, reason)
    return ParsedBlock(values, BlockOutcome.OK, "")

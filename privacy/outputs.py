"""Declared outputs and the strict parser for what one block's untrusted run printed.

Everything a block returns is adversarial. The parser accepts exactly one shape — a JSON object
whose keys are declared output names and whose values are finite numbers — and maps anything
else to the declared defaults, so a malformed block can never fail the job, widen the
sensitivity, or smuggle text past the release pipeline.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from enum import StrEnum

#: The longest result line read from a block; anything longer is treated as garbage.
MAX_RESULT_BYTES = 64 * 1024
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


def _non_finite(_token: str) -> float:
    """NaN/Infinity are not JSON; read them as NaN so that one value, not the block, defaults."""
    return math.nan


def _defaults(specs: list[OutputSpec], reason: str) -> ParsedBlock:
    return ParsedBlock({s.name: s.default for s in specs}, BlockOutcome.DEFAULTED, reason)


def parse_block_output(raw: bytes | str | None, specs: list[OutputSpec]) -> ParsedBlock:
    """Parse the last line a block printed: ``{"status": "ok", "values": {name: number}}``.

    * not that envelope, not UTF-8, over :data:`MAX_RESULT_BYTES`, status not ok, or any
      undeclared name → every output takes its default (the whole block is discarded);
    * a declared name missing, or its value not a finite real number (bools, strings, NaN,
      ±inf refused) → that output takes its default.
    """
    if raw is None:
        return _defaults(specs, "no output")
    data = raw.encode("utf-8", "replace") if isinstance(raw, str) else raw
    lines = [line for line in data.strip().splitlines() if line.strip()]
    if not lines:
        return _defaults(specs, "no output")
    last = lines[-1]
    if len(last) > MAX_RESULT_BYTES:
        return _defaults(specs, "result line too long")
    try:
        envelope = json.loads(last.decode("utf-8"), parse_constant=_non_finite)
    except (UnicodeDecodeError, ValueError, RecursionError):
        return _defaults(specs, "result is not strict JSON")
    if not isinstance(envelope, dict) or envelope.get("status") != "ok":
        return _defaults(specs, "block reported an error")
    values = envelope.get("values")
    if not isinstance(values, dict):
        return _defaults(specs, "values is not a JSON object")
    declared = {spec.name for spec in specs}
    undeclared = [key for key in values if key not in declared]
    if undeclared:
        return _defaults(specs, f"{len(undeclared)} undeclared output name(s)")
    parsed: dict[str, float] = {}
    bad = 0
    for spec in specs:
        value = values.get(spec.name)
        if isinstance(value, bool) or not isinstance(value, int | float):
            bad += 1
            parsed[spec.name] = spec.default
            continue
        try:
            number = float(value)
        except OverflowError:  # an integer beyond float range
            number = math.inf
        if not math.isfinite(number):
            bad += 1
            parsed[spec.name] = spec.default
            continue
        parsed[spec.name] = number
    if bad:
        return ParsedBlock(parsed, BlockOutcome.PARTIAL, f"{bad} value(s) missing or not finite")
    return ParsedBlock(parsed, BlockOutcome.OK, "")

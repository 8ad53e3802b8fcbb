"""Every format that crosses between the trusted reducer and a data node's Celery worker, in one
place: JSON-able dicts, each with its encoder here and its strict decoder beside it.

What a node sends back (a block's result, a chunk's partials) is read as untrusted: exactly the
fields expected, finite numbers, the plan's shape; anything off is refused (ValueError), never
repaired. What the reducer sends a node (an output declaration, limits, a dataset's policy, a
synthesis spec) the node parses again: it trusts no one either.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, fields
from typing import Any

import numpy as np

from privacy.outputs import BlockOutcome, OutputSpec, make_output_spec
from privacy.query import DatasetPolicy, Partials, QueryPlan
from privacy.sample_aggregate import clip
from runner.pipeline import LOG_BYTES_PER_BLOCK, BlockResult
from runner.synthesize import Declaration, SynthesisSpec
from sandbox.container import RunEnd, SandboxLimits

# --- a block's result (node -> reducer) ----------------------------------------------------

BLOCK_RESULT_FIELDS = frozenset(
    {"index", "values", "outcome", "end", "exit_code", "seconds", "log", "sandbox"}
)
#: Longest runtime/isolation description a node may send, e.g. "runsc/zygote".
MAX_SANDBOX_CHARS = 40


def block_result_to_wire(result: BlockResult) -> dict[str, Any]:
    return {
        "index": result.index, "values": result.values, "outcome": result.outcome.value,
        "end": result.end.value, "exit_code": result.exit_code, "seconds": result.seconds,
        "log": result.log, "sandbox": result.sandbox,
    }  # fmt: skip


def block_result_from_wire(
    wire: Any, outputs: list[OutputSpec], expected: frozenset[int]
) -> BlockResult:
    """Read a node's answer for one block, strictly: a block asked for, exactly the declared
    values, finite numbers, known outcomes; the values are clipped again here."""
    if not isinstance(wire, dict) or set(wire) != BLOCK_RESULT_FIELDS:
        raise ValueError(f"a block result has exactly the fields {sorted(BLOCK_RESULT_FIELDS)}")
    index, values = wire["index"], wire["values"]
    if type(index) is not int or index not in expected:
        raise ValueError(f"block {index!r} was not asked of this node")
    names = {spec.name for spec in outputs}
    if not isinstance(values, dict) or set(values) != names:
        raise ValueError(f"block {index}: values must be exactly {sorted(names)}")
    if not all(_finite_number(values[name]) for name in names):
        raise ValueError(f"block {index}: every value must be a finite number")
    exit_code, seconds, log = wire["exit_code"], wire["seconds"], wire["log"]
    if not (exit_code is None or type(exit_code) is int) or not _finite_number(seconds):
        raise ValueError(f"block {index}: exit code or seconds malformed")
    if not isinstance(log, str) or len(log) > 2 * LOG_BYTES_PER_BLOCK + 200:
        raise ValueError(f"block {index}: log malformed or too long")
    sandbox = wire["sandbox"]
    if not isinstance(sandbox, str) or len(sandbox) > MAX_SANDBOX_CHARS:
        raise ValueError(f"block {index}: sandbox malformed or too long")
    clipped = {spec.name: clip(float(values[spec.name]), spec) for spec in outputs}
    return BlockResult(
        index, clipped, BlockOutcome(wire["outcome"]), RunEnd(wire["end"]), exit_code,
        float(seconds), log, sandbox,
    )  # fmt: skip


def _finite_number(value: object) -> bool:
    if type(value) not in (int, float):
        return False
    try:
        return math.isfinite(value)  # type: ignore[arg-type]
    except OverflowError:  # an int too large for a float: refused like infinity
        return False


# --- a chunk's query partials (node -> reducer) --------------------------------------------


def partials_to_wire(partials: Partials) -> dict[str, Any]:
    """Floats survive JSON exactly (shortest round-trip repr); the sums are integers anyway."""
    return {
        "counts": partials.counts.tolist(),
        "sums": {quantity: total.tolist() for quantity, total in partials.sums.items()},
        "histograms": {name: bins.tolist() for name, bins in partials.histograms.items()},
        "keys": None if partials.keys is None else [list(key) for key in partials.keys],
        "units": None if partials.units is None else partials.units.tolist(),
    }


def partials_from_wire(wire: Any, plan: QueryPlan) -> Partials:
    """Partials sent by a data node, checked against the plan before the reducer adds them:
    the right quantities, one entry per cell (or per key), counts whole and >= 0, sums
    whole steps. Raises ValueError naming what is wrong."""
    if not isinstance(wire, dict):
        raise ValueError("block partials must be a JSON object")
    counts = np.asarray(wire.get("counts"), dtype=np.int64)
    keys = wire.get("keys")
    cells = len(plan.cells) if plan.public else len(keys) if isinstance(keys, list) else -1
    if plan.public != (keys is None) or counts.shape != (cells,) or (counts < 0).any():
        raise ValueError("block partials do not match the plan's cells")
    expected = {f"sum:{a.column}" for a in plan.summed_columns} | {
        f"sumsq:{a.column}" for a in plan.squared_columns
    }
    sums = {q: np.asarray(v) for q, v in dict(wire.get("sums") or {}).items()}
    if set(sums) != expected or any(
        v.shape != (cells,) or (len(v) and v.dtype.kind not in "iu") for v in sums.values()
    ):
        raise ValueError("block partials carry other sums than the plan's (integer steps)")
    sums = {q: v.astype(np.int64) for q, v in sums.items()}
    bins = {f"hist:{a.column}": a.bins for a in plan.histogram_columns}
    histograms = {
        n: np.asarray(v, dtype=np.int64) for n, v in dict(wire.get("histograms") or {}).items()
    }
    if set(histograms) != set(bins) or any(
        h.shape != (cells, bins[n]) or (h < 0).any() for n, h in histograms.items()
    ):
        raise ValueError("block partials carry other histograms than the plan's")
    if keys is None:
        return Partials(counts, sums, histograms)
    units = np.asarray(wire.get("units"), dtype=np.int64)
    if units.shape != (cells,) or (units < 0).any() or (units > counts).any():
        raise ValueError("block partials' unit counts do not match their keys")
    width = len(plan.group_by)
    if any(not isinstance(key, list) or len(key) != width for key in keys):
        raise ValueError("block partials' keys do not match the plan's group_by")
    return Partials(counts, sums, histograms, tuple(tuple(key) for key in keys), units)


# --- what the reducer asks of a node (reducer -> node) ---------------------------------------


def outputs_to_wire(outputs: list[OutputSpec]) -> list[dict[str, Any]]:
    return [asdict(spec) for spec in outputs]


def outputs_from_wire(wire: list[dict[str, Any]]) -> list[OutputSpec]:
    """Validated again on the node (names, finite bounds, the default within them)."""
    return [make_output_spec(**spec) for spec in wire]


def limits_to_wire(limits: SandboxLimits) -> dict[str, Any]:
    return asdict(limits)


def limits_from_wire(wire: Mapping[str, Any]) -> SandboxLimits:
    """The fields this node knows; one it does not (a newer reducer's) is left out."""
    known = {field.name for field in fields(SandboxLimits)}
    return SandboxLimits(**{name: value for name, value in wire.items() if name in known})


def policy_to_wire(policy: DatasetPolicy) -> dict[str, Any]:
    return {
        "columns": dict(policy.columns),
        "unit_column": policy.unit_column,
        "bounds": {name: list(bounds) for name, bounds in policy.bounds.items()},
        "key_sets": {name: list(keys) for name, keys in policy.key_sets.items()},
        "max_cells": policy.max_cells,
        "max_rows_per_unit": policy.max_rows_per_unit,
        "max_groups_per_unit": policy.max_groups_per_unit,
    }


def policy_from_wire(wire: Mapping[str, Any]) -> DatasetPolicy:
    return DatasetPolicy(
        columns=dict(wire["columns"]),
        unit_column=str(wire["unit_column"]),
        bounds={name: (float(lo), float(hi)) for name, (lo, hi) in wire["bounds"].items()},
        key_sets={name: list(keys) for name, keys in wire["key_sets"].items()},
        max_cells=int(wire["max_cells"]),
        max_rows_per_unit=int(wire["max_rows_per_unit"]),
        max_groups_per_unit=int(wire["max_groups_per_unit"]),
    )


def declaration_to_wire(declared: Declaration) -> dict[str, Any]:
    return {"columns": declared.columns, "unit_column": declared.unit_column,
            "bounds": declared.bounds, "key_sets": declared.key_sets}  # fmt: skip


def declaration_from_wire(wire: Mapping[str, Any]) -> Declaration:
    return Declaration(dict(wire["columns"]), str(wire["unit_column"]), dict(wire["bounds"]),
                       dict(wire["key_sets"]))  # fmt: skip


def synthesis_spec_to_wire(spec: SynthesisSpec) -> dict[str, Any]:
    """Also how a synthesis's spec is kept in the database (``syntheses.spec``)."""
    return {
        "epsilon": spec.epsilon, "rows": spec.rows, "rows_per_unit": spec.rows_per_unit,
        "bins": spec.bins, "time_bounds": {k: list(v) for k, v in spec.time_bounds.items()},
        "grid_seconds": spec.grid_seconds,
        "marginals": None if spec.marginals is None else [list(p) for p in spec.marginals],
        "analysis": spec.analysis,
    }  # fmt: skip


def synthesis_spec_from_wire(wire: Mapping[str, Any]) -> SynthesisSpec:
    marginals, analysis = wire.get("marginals"), wire.get("analysis")
    if analysis is not None and not isinstance(analysis, dict):
        raise ValueError("a synthesis's analysis is a query plan (a JSON object) or null")
    return SynthesisSpec(
        epsilon=float(wire["epsilon"]), rows=int(wire["rows"]),
        rows_per_unit=int(wire["rows_per_unit"]), bins=dict(wire.get("bins") or {}),
        time_bounds={k: (v[0], v[1]) for k, v in (wire.get("time_bounds") or {}).items()},
        grid_seconds=dict(wire.get("grid_seconds") or {}),
        marginals=None if marginals is None else [(a, b) for a, b in marginals],
        analysis=analysis,
    )  # fmt: skip

"""A dataset's synthetic public sample, made where its blocks are: measure (``privacy.synthesis``),
fit a graphical model to the noisy marginals (Private-PGM, the ``mbi`` package), sample rows,
give them synthetic units, decode them to the full data's exact schema, and measure fidelity.

Only the measurements touch the data under DP; everything after them is post-processing, with
randomness seeded from ``secrets`` (mbi samples with numpy's global generator, seeded here just
before). The fidelity report compares the synthetic sample's marginals with the full data's,
side by side with a same-size uniform sample of real rows and with independent 1-way
marginals: it is computed from the full data and is for organizers only.
"""

from __future__ import annotations

import io
import math
import secrets
import time
import tracemalloc
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from privacy.exact import Answers, exact_answers, scaled
from privacy.partials import Partials, block_partials, combine_partials
from privacy.query_plan import DatasetPolicy, PlanError, QueryPlan, parse_plan
from privacy.synthesis import (
    Attribute,
    Measurements,
    SynthesisError,
    Tally,
    checked_pairs,
    measure,
)
from runner.blocks import BlockLayout

DEFAULT_ROWS = 20_000
MAX_ROWS = 1_000_000
DEFAULT_ROWS_PER_UNIT = 10
DEFAULT_BINS = 16
DEFAULT_GRID_SECONDS = 3600
ESTIMATION_ITERS = 1000


@dataclass(frozen=True)
class SynthesisSpec:
    """What the organizer asks for; every field is public (chosen before any data is read)."""

    epsilon: float
    rows: int = DEFAULT_ROWS
    rows_per_unit: int = DEFAULT_ROWS_PER_UNIT
    bins: dict[str, int] = field(default_factory=dict)
    time_bounds: dict[str, tuple[str, str]] = field(default_factory=dict)
    grid_seconds: dict[str, int] = field(default_factory=dict)
    marginals: list[tuple[str, str]] | None = None
    #: A query plan (JSON) whose exact answers the fidelity report compares; None: the
    #: default analysis of the declaration (``default_analysis``).
    analysis: dict[str, Any] | None = None


@dataclass(frozen=True)
class Declaration:
    """The dataset's public declaration: schema, unit, bounds, key sets."""

    columns: dict[str, str]
    unit_column: str
    bounds: dict[str, Sequence[float]]
    key_sets: dict[str, list[Any]]


def _micros(raw: str, column: str) -> int:
    try:
        at = datetime.fromisoformat(raw)
    except (TypeError, ValueError) as exc:
        raise SynthesisError(
            f"time_bounds of {column!r}: {raw!r} is not an ISO date or time (e.g. 2026-03-02)"
        ) from exc
    return int(np.datetime64(at.replace(tzinfo=None), "us").astype(np.int64))


def attributes_for(declared: Declaration, spec: SynthesisSpec) -> tuple[Attribute, ...]:
    """Every column but the unit on a public domain, or a SynthesisError naming the fix. Public:
    decided on the declaration and the spec alone, before any data is read."""
    if not 1 <= spec.rows <= MAX_ROWS:
        raise SynthesisError(f"rows must be in 1..{MAX_ROWS:,}; got {spec.rows}")
    for option in ("bins", "time_bounds", "grid_seconds"):
        for column in getattr(spec, option):
            if column not in declared.columns or column == declared.unit_column:
                others = ", ".join(c for c in declared.columns if c != declared.unit_column)
                raise SynthesisError(
                    f"{option} names {column!r}, which is not a synthesized column of the data "
                    f"(columns: {others})"
                )
    attributes = []
    for name, arrow_type in declared.columns.items():
        if name == declared.unit_column:
            continue
        if name in declared.key_sets:
            attributes.append(Attribute(name, "category", tuple(declared.key_sets[name])))
        elif arrow_type == "bool":
            attributes.append(Attribute(name, "category", (False, True)))
        elif arrow_type.startswith(("timestamp", "date")):
            if name not in spec.time_bounds:
                raise SynthesisError(
                    f"column {name!r} is a time: give its public range, time_bounds "
                    f"{{{name!r}: [start, end]}} (CLI: --time {name}:START:END), and optionally "
                    f"its grid in seconds (default {DEFAULT_GRID_SECONDS})"
                )
            start, end = (_micros(v, name) for v in spec.time_bounds[name])
            step = int(spec.grid_seconds.get(name, DEFAULT_GRID_SECONDS)) * 1_000_000
            if not (end > start and step > 0):
                raise SynthesisError(f"time_bounds of {name!r}: start must be before end")
            attributes.append(Attribute(name, "time", bins=math.ceil((end - start) / step),
                                        start_us=start, step_us=step))  # fmt: skip
        elif name in declared.bounds:
            lo, hi = (float(v) for v in declared.bounds[name])
            attributes.append(Attribute(name, "numeric", lo=lo, hi=hi,
                                        bins=int(spec.bins.get(name, DEFAULT_BINS))))  # fmt: skip
        else:
            raise SynthesisError(
                f"column {name!r} ({arrow_type}) has no public domain: declare a key set for it "
                "(text, codes) or bounds (numbers) at registration, so it can be synthesized"
            )
    if spec.marginals is not None:
        checked_pairs(spec.marginals, [a.name for a in attributes])
    Tally(tuple(attributes), spec.rows_per_unit)  # the cells and R, checked before any data
    analysis_plan(declared, spec)
    return tuple(attributes)


#: Bounds of the analysis when its plan names none: high enough to be the exact answer on any
#: table here (units are not bounded, as in a plain pandas analysis).
ANALYSIS_BOUND = 1_000_000
#: Most aggregates of the default analysis beyond its count (one mean per bounded number).
DEFAULT_MEANS = 3


def default_analysis(declared: Declaration) -> dict[str, Any]:
    """What organizers compare when they name no analysis: rows and the mean of each bounded
    number, grouped by the dataset's smallest key set (its stations, lines or events)."""
    keyed = sorted((len(values), name) for name, values in declared.key_sets.items()
                   if name != declared.unit_column and len(values) >= 2)  # fmt: skip
    numeric = [name for name, kind in declared.columns.items()
               if name in declared.bounds and name != declared.unit_column
               and name not in declared.key_sets
               and kind.startswith(("int", "uint", "float", "double", "decimal"))]  # fmt: skip
    aggregates: list[dict[str, Any]] = [{"name": "rows", "op": "count"}]
    for name in numeric[:DEFAULT_MEANS]:
        lo, hi = (float(v) for v in declared.bounds[name])
        aggregates.append({"name": f"mean_{name}", "op": "mean", "column": name,
                           "lo": lo, "hi": hi})  # fmt: skip
    return {"group_by": [keyed[0][1]] if keyed else [], "aggregates": aggregates}


def analysis_json(declared: Declaration, spec: SynthesisSpec) -> dict[str, Any]:
    """The analysis plan as asked for: the organizer's, or the declaration's default."""
    return spec.analysis if spec.analysis is not None else default_analysis(declared)


def analysis_plan(declared: Declaration, spec: SynthesisSpec) -> QueryPlan:
    """The fidelity report's analysis, checked against the declaration before any data is
    read (a SynthesisError naming the fix)."""
    policy = DatasetPolicy(
        declared.columns, declared.unit_column,
        {k: (float(v[0]), float(v[1])) for k, v in declared.bounds.items()},
        declared.key_sets, max_rows_per_unit=ANALYSIS_BOUND, max_groups_per_unit=ANALYSIS_BOUND,
    )  # fmt: skip
    try:
        return parse_plan(analysis_json(declared, spec), policy)
    except PlanError as exc:
        raise SynthesisError(f"the analysis plan: {exc}") from exc


# --- on the data's node ----------------------------------------------------------------------


@dataclass(frozen=True)
class Synthesized:
    parquet: bytes
    rows: int
    report: dict[str, Any]


def synthesize_blocks(
    layout: BlockLayout, declared: Declaration, spec: SynthesisSpec
) -> Synthesized:
    """The synthetic sample of a partitioned dataset, and its fidelity report."""
    started = time.monotonic()
    attributes = attributes_for(declared, spec)
    plan = analysis_plan(declared, spec)
    tally = Tally(attributes, spec.rows_per_unit)
    names = [a.name for a in attributes]
    schema = pq.read_schema(layout.block_path(0))
    keep = min(1.0, spec.rows / max(1, layout.rows))
    pick = np.random.default_rng(secrets.randbits(128))
    real_parts: list[pd.DataFrame] = []
    full_answers: list[Partials] = []
    for index in range(layout.blocks):
        block = pq.read_table(layout.block_path(index)).to_pandas()
        units = block[declared.unit_column].to_numpy()
        tally.add({n: block[n].to_numpy() for n in names}, units)
        full_answers.append(block_partials(plan, block, declared.unit_column))
        real_parts.append(block[pick.random(len(block)) < keep])
    measured = measure(tally, spec.epsilon, spec.marginals)
    measured_at = time.monotonic()
    model_rows = sample_model(measured, spec.rows)
    synthetic = _table(model_rows, measured, declared.unit_column, schema)
    independent = _table(sample_independent(measured, spec.rows), measured,
                         declared.unit_column, schema)  # fmt: skip
    real = pa.Table.from_pandas(
        pd.concat(real_parts, ignore_index=True).iloc[: spec.rows], schema=schema,
        preserve_index=False,
    )  # fmt: skip
    tables = {"synthetic": synthetic, "real_rows": real, "independent": independent}
    report = fidelity_report(tally, tables)
    truth = exact_answers(plan, combine_partials(full_answers))
    report["analysis"] = analysis_report(plan, analysis_json(declared, spec),
                                         spec.analysis is None, truth, layout.rows, tables,
                                         declared.unit_column)  # fmt: skip
    report.update(_public_facts(measured, spec), seconds=round(time.monotonic() - started, 2),
                  measure_seconds=round(measured_at - started, 2))  # fmt: skip
    buffer = io.BytesIO()
    pq.write_table(synthetic, buffer)
    return Synthesized(buffer.getvalue(), synthetic.num_rows, report)


def _public_facts(measured: Measurements, spec: SynthesisSpec) -> dict[str, Any]:
    """What the report says about the mechanism itself: all public or DP."""
    return {
        "epsilon": float(measured.epsilon),
        "rows_per_unit": measured.rows_per_unit,
        "rows": spec.rows,
        "pairs": [list(c) for c in measured.marginals if len(c) == 2],
        "pairs_selected": measured.pairs_selected,
        "split": {k: float(v) for k, v in vars(measured.split).items()},
        "units_histogram": list(measured.units_histogram),
        "synthesizer": "MST (pure ε, discrete Laplace, permute-and-flip) + Private-PGM (mbi)",
    }


# --- post-processing: model, rows, units, values -----------------------------------------------


def sample_model(measured: Measurements, rows: int) -> dict[str, np.ndarray]:
    """Rows drawn from the Private-PGM model fitted to the noisy marginals."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import jax

        jax.config.update("jax_enable_x64", True)
        import mbi
        from mbi import estimation
    attributes = measured.attributes
    if not attributes:
        return {}
    domain = mbi.Domain(tuple(a.name for a in attributes), tuple(a.size for a in attributes))
    loss = [
        mbi.LinearMeasurement(counts.astype(np.float64).ravel(), clique,
                              stddev=float(measured.scales[clique]) * math.sqrt(2))
        for clique, counts in measured.marginals.items()
    ]  # fmt: skip
    total = max(1.0, float(np.median([np.clip(measured.one_way(a.name), 0, None).sum()
                                      for a in attributes])))  # fmt: skip
    model = estimation.MirrorDescent().estimate(domain, loss, known_total=total,
                                                iters=ESTIMATION_ITERS)  # fmt: skip
    np.random.seed(secrets.randbits(32))  # mbi samples with numpy's global generator
    data = model.synthetic_data(rows).to_dict()
    order = np.random.default_rng(secrets.randbits(128)).permutation(rows)
    return {name: np.asarray(data[name])[order] for name in domain.attributes}


def sample_independent(measured: Measurements, rows: int) -> dict[str, np.ndarray]:
    """The baseline: every column drawn alone from its noisy 1-way marginal."""
    rng = np.random.default_rng(secrets.randbits(128))
    out = {}
    for a in measured.attributes:
        counts = np.clip(measured.one_way(a.name).astype(np.float64), 0, None)
        p = counts / counts.sum() if counts.sum() > 0 else np.full(a.size, 1 / a.size)
        out[a.name] = rng.choice(a.size, rows, p=p)
    return out


def unit_sizes(histogram: Sequence[int], rows: int, rng: np.random.Generator) -> np.ndarray:
    """Rows per synthetic unit, drawn from the noisy rows-per-unit histogram, adding up to
    ``rows`` (the last unit takes what is left)."""
    weights = np.clip(np.asarray(histogram, np.float64), 0, None)
    p = weights / weights.sum() if weights.sum() > 0 else np.eye(len(weights))[0]
    mean = float(np.dot(p, np.arange(1, len(p) + 1)))
    sizes = rng.choice(np.arange(1, len(p) + 1), math.ceil(rows / mean * 1.2) + 10, p=p)
    while sizes.sum() < rows:
        sizes = np.concatenate([sizes, rng.choice(np.arange(1, len(p) + 1), len(sizes), p=p)])
    ends = np.cumsum(sizes)
    count = int(np.searchsorted(ends, rows)) + 1
    sizes = sizes[:count].copy()
    sizes[-1] -= int(ends[count - 1]) - rows
    return sizes


def _table(codes: Mapping[str, np.ndarray], measured: Measurements, unit_column: str,
           schema: pa.Schema) -> pa.Table:  # fmt: skip
    """Decoded rows with synthetic units, in the full data's schema, by unit and time."""
    rng = np.random.default_rng(secrets.randbits(128))
    rows = len(next(iter(codes.values()))) if codes else 0
    sizes = unit_sizes(measured.units_histogram, rows, rng)
    unit = np.repeat(np.arange(1, len(sizes) + 1), sizes)
    columns: dict[str, np.ndarray] = {}
    for a in measured.attributes:
        columns[a.name] = decode(a, codes[a.name], schema.field(a.name).type, rng)
    order_keys = [unit]
    times = [a.name for a in measured.attributes if a.kind == "time"]
    if times:
        order_keys.insert(0, codes[times[0]])
    order = np.lexsort(order_keys)
    arrays = []
    for f in schema:
        if f.name == unit_column:
            arrays.append(_units(unit[order], f.type))
        else:
            arrays.append(pa.array(columns[f.name][order]).cast(f.type, safe=False))
    return pa.Table.from_arrays(arrays, schema=schema)


def _units(unit: np.ndarray, arrow_type: pa.DataType) -> pa.Array:
    if pa.types.is_integer(arrow_type):
        return pa.array(unit).cast(arrow_type)
    if pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type):
        return pa.array(np.char.add("synthetic-", unit.astype(str)).astype(object), arrow_type)
    raise SynthesisError(f"a unit column of type {arrow_type} cannot be synthesized")


def decode(attribute: Attribute, codes: np.ndarray, arrow_type: pa.DataType,
           rng: np.random.Generator) -> np.ndarray:  # fmt: skip
    """Values for codes: the key, a uniform point of the bin (an integer one for integer
    columns), a uniform instant of the grid step."""
    a = attribute
    if a.kind == "category":
        values = np.empty(len(a.values), dtype=object)
        values[:] = list(a.values)
        return values[codes]
    if a.kind == "numeric":
        width = (a.hi - a.lo) / a.bins
        values = a.lo + (codes + rng.random(len(codes))) * width
        if pa.types.is_integer(arrow_type):
            return np.clip(np.floor(values), math.ceil(a.lo), math.floor(a.hi)).astype(np.int64)
        return np.clip(values, a.lo, a.hi)
    micros = (
        a.start_us + codes.astype(np.int64) * a.step_us + rng.integers(0, a.step_us, len(codes))
    )
    return micros.astype("datetime64[us]")


# --- the fidelity report (organizers only: computed from the full data) ------------------------


def _codes(table: pa.Table, attributes: Sequence[Attribute]) -> dict[str, np.ndarray]:
    frame = table.select([a.name for a in attributes]).to_pandas()
    return {a.name: a.encode(frame[a.name].to_numpy()) for a in attributes}


def _tvd(truth: np.ndarray, counts: np.ndarray) -> float:
    p = truth / max(1, truth.sum())
    q = counts / max(1, counts.sum())
    return float(0.5 * np.abs(p - q).sum())


def fidelity_report(tally: Tally, tables: Mapping[str, pa.Table]) -> dict[str, Any]:
    """Total variation distance of every 1-way and 2-way marginal of each table from the full
    data's (0: the same distribution, 1: disjoint), per marginal and summarized."""
    marginals: list[dict[str, Any]] = []
    coded = {name: _codes(t, tally.attributes) for name, t in tables.items()}
    for clique in tally.cliques():
        truth = tally.full[clique]
        row: dict[str, Any] = {"columns": list(clique)}
        for name, codes in coded.items():
            known = np.ones(len(next(iter(codes.values()))), bool)
            for n in clique:
                known &= codes[n] >= 0
            flat = np.ravel_multi_index(tuple(codes[n][known] for n in clique), truth.shape)
            counts = np.bincount(flat, minlength=truth.size).reshape(truth.shape)
            row[name] = round(_tvd(truth, counts), 4)
        marginals.append(row)
    summary = {}
    for way in (1, 2):
        rows = [m for m in marginals if len(m["columns"]) == way]
        summary[f"{way}-way"] = {
            name: {"mean": round(float(np.mean([m[name] for m in rows])), 4) if rows else 0.0,
                   "max": round(float(np.max([m[name] for m in rows])), 4) if rows else 0.0}
            for name in tables
        }  # fmt: skip
    return {"metric": "total variation distance from the full data", "summary": summary,
            "marginals": marginals}  # fmt: skip


#: Cells listed one by one in the report (the summary covers them all).
ANALYSIS_CELLS_SHOWN = 200


def analysis_report(
    plan: QueryPlan,
    raw: Mapping[str, Any],
    default: bool,
    truth: Answers,
    full_rows: int,
    tables: Mapping[str, pa.Table],
    unit_column: str,
) -> dict[str, Any]:
    """The analysis's exact answer on the full data beside each table's, counts and sums
    scaled to the full data's rows: per aggregate, the mean absolute error over the cells
    (and relative to the full data's mean absolute value), then the first cells one by one."""
    found = {
        name: scaled(
            exact_answers(plan, block_partials(plan, table.to_pandas(), unit_column)),
            plan, full_rows / max(1, table.num_rows),
        )
        for name, table in tables.items()
    }  # fmt: skip
    summary = []
    for aggregate in plan.aggregates:
        cells = [key for key in truth if key[1] == aggregate.name and truth[key] is not None]
        size = float(np.mean([abs(truth[k] or 0.0) for k in cells])) if cells else 0.0
        row: dict[str, Any] = {"aggregate": aggregate.name, "op": aggregate.op,
                               "cells": len(cells), "full_mean_abs": round(size, 4)}  # fmt: skip
        for name, answers in found.items():
            grows = aggregate.op in ("count", "sum")  # a cell a table lacks counts zero
            errors = [abs((answers.get(k) or 0.0) - (truth[k] or 0.0)) for k in cells
                      if answers.get(k) is not None or grows]  # fmt: skip
            error = float(np.mean(errors)) if errors else None
            row[name] = None if error is None else round(error, 4)
            row[f"{name}_relative"] = (None if error is None or size == 0
                                       else round(error / size, 4))  # fmt: skip
            row[f"{name}_missing"] = len(cells) - len(errors)
        summary.append(row)
    names = [key.name for key in plan.group_by]
    shown = []
    for keys, aggregate_name in list(truth)[:ANALYSIS_CELLS_SHOWN]:
        value = truth[(keys, aggregate_name)]
        cell: dict[str, Any] = {"keys": dict(zip(names, keys, strict=True)),
                                "aggregate": aggregate_name, "full": _round(value)}  # fmt: skip
        for name, answers in found.items():
            cell[name] = _round(answers.get((keys, aggregate_name)))
        shown.append(cell)
    return {
        "plan": dict(raw),
        "default": default,
        "summary": summary,
        "cells": shown,
        "cells_total": len(truth),
        "full_rows": full_rows,
        "note": "exact answers, no noise; counts and sums scaled to the full data's rows",
    }


def _round(value: float | None) -> float | None:
    return None if value is None else round(float(value), 4)


def peak_memory(run: Callable[[], Any]) -> tuple[Any, int]:
    """``run()``'s result and the peak bytes Python allocated meanwhile (bench)."""
    tracemalloc.start()
    try:
        return run(), tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()

"""Synthetic public samples: time, peak memory and fidelity of a DP synthetic sample of the
bench table (10M card taps), against a baseline measured in the same run: reading the same
blocks and counting the same 1-way and 2-way marginals exactly (pandas, no privacy).

    .venv/bin/python -m bench.synth                       # 100 blocks of the bench table
    .venv/bin/python -m bench.synth --epsilon 4 --rows 50000

Fidelity is the total variation distance of each 1-way and 2-way marginal from the full
data's, and the error of the example analysis (examples/mean_fare_by_period.py as a query plan:
the mean fare of exits by hour, exact answers), for the synthetic sample (DP), a same-size
uniform sample of real rows (not private: what a real-row sample would give) and independent
1-way marginals (DP, from the same measurements). Each measurement runs in a child process, so
its peak RSS is its own.
"""

from __future__ import annotations

import argparse
import itertools
import json
import multiprocessing
import resource
import time
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from bench.sandbox import WORK, bench_layout
from runner.blocks import load_layout
from runner.synthesize import Declaration, SynthesisSpec, synthesize_blocks

#: examples/mean_fare_by_period.py as a plan, by hour (its periods are groups of hours).
EXAMPLE_PLAN = {
    "filter": {"op": "==", "args": [{"col": "event"}, {"lit": "out"}]},
    "group_by": [{"name": "hour", "expr": {"op": "hour", "args": [{"col": "ts"}]}}],
    "aggregates": [{"name": "mean_fare", "op": "mean", "column": "fare", "lo": 2, "hi": 10}],
}


def _declaration(layout_dir: Path) -> Declaration:
    entry = next(e for e in json.loads((WORK / "data" / "manifest.json").read_text())["datasets"]
                 if e["name"] == "transport_cards")  # fmt: skip
    schema = pq.read_schema(load_layout(layout_dir).block_path(0))
    columns = {name: str(schema.field(name).type) for name in schema.names}
    return Declaration(columns, "card_id", entry["bounds"], entry["key_sets"])


def _baseline(layout_dir: str) -> dict[str, Any]:
    layout = load_layout(Path(layout_dir))
    started = time.perf_counter()
    names = ["ts", "station_id", "line", "event", "fare"]
    counts: dict[tuple[str, ...], Any] = {}
    for index in range(layout.blocks):
        frame = pq.read_table(layout.block_path(index)).to_pandas()
        frame["ts"] = frame["ts"].dt.floor("h")
        frame["fare"] = (frame["fare"] // (15 / 16)).clip(0, 15)
        for clique in [(n,) for n in names] + list(itertools.combinations(names, 2)):
            found = frame.groupby(list(clique)).size()
            counts[clique] = (
                found if clique not in counts else counts[clique].add(found, fill_value=0)
            )
    return {"seconds": time.perf_counter() - started, "cells": sum(len(c) for c in counts.values())}


def _synthesize(layout_dir: str, epsilon: float, rows: int) -> dict[str, Any]:
    layout = load_layout(Path(layout_dir))
    spec = SynthesisSpec(epsilon=epsilon, rows=rows, analysis=EXAMPLE_PLAN,
                         time_bounds={"ts": ("2026-03-02", "2026-03-09")})  # fmt: skip
    started = time.perf_counter()
    made = synthesize_blocks(layout, _declaration(Path(layout_dir)), spec)
    return {"seconds": time.perf_counter() - started, "report": made.report,
            "bytes": len(made.parquet)}  # fmt: skip


def _in_child(target: Any, *args: Any) -> tuple[dict[str, Any], float]:
    """``target(*args)`` in a fresh process: its answer and its peak RSS in MiB."""
    with multiprocessing.get_context("spawn").Pool(1, maxtasksperchild=1) as pool:
        answer = pool.apply(target, args)
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return answer, peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", type=int, default=100)
    parser.add_argument("--epsilon", type=float, default=1.0)
    parser.add_argument("--rows", type=int, default=20_000)
    args = parser.parse_args()
    layout = bench_layout(args.blocks)
    print(f"bench table: {layout.rows:,} rows, {layout.units:,} cards, {layout.blocks} blocks")
    base, base_peak = _in_child(_baseline, str(layout.directory))
    made, peak = _in_child(_synthesize, str(layout.directory), args.epsilon, args.rows)
    peak = max(peak, base_peak)  # RUSAGE_CHILDREN is the largest child's so far
    report = made["report"]
    print(
        f"baseline (read + exact marginals, pandas): {base['seconds']:.1f} s, "
        f"peak RSS {base_peak:.0f} MiB"
    )
    print(
        f"synthesis at ε={args.epsilon:g}, {args.rows:,} rows: {made['seconds']:.1f} s "
        f"({made['seconds'] / base['seconds']:.2f}x the baseline; measuring "
        f"{report['measure_seconds']:.1f} s), peak RSS {peak:.0f} MiB "
        f"({peak / base_peak:.2f}x), sample {made['bytes'] / 2**20:.1f} MiB"
    )
    print(f"pairs selected by MST: {', '.join(' x '.join(p) for p in report['pairs'])}")
    print("total variation distance from the full data, mean (max):")
    print(f"  {'':8} {'synthetic (DP)':>18} {'real rows':>18} {'independent (DP)':>18}")
    for way, found in report["summary"].items():
        cells = [f"{found[k]['mean']:.3f} ({found[k]['max']:.3f})"
                 for k in ("synthetic", "real_rows", "independent")]  # fmt: skip
        print(f"  {way:8} {cells[0]:>18} {cells[1]:>18} {cells[2]:>18}")
    print("example analysis (mean fare of exits by hour, 24 cells), mean absolute error:")
    for row in report["analysis"]["summary"]:
        print(
            f"  {row['aggregate']:10} full {row['full_mean_abs']:.3f}: synthetic "
            f"{row['synthetic']}, real rows {row['real_rows']}, "
            f"independent {row['independent']}"
        )


if __name__ == "__main__":
    main()

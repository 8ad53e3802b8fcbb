"""Cost of one sandboxed block: container-per-block vs the same analyze() in plain pandas.

    .venv/bin/python bench/block_run.py [--rows 2000] [--runs 10] [--blocks 32] [--slots 2]

Prints the median wall time of (a) analyze() on one block in this process (the baseline: no
isolation at all), (b) one hardened container run of the same block (start, harness, read,
remove), their ratio and difference (the isolation overhead per block), and (c) the throughput
of a whole job of --blocks blocks with --slots containers at a time.
"""

from __future__ import annotations

import argparse
import runpy
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import docker
import pandas as pd
import pyarrow.parquet as pq

from sandbox.container import SandboxLimits, run_block
from sandbox.image import build_runner_image
from syndata.soda import SIZES, generate_table

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "mean_fare_by_period.py"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--blocks", type=int, default=32)
    parser.add_argument("--slots", type=int, default=2)
    args = parser.parse_args()

    image = build_runner_image()
    client = docker.from_env()
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        work.chmod(0o755)
        table = generate_table("transport_cards", SIZES["test"], 1).slice(0, args.rows)
        block = work / "block.parquet"
        pq.write_table(table, block)
        block.chmod(0o644)
        code = work / "analysis.py"
        code.write_text(EXAMPLE.read_text())
        code.chmod(0o644)

        analyze = runpy.run_path(str(EXAMPLE))["analyze"]
        baseline = []
        for _ in range(args.runs):
            started = time.perf_counter()
            analyze(pd.read_parquet(block))
            baseline.append(time.perf_counter() - started)

        limits = SandboxLimits()
        container = [
            run_block(client, image, code, block, limits).seconds for _ in range(args.runs)
        ]

        started = time.perf_counter()
        with ThreadPoolExecutor(args.slots) as pool:
            list(
                pool.map(
                    lambda _: run_block(client, image, code, block, limits), range(args.blocks)
                )
            )
        job_seconds = time.perf_counter() - started

    base, box = statistics.median(baseline), statistics.median(container)
    print(f"block of {args.rows} rows, median of {args.runs} runs")
    print(f"  plain pandas in-process (baseline): {base * 1000:8.1f} ms")
    print(f"  container per block:                {box * 1000:8.1f} ms")
    print(f"  ratio container / baseline:         {box / base:8.1f} x")
    print(f"  isolation overhead per block:       {(box - base) * 1000:8.1f} ms")
    print(
        f"job of {args.blocks} blocks, {args.slots} slots: {job_seconds:.1f} s "
        f"({job_seconds / args.blocks * 1000:.0f} ms per block, "
        f"{args.blocks / job_seconds:.2f} blocks/s)"
    )


if __name__ == "__main__":
    main()

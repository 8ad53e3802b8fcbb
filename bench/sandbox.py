"""Sandbox cost: per-block isolation overhead and end-to-end sample-and-aggregate.

    .venv/bin/python -m bench.sandbox                   # overhead per block + 1,000-block job
    .venv/bin/python -m bench.sandbox --limit 100       # only the first 100 of the 1,000 blocks

(Run it as a module: a script named sandbox.py would shadow the sandbox package.)

1. Isolation overhead per block: the same analyze() on the same block (a) in this process with
   plain pandas — the baseline, no isolation — and (b) in one hardened container per block;
   medians, their ratio and difference.
2. End to end: the example analysis over the 10M-row bench dataset (``unseen data generate
   --size bench``) partitioned into --blocks keyed-hash blocks, run through the production
   pipeline (sandbox, strict parse, clip, aggregate, noise) with --slots containers at a time;
   wall time, blocks/s, and the peak memory of this worker process (blocks are streamed).

Targets of the sandbox issue: ≤ 20 ms overhead per block; 1,000 blocks ≤ 60 s on 2 cores.
"""

from __future__ import annotations

import argparse
import resource
import runpy
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

from privacy.outputs import Combine, make_output_spec
from runner.blocks import BlockLayout, load_layout
from runner.docker_sandbox import DockerSandbox
from runner.pipeline import AggregateJob, run_aggregate
from runner.sample import write_code
from sandbox.container import SandboxLimits
from sandbox.image import build_runner_image

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "mean_fare_by_period.py"
WORK = ROOT / "var" / "bench"


def bench_layout(blocks: int) -> BlockLayout:
    data = WORK / "data"
    if not (data / "manifest.json").exists():
        subprocess.run(
            [sys.executable, "-m", "client.cli", "data", "generate", "--size", "bench",
             "--seed", "1", "--out", str(data), "--only", "transport_cards"],
            check=True,
        )  # fmt: skip
    directory = WORK / f"blocks-{blocks}"
    if not (directory / "layout.json").exists():
        # In a child process, so that this process's peak memory is the worker's alone.
        started = time.perf_counter()
        source = data / "transport_cards.parquet"
        subprocess.run(
            [sys.executable, "-c", "import sys; from pathlib import Path; "
             "from runner.blocks import partition_dataset; "
             "partition_dataset(Path(sys.argv[1]), Path(sys.argv[2]), 'card_id', int(sys.argv[3]))",
             str(source), str(directory), str(blocks)],
            check=True,
        )  # fmt: skip
        print(f"partitioned into {blocks} blocks in {time.perf_counter() - started:.1f} s")
    return load_layout(directory)


def overhead(sandbox: DockerSandbox, code: Path, block: Path, runs: int) -> tuple[float, float]:
    analyze = runpy.run_path(str(EXAMPLE))["analyze"]
    baseline = []
    for _ in range(runs):
        started = time.perf_counter()
        analyze(pd.read_parquet(block))
        baseline.append(time.perf_counter() - started)
    boxed = [sandbox(code, block).seconds for _ in range(runs)]
    return statistics.median(baseline), statistics.median(boxed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", type=int, default=1000)
    parser.add_argument("--limit", type=int, default=0, help="run only the first N blocks")
    parser.add_argument("--slots", type=int, default=2)
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()

    build_runner_image()
    layout = bench_layout(args.blocks)
    sandbox = DockerSandbox("bench", SandboxLimits())
    with tempfile.TemporaryDirectory() as scratch:
        Path(scratch).chmod(0o755)
        code = write_code(Path(scratch), "bench", EXAMPLE.read_text())
        base, boxed = overhead(sandbox, code, layout.block_path(0), args.runs)
        print(f"\n1. one block (~{layout.rows // layout.blocks:,} rows), median of {args.runs}")
        print(f"   plain pandas, in process (baseline) {base * 1000:9.1f} ms")
        print(f"   container per block                 {boxed * 1000:9.1f} ms")
        print(f"   ratio container / baseline          {boxed / base:9.1f} x")
        print(f"   isolation overhead per block        {(boxed - base) * 1000:9.1f} ms "
              "(target <= 20 ms)")  # fmt: skip

        blocks = args.limit or layout.blocks
        sub = BlockLayout(layout.directory, blocks, layout.rows, layout.units)
        outputs = [make_output_spec(o["name"], o["lo"], o["hi"], o["default"])
                   for o in runpy.run_path(str(EXAMPLE))["OUTPUTS"]]  # fmt: skip
        job = AggregateJob(code, sub, outputs, Combine.MEAN, 1.0)
        started = time.perf_counter()
        result = run_aggregate(job, sandbox, args.slots)
        seconds = time.perf_counter() - started
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\n2. sample-and-aggregate, {blocks} of {layout.blocks} blocks, {args.slots} slots, "
          "container per block")  # fmt: skip
    print(f"   wall time                           {seconds:9.1f} s"
          f"{'  (target for 1,000 blocks: <= 60 s)' if blocks == 1000 else ''}")  # fmt: skip
    print(f"   throughput                          {blocks / seconds:9.2f} blocks/s")
    print(f"   blocks defaulted                    {result.report.blocks_defaulted:9d}")
    print(f"   peak memory of this worker          {peak_mb:9.0f} MB")
    if blocks < 1000:
        print(f"   projected for 1,000 blocks          {1000 / blocks * seconds:9.1f} s")


if __name__ == "__main__":
    main()

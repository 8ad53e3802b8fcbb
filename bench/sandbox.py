"""Sandbox cost: per-block isolation overhead and end-to-end sample-and-aggregate.

    .venv/bin/python -m bench.sandbox                   # overhead per block + 1,000-block job
    .venv/bin/python -m bench.sandbox --limit 100       # zygote form: first 100 blocks only

(Run it as a module: a script named sandbox.py would shadow the sandbox package.)

1. Isolation overhead per block: the same analyze() on the same block (a) in this process with
   plain pandas — the baseline, no isolation — (b) in one hardened container per block and
   (c) in the zygote form (fresh process and uid per block in a warm slot container), each
   under every runtime asked for (--runtimes: runc, and gVisor's runsc where registered; a
   pair a node refuses, the zygote under Debian 12's runsc, is named with the reason);
   medians, ratios and differences.
2. End to end: the example analysis over the 10M-row bench dataset (``unseen data generate
   --size bench``) partitioned into --blocks keyed-hash blocks, run through the production
   pipeline (sandbox, strict parse, clip, aggregate, noise) with --slots at a time, in both
   forms and runtimes (container per block on --container-limit blocks, projected); wall
   time, blocks/s, and
   the peak memory of this worker process (blocks are streamed).
3. The fixed public schedule's cost: the same job's wall time when it holds its worker for its
   schedule (T at the node minimum, at 3x the 99th-percentile block measured in 2, at the
   default),
   against the un-scheduled run of 2.

Targets of the sandbox issue: ≤ 20 ms overhead per block; 1,000 blocks ≤ 60 s on 2 cores.
"""

from __future__ import annotations

import argparse
import math
import resource
import runpy
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

import docker
import pandas as pd

from privacy.outputs import Combine, make_output_spec
from runner.blocks import BlockLayout, load_layout
from runner.pipeline import (
    AggregateJob,
    BlockResult,
    BlockRunner,
    local_block_results,
    run_aggregate,
)
from runner.sample import write_code
from runner.schedule import ScheduleRules, aggregate_schedule
from sandbox.container import SandboxLimits
from sandbox.docker_sandbox import DockerSandbox
from sandbox.image import build_runner_image
from sandbox.runtime import (
    ISOLATION_FORMS,
    RuntimeUnavailableError,
    choose_isolation,
    registered_runtimes,
)

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


def per_block(sandbox: BlockRunner, code: Path, block: Path, runs: int) -> float:
    """Median seconds per block; the zygote form's slot (two containers) is warmed first."""
    sandbox(code, block)
    sandbox(code, block)
    seconds = statistics.median(sandbox(code, block).seconds for _ in range(runs))
    sandbox.finish_job(code)
    return seconds


def baseline(block: Path, runs: int) -> float:
    analyze = runpy.run_path(str(EXAMPLE))["analyze"]
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        analyze(pd.read_parquet(block))
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def job_seconds(
    sandbox: BlockRunner, code: Path, layout: BlockLayout, blocks: int, slots: int
) -> tuple[float, int, float]:
    """Wall time of the job un-scheduled, blocks defaulted, and the blocks' 99th percentile
    time (the slowest few include a slot's start, which T does not cover)."""
    sub = BlockLayout(layout.directory, blocks, layout.rows, layout.units)
    outputs = [
        make_output_spec(o["name"], o["lo"], o["hi"], o["default"])
        for o in runpy.run_path(str(EXAMPLE))["OUTPUTS"]
    ]
    times: list[float] = []

    def timed(results: Iterable[BlockResult]) -> Iterator[BlockResult]:
        for result in results:
            times.append(result.seconds)
            yield result

    started = time.perf_counter()
    job = AggregateJob(code, sub, outputs, Combine.MEAN, 1.0)
    result = run_aggregate(job, timed(local_block_results(job, sandbox, slots)))
    p99 = statistics.quantiles(times, n=100)[98] if len(times) > 1 else times[0]
    return time.perf_counter() - started, result.report.blocks_defaulted, p99


def schedule_cost(blocks: int, slots: int, unscheduled: float, p99: float) -> None:
    """What the fixed public schedule costs: a scheduled job holds its worker for the whole
    schedule (runner.schedule), so its wall time is the schedule's length, against the
    un-scheduled run of the same job measured above."""
    rules = ScheduleRules()
    print(
        f"\n3. the fixed-time schedule (node defaults: start {rules.start_seconds:g} s, "
        f"overhead {rules.block_overhead_seconds:g} s a block), {blocks} blocks, {slots} slots"
    )
    print(f"   un-scheduled run (measured above)   {unscheduled:9.1f} s; 99th percentile block "
          f"{p99 * 1000:.0f} ms")  # fmt: skip
    chosen = max(rules.min_block_seconds, math.ceil(3 * p99 * 10) / 10)
    for label, asked in (("node minimum", rules.min_block_seconds),
                         ("3 x p99 block", chosen),
                         ("node default", None)):  # fmt: skip
        plan = aggregate_schedule(rules, blocks, slots, asked)
        print(f"   T = {plan.block_seconds:4.1f} s ({label:<17}) {plan.seconds:9.1f} s   "
              f"{plan.seconds / unscheduled:6.1f} x the un-scheduled run")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", type=int, default=1000)
    parser.add_argument("--limit", type=int, default=0, help="zygote form: first N blocks only")
    parser.add_argument(
        "--container-limit",
        type=int,
        default=40,
        help="container-per-block form: first N blocks, then projected",
    )
    parser.add_argument("--slots", type=int, default=2)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument(
        "--runtimes",
        default="runc,runsc",
        help="comma-separated; those the engine lacks are left out",
    )
    args = parser.parse_args()

    image = build_runner_image()
    layout = bench_layout(args.blocks)
    registered = registered_runtimes(docker.from_env())
    runtimes = [name for name in args.runtimes.split(",") if name in registered]
    missing = sorted(set(args.runtimes.split(",")) - set(runtimes))
    if missing:
        print(f"left out (not registered with the engine; `make runsc`): {', '.join(missing)}")
    forms = {}
    for runtime in runtimes:
        for form in ISOLATION_FORMS:
            try:
                choose_isolation(form, runtime)
            except RuntimeUnavailableError as refused:
                print(f"{runtime}/{form}: not measured, a node refuses it: {refused}")
                continue
            sandbox = DockerSandbox("bench", SandboxLimits(), image, form, runtime)
            forms[f"{runtime}/{form}"] = sandbox
    with tempfile.TemporaryDirectory() as scratch:
        Path(scratch).chmod(0o755)
        code = write_code(Path(scratch), "bench", EXAMPLE.read_text())
        block = layout.block_path(0)
        base = baseline(block, args.runs)
        each = {name: per_block(sandbox, code, block, args.runs) for name, sandbox in forms.items()}
        print(f"\n1. one block (~{layout.rows // layout.blocks:,} rows), median of {args.runs}")
        print(f"   plain pandas, in process (baseline) {base * 1000:9.1f} ms")
        for name, seconds in each.items():
            print(f"   {name:<16} {seconds * 1000:9.1f} ms   {seconds / base:7.1f} x baseline   "
                  f"overhead {(seconds - base) * 1000:7.1f} ms")  # fmt: skip
        ratios(each, "(target overhead <= 20 ms)")

        def blocks_for(name: str) -> int:
            if name.endswith("/zygote"):
                return args.limit or layout.blocks
            return min(args.container_limit, layout.blocks)

        totals = {}
        print(f"\n2. sample-and-aggregate over {layout.blocks} blocks of the 10M-row table, "
              f"{args.slots} slots")  # fmt: skip
        p99 = {}
        for name in forms:
            blocks = blocks_for(name)
            seconds, defaulted, p99[name] = job_seconds(
                forms[name], code, layout, blocks, args.slots
            )
            totals[name] = seconds / blocks * layout.blocks
            projected = "" if blocks == layout.blocks else f" (ran {blocks}, projected)"
            print(f"   {name:<16} {totals[name]:9.1f} s for {layout.blocks} blocks{projected}, "
                  f"{blocks / seconds:6.1f} blocks/s, {defaulted} defaulted")  # fmt: skip
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    ratios(totals, "(target for 1,000 blocks: <= 60 s)")
    print(f"   peak memory of this worker process  {peak_mb:9.0f} MB (blocks streamed)")
    if "runc/zygote" in totals:
        schedule_cost(layout.blocks, args.slots, totals["runc/zygote"], p99["runc/zygote"])


def ratios(seconds: dict[str, float], target: str) -> None:
    """Every form against the fastest (runc's zygote, the default under runc)."""
    base_name = min(seconds, key=seconds.__getitem__)
    for name, value in seconds.items():
        if name != base_name:
            print(f"   {name + ' / ' + base_name:<36} {value / seconds[base_name]:9.1f} x")
    print(f"   {target}")


if __name__ == "__main__":
    main()

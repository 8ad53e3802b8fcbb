"""Scale-out cost, embedded against the Celery shape, with 1 and 2 workers on this machine, in
one run, for both modes on the 10M-row bench table (1,000 blocks):

* query mode, the count by station: embedded, this process's query processes read the blocks;
  on Celery, node workers compute the blocks' partials and this process only reduces and
  draws the noise;
* aggregate mode, the sample-and-aggregate job (examples/mean_fare_by_period.py in the
  sandbox, zygote form): embedded, this process runs the blocks in its sandbox slots; on
  Celery, node workers run them in their own sandboxes and send back clipped values.

    .venv/bin/python -m bench.scale                  # 1,000 blocks; 3 runs (query), 1 (aggregate)
    .venv/bin/python -m bench.scale --blocks 100 --runs 1

Each row is the median wall time of its runs. "per worker" is blocks/s divided by the
processes doing the blocks (embedded: query processes or sandbox slots). The broker's cost
per task is read off two Celery query rows with the same worker: one block per task against
CHUNK_BLOCKS per task. Needs redis-server (Debian's package) and the runner image; the workers
are started here and stopped after.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import runpy
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path

from bench.query import plans
from bench.sandbox import EXAMPLE, ROOT, WORK, bench_layout
from privacy.outputs import Combine, make_output_spec
from privacy.query import DatasetPolicy, parse_plan
from runner import query as local
from runner.blocks import BlockLayout
from runner.celery_app import NodeApps
from runner.celery_fanout import AGGREGATE_CHUNK_BLOCKS, CeleryBlocks
from runner.pipeline import AggregateJob, BlockResult, local_block_results, run_aggregate
from runner.query import CHUNK_BLOCKS, PartialsSource, QueryJob, local_partials, run_query
from runner.sample import write_code
from sandbox.container import SandboxLimits
from sandbox.docker_sandbox import DockerSandbox
from tests.conftest import redis_server

PLAN = "count by station"
NODE = "bench-scale"


@contextmanager
def workers(broker: str, count: int) -> Iterator[None]:
    """``count`` node workers of one process each (``-c 1``), as separate data-node processes."""
    logs = Path(tempfile.mkdtemp(prefix="unseen-workers-"))
    started = []
    for index in range(count):
        log = logs / f"worker-{index}.log"
        started.append((subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "runner.node_tasks", "worker",
             "-Q", f"node.{NODE}", "-c", "1", "-n", f"w{index}@%h", "--loglevel", "INFO",
             "--without-gossip", "--without-mingle", "--without-heartbeat"],
            cwd=ROOT, stdout=log.open("wb"), stderr=subprocess.STDOUT,
            env={**os.environ, "UNSEEN_BROKER_URL": broker, "UNSEEN_NODE": NODE},
        ), log))  # fmt: skip
    deadline = time.monotonic() + 60
    while not all("ready." in log.read_text(errors="replace") for _process, log in started):
        if time.monotonic() > deadline:
            raise RuntimeError(f"workers did not come up; see {logs}")
        time.sleep(0.2)
    try:
        yield
    finally:
        for process, _log in started:
            process.terminate()
        for process, _log in started:
            process.wait(30)


def timed(action: Callable[[], object], runs: int) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


Row = tuple[str, int, float]
BlockResults = Callable[[], Iterable[BlockResult]]


def table(title: str, rows: list[Row], blocks: int) -> None:
    base = rows[0][2]
    print(f"\n{title}\n{'shape':<44}{'wall s':>8}{'blocks/s':>10}{'per worker':>12}"
          f"{'vs embedded 1':>15}")  # fmt: skip
    for label, processes, seconds in rows:
        rate = blocks / seconds
        print(f"{label:<44}{seconds:>8.2f}{rate:>10.0f}{rate / processes:>12.0f}"
              f"{seconds / base:>14.2f}x")  # fmt: skip


def aggregate_job(layout: BlockLayout) -> AggregateJob:
    code = write_code(
        Path(tempfile.mkdtemp(prefix="unseen-scale-")), "bench-scale", EXAMPLE.read_text()
    )
    outputs = [make_output_spec(o["name"], o["lo"], o["hi"], o["default"])
               for o in runpy.run_path(str(EXAMPLE))["OUTPUTS"]]  # fmt: skip
    return AggregateJob(code, layout, outputs, Combine.MEAN, 1.0, NODE)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=3, help="runs per query row")
    parser.add_argument("--aggregate-runs", type=int, default=1, help="runs per aggregate row")
    parser.add_argument("--only", choices=("query", "aggregate"), help="one mode's rows only")
    args = parser.parse_args()
    layout = bench_layout(args.blocks)
    entry = json.loads((WORK / "data" / "manifest.json").read_text())["datasets"][0]
    policy = DatasetPolicy(entry["columns"], "card_id", {"fare": (0.0, 15.0)}, entry["key_sets"],
                           max_cells=20_000)  # fmt: skip
    raw = plans()[PLAN]
    job = QueryJob(layout, parse_plan(raw, policy), "card_id", 1.0, raw_plan=raw, policy=policy,
                   node=NODE)  # fmt: skip
    aggregate = aggregate_job(layout)
    rows: list[Row] = []
    aggregate_rows: list[Row] = []

    def run(label: str, processes: int, source: PartialsSource) -> None:
        run_query(job, source=source)  # warm: page cache, imports, connections
        seconds = timed(lambda: run_query(job, source=source), args.runs)
        rows.append((label, processes, seconds))
        print(f"  query, {label}: {seconds:.2f} s", flush=True)

    def run_blocks(
        label: str, processes: int, results: Callable[[], Iterable[BlockResult]]
    ) -> None:
        seconds = timed(lambda: run_aggregate(aggregate, results()), args.aggregate_runs)
        aggregate_rows.append((label, processes, seconds))
        print(f"  aggregate, {label}: {seconds:.2f} s", flush=True)

    print(f"{layout.rows:,} rows in {layout.blocks} blocks; query {PLAN!r} (median of "
          f"{args.runs}); aggregate {EXAMPLE.name} (median of {args.aggregate_runs})")  # fmt: skip
    queries, aggregates = args.only in (None, "query"), args.only in (None, "aggregate")
    saved = local.QUERY_PROCESSES
    for processes in (1, 2) if queries else ():
        local.QUERY_PROCESSES = processes
        run(f"embedded, {processes} query process(es)", processes, local_partials)
    local.QUERY_PROCESSES = saved
    sandbox = DockerSandbox(NODE, SandboxLimits())
    for slots in (1, 2) if aggregates else ():
        here = partial(local_block_results, aggregate, sandbox, slots)
        run_blocks(f"embedded, {slots} sandbox slot(s)", slots, here)
    with redis_server() as redis_broker:
        broker = redis_broker.url
        app = NodeApps(broker)
        for count in (1, 2):
            with workers(broker, count):
                if queries:
                    per_chunk = CeleryBlocks(app, chunk=CHUNK_BLOCKS).partials
                    run(f"celery, {count} worker(s), {CHUNK_BLOCKS} blocks/task", count,
                        per_chunk)  # fmt: skip
                if queries and count == 1:
                    single = CeleryBlocks(app, chunk=1).partials
                    run("celery, 1 worker, 1 block/task", 1, single)
                if aggregates:
                    there = partial(CeleryBlocks(app).block_results, aggregate)
                    label = f"celery, {count} worker(s), {AGGREGATE_CHUNK_BLOCKS} blocks/task"
                    run_blocks(label, count, there)
    if queries:
        table(f"query mode: {PLAN}", rows, layout.blocks)
        query_summary(rows, layout.blocks)
    if aggregates:
        table(f"aggregate mode: {EXAMPLE.name} in the sandbox", aggregate_rows, layout.blocks)
        aggregate_summary(aggregate_rows, layout.blocks)


def query_summary(rows: list[Row], blocks: int) -> None:
    times = {label: seconds for label, _, seconds in rows}
    chunked = times[f"celery, 1 worker(s), {CHUNK_BLOCKS} blocks/task"]
    single = times["celery, 1 worker, 1 block/task"]
    embedded = times["embedded, 1 query process(es)"]
    tasks = math.ceil(blocks / CHUNK_BLOCKS)
    per_task = (single - chunked) / (blocks - tasks)
    print(f"\nbroker round trip per task: {per_task * 1000:.2f} ms (1 block/task against "
          f"{CHUNK_BLOCKS}: {blocks} tasks against {tasks}); at {CHUNK_BLOCKS} blocks/task "
          f"that is {per_task / CHUNK_BLOCKS * 1000:.2f} ms a block, "
          f"{per_task / CHUNK_BLOCKS / (chunked / blocks):.0%} of a block's "
          f"{chunked / blocks * 1000:.2f} ms on one worker; embedded in this process, "
          f"a block takes {embedded / blocks * 1000:.2f} ms")  # fmt: skip


def aggregate_summary(rows: list[Row], blocks: int) -> None:
    sandboxed = {label: seconds for label, _, seconds in rows}
    one_slot = sandboxed["embedded, 1 sandbox slot(s)"]
    one_worker = sandboxed[f"celery, 1 worker(s), {AGGREGATE_CHUNK_BLOCKS} blocks/task"]
    print(
        f"aggregate: Celery adds {(one_worker - one_slot) / blocks * 1000:.2f} ms a "
        f"block over one embedded slot ({one_slot / blocks * 1000:.1f} ms a block)"
    )


if __name__ == "__main__":
    main()

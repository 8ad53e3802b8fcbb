"""The query-mode job pipeline: bounded partial aggregates per block, summed, noised once.

No contestant code runs: the plan is data, evaluated by trusted code (``privacy.query``) over
one block at a time, so memory holds one chunk of blocks and the running totals. Blocks are
the same keyed-hash partition aggregate mode uses, and fan out the same way: to this node's
query processes here, or to data nodes' Celery workers (``runner.celery_fanout``).

Bounding a block is numpy over many small arrays, mostly under the GIL: threads would take
turns, so the blocks go to a small pool of processes (spawned once, kept), which send back
only the chunk's partials. The noise is drawn here, in the job's process, once.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass
from typing import Any

from privacy.query import (
    DatasetPolicy,
    Partials,
    QueryPlan,
    block_partials,
    combine_partials,
    referenced_columns,
    release_query,
)
from runner.block_reader import read_block_columns
from runner.blocks import BlockLayout

#: Processes reading and bounding blocks (one per core of a small node); 1: in this process.
QUERY_PROCESSES = min(2, os.cpu_count() or 1)
#: Blocks per unit of work, for a query process or a node's task: enough to amortise a round
#: trip (a broker's costs ~6 ms, bench/scale.py), few enough that progress moves and a lost
#: worker costs little.
CHUNK_BLOCKS = 25

PR_SET_PDEATHSIG = 1  # linux/prctl.h

_pool: ProcessPoolExecutor | None = None
_pool_lock = threading.Lock()


@dataclass(frozen=True)
class QueryJob:
    layout: BlockLayout
    plan: QueryPlan
    unit_column: str
    epsilon: float
    delta: float = 0.0  # spent only by partition selection (keys without a public set)
    # For a node to re-validate the plan when blocks fan out (runner.celery_fanout):
    raw_plan: Mapping[str, Any] | None = None
    policy: DatasetPolicy | None = None
    node: str = "local"


#: Where a query's block partials come from: this process's threads by default, or the data
#: node's workers (``runner.celery_fanout.CeleryBlocks.partials``).
PartialsSource = Callable[[QueryJob, Callable[[int, int], None] | None], Iterable[Partials]]


@dataclass(frozen=True)
class QueryResult:
    released: list[dict[str, object]]
    report: dict[str, object]  # organizer-only


def block_chunks(blocks: int, size: int = CHUNK_BLOCKS) -> list[list[int]]:
    """Block indices in runs of ``size``: the unit of work sent to a query process or a node."""
    return [list(range(start, min(start + size, blocks))) for start in range(0, blocks, size)]


def chunk_partials(
    layout: BlockLayout, blocks: list[int], plan: QueryPlan, unit_column: str
) -> Partials:
    """The bounded partials of some blocks of one dataset, summed (blocks hold disjoint
    units): the unit of work of a query process and of a data node's task alike."""
    columns = referenced_columns(plan, unit_column)
    return combine_partials(
        block_partials(plan, read_block_columns(layout.block_path(index), columns), unit_column)
        for index in blocks
    )


def _die_with_parent(parent: int) -> None:
    """Query process start-up: never outlive the process that started it, even killed."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):  # not Linux: a graceful stop still ends the pool
        pass
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(0)


def _query_pool() -> ProcessPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:  # spawned, not forked: the server process runs threads
            context = multiprocessing.get_context("spawn")
            _pool = ProcessPoolExecutor(
                QUERY_PROCESSES,
                mp_context=context,
                initializer=_die_with_parent,
                initargs=(os.getpid(),),
            )
        return _pool


def stop_query_processes() -> None:
    """End the query processes (the server calls this when it stops)."""
    global _pool
    with _pool_lock:
        if _pool is not None:
            _pool.shutdown(wait=False, cancel_futures=True)
        _pool = None


def local_partials(
    job: QueryJob, progress: Callable[[int, int], None] | None = None
) -> Iterator[Partials]:
    """This node's blocks' partials, chunk by chunk, computed by the query processes."""
    total = job.layout.blocks
    chunks = block_chunks(total)
    done = 0
    try:
        if QUERY_PROCESSES <= 1:
            results: Iterable[Partials] = (
                chunk_partials(job.layout, chunk, job.plan, job.unit_column) for chunk in chunks
            )
        else:
            pool = _query_pool()
            futures = [
                pool.submit(chunk_partials, job.layout, chunk, job.plan, job.unit_column)
                for chunk in chunks
            ]
            results = (future.result() for future in futures)
        for chunk, partial in zip(chunks, results, strict=True):
            yield partial
            done += len(chunk)
            if progress is not None:
                progress(done, total)
    except BrokenProcessPool:  # a query process died: the next job gets a fresh pool
        stop_query_processes()
        raise


def run_query(
    job: QueryJob,
    progress: Callable[[int, int], None] | None = None,
    source: PartialsSource = local_partials,
) -> QueryResult:
    """Every block's bounded partials, summed cell by cell (key by key), then one noisy
    release, drawn here whichever source computed the partials."""
    started = time.monotonic()
    total = combine_partials(source(job, progress))
    released = [asdict(cell) for cell in release_query(job.plan, total, job.epsilon, job.delta)]
    report: dict[str, object] = {
        "blocks": job.layout.blocks,
        "seconds": round(time.monotonic() - started, 3),
    }
    return QueryResult(released, report)

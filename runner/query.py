"""The query-mode job pipeline: bounded partial aggregates per block, summed, noised once.

No contestant code runs: the plan is data, evaluated by trusted code (``privacy.query``) over
one block at a time, so memory holds one block and the running totals. Blocks are the same
keyed-hash partition aggregate mode uses; later they fan out across workers the same way.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
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

#: Blocks read and bounded at once: Parquet decoding and numpy release the GIL for most of
#: their work, so two threads use both cores of a small node.
READ_THREADS = 2


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


def local_partials(
    job: QueryJob, progress: Callable[[int, int], None] | None = None
) -> Iterator[Partials]:
    """Each block's bounded partials, read here, ``READ_THREADS`` blocks at a time."""
    blocks = job.layout.blocks
    columns = referenced_columns(job.plan, job.unit_column)

    def one_block(index: int) -> Partials:
        frame = read_block_columns(job.layout.block_path(index), columns)
        return block_partials(job.plan, frame, job.unit_column)

    with ThreadPoolExecutor(max_workers=READ_THREADS) as pool:
        for done, partial in enumerate(pool.map(one_block, range(blocks)), start=1):
            yield partial
            if progress is not None:
                progress(done, blocks)


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
    report = {"blocks": job.layout.blocks, "seconds": round(time.monotonic() - started, 3)}
    return QueryResult(released, report)

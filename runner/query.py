"""The query-mode job pipeline: bounded partial aggregates per block, summed, noised once.

No contestant code runs: the plan is data, evaluated by trusted code (``privacy.query``) over
one block at a time, so memory holds one block and the running totals. Blocks are the same
keyed-hash partition aggregate mode uses; later they fan out across workers the same way.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass

import pandas as pd

from privacy.query import (
    Partials,
    QueryPlan,
    block_partials,
    combine_partials,
    referenced_columns,
    release_query,
)
from runner.blocks import BlockLayout


@dataclass(frozen=True)
class QueryJob:
    layout: BlockLayout
    plan: QueryPlan
    unit_column: str
    epsilon: float
    delta: float = 0.0  # spent only by partition selection (keys without a public set)


@dataclass(frozen=True)
class QueryResult:
    released: list[dict[str, object]]
    report: dict[str, object]  # organizer-only


def run_query(job: QueryJob, progress: Callable[[int, int], None] | None = None) -> QueryResult:
    """Every block's bounded partials, summed cell by cell (key by key), then one noisy
    release."""
    started = time.monotonic()
    blocks = job.layout.blocks
    columns = referenced_columns(job.plan, job.unit_column)

    def partials() -> Iterator[Partials]:  # one block in memory at a time
        for index in range(blocks):
            frame = pd.read_parquet(job.layout.block_path(index), columns=columns)
            yield block_partials(job.plan, frame, job.unit_column)
            if progress is not None:
                progress(index + 1, blocks)

    total = combine_partials(partials())
    released = [asdict(cell) for cell in release_query(job.plan, total, job.epsilon, job.delta)]
    report = {"blocks": blocks, "seconds": round(time.monotonic() - started, 3)}
    return QueryResult(released, report)

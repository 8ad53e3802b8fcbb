"""Running one job through its lifecycle: claim it, get its blocks' results, release once.

:func:`execute_job` runs in the API's embedded worker (``runner.embedded``) in both deployment
shapes: it is the trusted reducer. What changes between the shapes is where the blocks are
computed (``runner.nodes``): in this process's sandbox, or — with a broker — by the data nodes'
Celery workers (``runner.node_tasks``, reached through ``runner.celery_fanout``), which run the
same per-block code and send back parsed, clipped results or bounded partials, never rows.

The store (implemented by the API's persistence layer and injected here, so imports point one
way) makes each transition of ``runner.lifecycle`` atomic; budget is charged in the same
transaction that stores the noisy result. A failed job's budget is returned only if nothing of
it touched the full data (no block's code ran, no partial came back): once it has, the job is
charged whatever happens, so a refund cannot tell what the data made the code do.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from privacy.outputs import Combine, OutputSpec
from privacy.query import DatasetPolicy, QueryPlan
from runner.blocks import BlockLayout
from runner.lifecycle import ErrorClass, JobState
from runner.nodes import Nodes
from runner.pipeline import AggregateJob, AggregateResult, InfrastructureError, run_aggregate
from runner.query import QueryJob, QueryResult, run_query

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ClaimedJob:
    """What a worker needs to run one aggregate job, resolved by the store."""

    job_id: str
    code_path: Path
    layout: BlockLayout
    outputs: list[OutputSpec]
    combine: Combine
    epsilon: float
    node: str = "local"  # the data node holding the dataset
    block_seconds: float = 0.0  # the public T of every block (0: the node's limit)
    schedule_seconds: float = 0.0  # the public length the worker is held for


@dataclass(frozen=True)
class ClaimedQuery:
    """What a worker needs to run one query-mode job: a validated plan, no code."""

    job_id: str
    layout: BlockLayout
    plan: QueryPlan
    unit_column: str
    epsilon: float
    delta: float = 0.0
    raw_plan: Mapping[str, Any] | None = None  # for a node to validate again
    policy: DatasetPolicy | None = None
    node: str = "local"  # the data node holding the dataset
    schedule_seconds: float = 0.0


class StoreUnavailable(RuntimeError):
    """The store could not be reached to claim a job; nothing changed, the job stays queued."""


class JobStore(Protocol):
    def claim(self, job_id: str) -> ClaimedJob | ClaimedQuery | None:
        """queued → running, atomically; None if the job is not queued any more."""

    def progress(self, job_id: str, done: int, total: int) -> None: ...

    def complete(self, job_id: str, result: AggregateResult | QueryResult) -> None:
        """running → awaiting_review; store the noisy values and commit the budget, atomically."""

    def fail(self, job_id: str, error: ErrorClass, detail: str, charged: bool) -> None:
        """→ failed; the reservation is spent if ``charged``, else returned."""


def execute_job(
    job_id: str,
    store: JobStore,
    nodes: Nodes,
    on_progress: Callable[[int, int], None] | None = None,
    hold: Callable[[float], object] = time.sleep,
) -> JobState:
    """Run one queued job to its next resting state and return that state. Its blocks are
    computed where ``nodes`` says: in this node's sandbox, or on the data node holding them.

    Whatever happens, the worker is held until the job's public schedule has passed since it
    claimed the job (``hold`` waits): the next job's start must not tell how long this one's
    blocks took (``runner.schedule``)."""
    try:
        claimed = store.claim(job_id)
    except StoreUnavailable:  # the worker's poll brings the job back once the store is
        log.warning("job %s not claimed: the store is unreachable; it stays queued", job_id)
        return JobState.QUEUED
    except Exception as exc:  # e.g. no disk space for the job's files: nothing ran
        log.exception("job %s could not be prepared", job_id)
        store.fail(job_id, ErrorClass.INFRASTRUCTURE, f"{type(exc).__name__}: {exc}", False)
        return JobState.FAILED
    if claimed is None:
        return JobState.FAILED
    ends_at = time.monotonic() + claimed.schedule_seconds
    try:
        return _run_claimed(claimed, store, nodes, on_progress)
    finally:
        left = ends_at - time.monotonic()
        if left > 0:
            hold(left)
        elif claimed.schedule_seconds:
            log.warning("job %s overran its schedule by %.2f s", job_id, -left)


def _run_claimed(
    claimed: ClaimedJob | ClaimedQuery,
    store: JobStore,
    nodes: Nodes,
    on_progress: Callable[[int, int], None] | None,
) -> JobState:
    job_id = claimed.job_id
    touched = False  # some block's result (or a query's partials) came back

    def progress(done: int, total: int) -> None:
        nonlocal touched
        touched = True
        store.progress(job_id, done, total)
        if on_progress is not None:
            on_progress(done, total)

    result: AggregateResult | QueryResult
    try:
        if isinstance(claimed, ClaimedQuery):
            query = QueryJob(
                claimed.layout, claimed.plan, claimed.unit_column, claimed.epsilon, claimed.delta,
                claimed.raw_plan, claimed.policy, claimed.node,
            )  # fmt: skip
            result = run_query(query, progress, nodes.partials)
        else:
            job = AggregateJob(
                claimed.code_path, claimed.layout, claimed.outputs, claimed.combine,
                claimed.epsilon, claimed.node, claimed.block_seconds,
            )  # fmt: skip
            result = run_aggregate(job, nodes.block_results(job), progress)
    except Exception as exc:  # nothing was released: no noise drawn yet
        log.exception("job %s failed before release", job_id)
        if isinstance(exc, InfrastructureError):  # every block came back: did any code run?
            touched = exc.touched
        store.fail(job_id, ErrorClass.INFRASTRUCTURE, f"{type(exc).__name__}: {exc}", touched)
        return JobState.FAILED
    try:
        store.complete(job_id, result)
    except Exception as exc:  # noise was drawn: the budget stays spent
        log.exception("job %s failed while storing its release", job_id)
        store.fail(job_id, ErrorClass.INTERNAL, f"{type(exc).__name__}: {exc}", True)
        return JobState.FAILED
    return JobState.AWAITING_REVIEW

"""The runner's ``JobStore`` on top of the database: each job transition is one transaction.

The database may be briefly away while a job runs (PostgreSQL restarting, a network blip). A
job's progress is then skipped (the next update lands); its result and its failure are retried
until the database is back, for up to ``outage_seconds``: the release was paid for with noise
already drawn, so it must not be dropped. Retrying is safe: each is one transaction guarded by
the job's state, so one that did commit before its answer was lost is not applied twice.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import select
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session

from api import crud
from api import job_lifecycle as lifecycle
from api.db import Database
from api.models import Dataset, Job, as_utc, utcnow
from privacy.outputs import Combine, make_output_spec
from privacy.query import parse_plan
from runner.blocks import BlockLayout
from runner.jobs import ClaimedJob, ClaimedQuery, StoreUnavailable
from runner.lifecycle import ErrorClass, JobState, Move
from runner.pipeline import AggregateResult
from runner.query import QueryResult
from runner.sample import write_code

log = logging.getLogger(__name__)
T = TypeVar("T")


def database_away(exc: BaseException) -> bool:
    """Whether an error is the database being unreachable, rather than a bug or a refusal."""
    return isinstance(exc, OperationalError) or (
        isinstance(exc, DBAPIError) and exc.connection_invalidated
    )


class SqlJobStore:
    def __init__(self, db: Database, jobs_dir: Path, outage_seconds: float = 120.0) -> None:
        self._db = db
        self._jobs_dir = jobs_dir
        self._outage_seconds = outage_seconds

    def _until_back(self, what: str, attempt: Callable[[bool], T]) -> T:
        """Run ``attempt(retrying)`` until it gets through to the database, for up to
        ``outage_seconds``; errors other than the database being away are raised at once."""
        deadline = time.monotonic() + self._outage_seconds
        retrying = False
        while True:
            try:
                return attempt(retrying)
            except DBAPIError as exc:
                if not database_away(exc) or time.monotonic() > deadline:
                    raise
                if not retrying:
                    log.warning("database unreachable while storing %s; retrying", what)
                retrying = True
                time.sleep(1.0)

    def queued(self, limit: int = 100) -> list[str]:
        """Ids of queued jobs, oldest first: the worker's poll, for jobs other processes took."""
        with self._db.read() as session:
            return list(session.scalars(
                select(Job.id).where(Job.state == JobState.QUEUED.value)
                .order_by(Job.created_at).limit(limit)
            ))  # fmt: skip

    def claim(self, job_id: str) -> ClaimedJob | ClaimedQuery | None:
        try:
            return self._claim(job_id)
        except DBAPIError as exc:
            if database_away(exc):  # nothing changed: the job stays queued for the next poll
                raise StoreUnavailable(f"database unreachable: {exc}") from exc
            raise

    def _claim(self, job_id: str) -> ClaimedJob | ClaimedQuery | None:
        with self._db.transaction() as session:
            job = session.get(Job, job_id)
            if job is None or not lifecycle.perform(session, job, Move.CLAIM, started_at=utcnow()):
                return None
            session.refresh(job)
            dataset = session.get(Dataset, job.dataset_id)
            assert dataset is not None
            # From the catalog, not the node's files: the blocks may be on another node.
            layout = BlockLayout(
                Path(dataset.directory), dataset.blocks, dataset.rows, dataset.units
            )
            job.blocks_total = layout.blocks
            policy = crud.dataset_policy(dataset)
        if job.mode == "query":
            assert job.plan is not None
            plan = parse_plan(job.plan, policy)  # validated at submission; same policy now
            return ClaimedQuery(
                job_id, layout, plan, policy.unit_column, job.epsilon, job.delta,
                raw_plan=job.plan, policy=policy, node=dataset.node,
                schedule_seconds=job.schedule_seconds,
            )  # fmt: skip
        outputs = [make_output_spec(**spec) for spec in job.outputs]
        return ClaimedJob(
            job_id,
            write_code(self._jobs_dir, job.id, job.code),
            layout,
            outputs,
            Combine(job.combine),
            job.epsilon,
            dataset.node,
            job.block_seconds,
            job.schedule_seconds,
        )

    def progress(self, job_id: str, done: int, total: int) -> None:
        try:
            with self._db.transaction() as session:
                lifecycle.update_running(session, job_id, blocks_done=done, blocks_total=total)
        except DBAPIError as exc:
            if not database_away(exc):
                raise
            log.warning("database unreachable: progress of job %s not stored", job_id)

    def complete(self, job_id: str, result: AggregateResult | QueryResult) -> None:
        if isinstance(result, QueryResult):
            released, report, logs = result.released, result.report, ""
        else:
            released = [asdict(value) for value in result.released]
            report, logs = _aggregate_report(result), "\n".join(result.report.logs)

        def attempt(retrying: bool) -> None:
            with self._db.transaction() as session:
                job = session.get(Job, job_id)
                assert job is not None
                if retrying and job.noise_drawn and job.state != JobState.RUNNING.value:
                    return  # the first attempt committed; its answer was what got lost
                self._complete(session, job, released, report, logs)

        self._until_back(f"job {job_id}'s release", attempt)

    @staticmethod
    def _complete(
        session: Session, job: Job, released: list[Any], report: dict[str, Any], logs: str
    ) -> None:
        if job.started_at is not None and job.schedule_seconds:
            # organizers only: how much of its public schedule the run used (over 1: overran)
            run = (utcnow() - as_utc(job.started_at)).total_seconds()
            report = {**report, "run_seconds": round(run, 3),
                      "schedule_seconds": job.schedule_seconds}  # fmt: skip
        moved = lifecycle.perform(
            session, job, Move.COMPLETE, result=released, noise_drawn=True, report=report,
            logs=logs,
        )  # fmt: skip
        if not moved:
            raise RuntimeError(f"job {job.id} left the running state before its release")

    def fail(self, job_id: str, error: ErrorClass, detail: str, charged: bool) -> None:
        def attempt(_retrying: bool) -> None:
            with self._db.transaction() as session:
                job = session.get(Job, job_id)
                if job is not None:
                    lifecycle.fail(session, job, error, detail, charged)

        self._until_back(f"job {job_id}'s failure", attempt)


def _aggregate_report(result: AggregateResult) -> dict[str, object]:
    report = result.report
    return {
        "blocks": report.blocks,
        "blocks_defaulted": report.blocks_defaulted,
        "outcomes": report.outcomes,
        "run_ends": report.ends,
        "block_seconds_mean": report.block_seconds_total / max(1, report.blocks),
        "sandboxes": report.sandboxes,  # which runtime/isolation ran the blocks
    }

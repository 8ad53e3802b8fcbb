"""The runner's ``JobStore`` on top of the database: each job transition is one transaction."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from sqlalchemy import select

from api import crud
from api.db import Database
from api.models import Dataset, Job
from privacy.budget import to_delta, to_epsilon
from privacy.outputs import Combine, make_output_spec
from privacy.query import parse_plan
from runner.blocks import load_layout
from runner.pipeline import AggregateResult
from runner.query import QueryResult
from runner.sample import write_code
from runner.tasks import ClaimedJob, ClaimedQuery, ErrorClass, JobState


class SqlJobStore:
    def __init__(self, db: Database, jobs_dir: Path) -> None:
        self._db = db
        self._jobs_dir = jobs_dir

    def queued(self, limit: int = 100) -> list[str]:
        """Ids of queued jobs, oldest first: the worker's poll, for jobs other processes took."""
        with self._db.read() as session:
            return list(session.scalars(
                select(Job.id).where(Job.state == JobState.QUEUED.value)
                .order_by(Job.created_at).limit(limit)
            ))  # fmt: skip

    def claim(self, job_id: str) -> ClaimedJob | ClaimedQuery | None:
        with self._db.transaction() as session:
            if not crud.transition(
                session, job_id, {JobState.QUEUED}, state=JobState.RUNNING.value
            ):
                return None
            job = session.get(Job, job_id)
            dataset = session.get(Dataset, job.dataset_id)
            assert job is not None and dataset is not None
            layout = load_layout(Path(dataset.directory))
            job.blocks_total = layout.blocks
            crud.audit(session, None, "job.started", job=job_id)
            policy = crud.dataset_policy(dataset)
        if job.mode == "query":
            assert job.plan is not None
            plan = parse_plan(job.plan, policy)  # validated at submission; same policy now
            return ClaimedQuery(
                job_id, layout, plan, policy.unit_column, job.epsilon, job.delta,
                raw_plan=job.plan, policy=policy, node=dataset.node,
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
        )

    def progress(self, job_id: str, done: int, total: int) -> None:
        with self._db.transaction() as session:
            crud.transition(
                session, job_id, {JobState.RUNNING}, blocks_done=done, blocks_total=total
            )

    def complete(self, job_id: str, result: AggregateResult | QueryResult) -> None:
        if isinstance(result, QueryResult):
            released, report, logs = result.released, result.report, ""
        else:
            released = [asdict(value) for value in result.released]
            report, logs = _aggregate_report(result), "\n".join(result.report.logs)
        with self._db.transaction() as session:
            job = session.get(Job, job_id)
            assert job is not None
            moved = crud.transition(
                session,
                job_id,
                {JobState.RUNNING},
                state=JobState.AWAITING_REVIEW.value,
                result=released,
                noise_drawn=True,
                report=report,
                logs=logs,
            )
            if not moved:
                raise RuntimeError(f"job {job_id} left the running state before its release")
            crud.commit_budget(session, job)
            charged = {"epsilon": to_epsilon(job.charge_units), "delta": to_delta(job.delta_units)}
            crud.audit(session, None, "budget.charged", job=job_id, **charged)
            crud.audit(session, None, "job.awaiting_review", job=job_id)

    def fail(self, job_id: str, error: ErrorClass, detail: str, noise_drawn: bool) -> None:
        with self._db.transaction() as session:
            job = session.get(Job, job_id)
            if job is not None:
                crud.fail_job(session, job, error, detail, noise_drawn)


def _aggregate_report(result: AggregateResult) -> dict[str, object]:
    report = result.report
    return {
        "blocks": report.blocks,
        "blocks_defaulted": report.blocks_defaulted,
        "outcomes": report.outcomes,
        "run_ends": report.ends,
        "block_seconds_mean": report.block_seconds_total / max(1, report.blocks),
    }

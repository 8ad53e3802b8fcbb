"""The job lifecycle on the database: the one place that changes ``Job.state``.

Each move is a row of ``runner.lifecycle.TRANSITIONS``; :func:`perform` does the row in the
caller's transaction: compare-and-set on the state (so two workers, or two reviewers, cannot
both win), the row's budget effect on both ledgers (team and population), and its audit entries.
A job is only *created* elsewhere, in one of ``INITIAL_STATES``.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from api.crud import audit, commit_budget, return_budget, updated_rows
from api.models import Job, User
from privacy.budget import to_delta, to_epsilon
from runner.lifecycle import TRANSITIONS, BudgetEffect, ErrorClass, JobState, Move


def perform(
    session: Session,
    job: Job,
    move: Move,
    actor: User | None = None,
    detail: dict[str, Any] | None = None,
    **values: object,
) -> bool:
    """Do ``move`` on ``job`` with ``values`` written alongside; False (nothing written) if
    the job is not in one of the move's source states any more."""
    if "state" in values:
        raise ValueError("the state is the move's to set, not the caller's")
    row = TRANSITIONS[move]
    if row.budget is not BudgetEffect.NONE:
        values = {**values, "budget_effect": row.budget.value}
    moved = updated_rows(
        session,
        update(Job)
        .where(Job.id == job.id, Job.state.in_([state.value for state in row.sources]))
        .values(state=row.target.value, **values)
        .execution_options(synchronize_session=False),
    )
    if moved != 1:
        return False
    if row.budget is not BudgetEffect.NONE:
        (commit_budget if row.budget is BudgetEffect.COMMIT else return_budget)(session, job)
        audit(
            session, None,
            "budget.charged" if row.budget is BudgetEffect.COMMIT else "budget.returned",
            job=job.id, epsilon=to_epsilon(job.charge_units), delta=to_delta(job.delta_units),
        )  # fmt: skip
    audit(session, actor, row.audit, job=job.id, **(detail or {}))
    return True


def update_running(session: Session, job_id: str, **values: object) -> bool:
    """Write a running job's progress (not a move: the state stays); False if it left
    ``running`` meanwhile."""
    if "state" in values:
        raise ValueError("state changes are moves: use perform()")
    statement = (
        update(Job)
        .where(Job.id == job_id, Job.state == JobState.RUNNING.value)
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    return updated_rows(session, statement) == 1


def fail(session: Session, job: Job, error: ErrorClass, detail: str, charged: bool) -> bool:
    """queued|running → failed. Charged (the reservation spent) once the job's code or plan
    touched the full data, or noise was drawn; else the reservation is returned."""
    return perform(
        session, job, Move.FAIL_CHARGED if charged else Move.FAIL_UNTOUCHED,
        detail={"error": error.value}, error_class=error.value, error_detail=detail[-4000:],
    )  # fmt: skip


def recover_interrupted(session: Session) -> list[str]:
    """At start-up: fail jobs a previous process left running and return the ids of queued
    jobs to run again. An interrupted job is charged: its blocks may have run on the full data,
    and whether one had when the server died depends on how long they took."""
    for job in session.scalars(select(Job).where(Job.state == JobState.RUNNING.value)):
        fail(session, job, ErrorClass.INTERRUPTED, "the server stopped while this job ran", True)
    queued = select(Job.id).where(Job.state == JobState.QUEUED.value).order_by(Job.created_at)
    return list(session.scalars(queued))

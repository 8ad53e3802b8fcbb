"""Organizer review routes: approve (release once enough organizers have), reject, the queue.
The rules are in ``api.review``."""

from __future__ import annotations

from fastapi import APIRouter

from api.auth import Organizer
from api.context import Context
from api.errors import ApiError
from api.review import approve, reject_job
from api.routes.jobs import list_jobs
from api.schemas import AnyJobOut, JobOrganizerOut, ReviewDecision
from runner.lifecycle import IN_REVIEW

router = APIRouter(prefix="/v1", tags=["review"])


@router.get("/review")
def review_queue(ctx: Context, actor: Organizer) -> list[AnyJobOut]:
    """Jobs awaiting review, or approved by some reviewers and awaiting the others."""
    return [job for state in sorted(IN_REVIEW) for job in list_jobs(ctx, actor, state=state.value)]


@router.post("/jobs/{job_id}/release")
def release(job_id: str, ctx: Context, actor: Organizer) -> JobOrganizerOut:
    """Approve the release: the job is released once the contest's approvals are in (1 or 2,
    from different organizers, none of the job's team or its submitter)."""
    with ctx.db.transaction() as session:
        return approve(session, job_id, actor)


@router.post("/jobs/{job_id}/reject")
def reject(job_id: str, body: ReviewDecision, ctx: Context, actor: Organizer) -> JobOrganizerOut:
    """The team sees the reason; the budget stays spent because the noise was drawn."""
    if not body.reason.strip():
        raise ApiError(422, "reason_required", "give the team a reason for the rejection")
    with ctx.db.transaction() as session:
        return reject_job(session, job_id, actor, body.reason.strip())

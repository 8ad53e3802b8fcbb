"""Organizer review: a noisy output leaves only when an organizer releases it."""

from __future__ import annotations

from fastapi import APIRouter

from api import crud
from api.auth import Organizer
from api.context import Context
from api.errors import ApiError, not_found
from api.models import Dataset, Job, Team, User
from api.routes.jobs import list_jobs
from api.schemas import AnyJobOut, JobOrganizerOut, ReviewDecision
from api.views import job_organizer_view
from runner.tasks import JobState

router = APIRouter(prefix="/v1", tags=["review"])


def _decide(
    job_id: str, ctx: Context, actor: User, target: JobState, reason: str
) -> JobOrganizerOut:
    with ctx.db.transaction() as session:
        job = session.get(Job, job_id)
        if job is None:
            raise not_found("job", job_id, "see the review queue at GET /v1/review")
        moved = crud.transition(
            session,
            job_id,
            {JobState.AWAITING_REVIEW},
            state=target.value,
            review_reason=reason or None,
            reviewed_by=actor.id,
        )
        if not moved:
            raise ApiError(
                409,
                "not_awaiting_review",
                f"job {job_id} is {job.state}; only jobs awaiting review can be released or "
                "rejected",
            )
        crud.audit(session, actor, f"job.{target.value}", job=job_id, reason=reason)
        session.refresh(job)
        dataset = session.get(Dataset, job.dataset_id)
        team = session.get(Team, job.team_id)
        assert dataset is not None and team is not None
        return job_organizer_view(job, dataset.name, team.name)


@router.get("/review")
def review_queue(ctx: Context, actor: Organizer) -> list[AnyJobOut]:
    return list_jobs(ctx, actor, state=JobState.AWAITING_REVIEW.value)


@router.post("/jobs/{job_id}/release")
def release(job_id: str, ctx: Context, actor: Organizer) -> JobOrganizerOut:
    return _decide(job_id, ctx, actor, JobState.RELEASED, "")


@router.post("/jobs/{job_id}/reject")
def reject(job_id: str, body: ReviewDecision, ctx: Context, actor: Organizer) -> JobOrganizerOut:
    """The team sees the reason; the budget stays spent because the noise was drawn."""
    if not body.reason.strip():
        raise ApiError(422, "reason_required", "give the team a reason for the rejection")
    return _decide(job_id, ctx, actor, JobState.REJECTED, body.reason.strip())

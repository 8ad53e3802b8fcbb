"""The review rules: a noisy output leaves only once enough independent organizers approve it.

Per contest, a release needs 1 or 2 approvals (default: 2 once there are two organizers). No
one reviews a job of their own team or one they submitted; nobody approves a job twice; any
eligible reviewer may reject it, with a reason the team sees. Every decision is a lifecycle
move (``api.job_lifecycle``) with its audit entry.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from api import job_lifecycle as lifecycle
from api.errors import ApiError, not_found
from api.models import Approval, Contest, Dataset, Job, Team, User
from api.schemas import ApprovalOut, JobOrganizerOut, ReviewOut
from api.views import job_organizer_view
from runner.lifecycle import IN_REVIEW, Move


def approvals_needed(session: Session, contest_id: str | None) -> int:
    """The contest's choice, else 2 once there are two organizers (1 before)."""
    contest = session.get(Contest, contest_id) if contest_id else None
    if contest is not None and contest.approvals_required:
        return contest.approvals_required
    organizers = session.scalar(
        select(func.count()).select_from(User).where(User.role == "organizer")
    )
    return 2 if (organizers or 0) >= 2 else 1


def _job_contest(session: Session, job: Job) -> str | None:
    dataset = session.get_one(Dataset, job.dataset_id)
    return dataset.contest_id or session.get_one(Team, job.team_id).contest_id


def review_status(session: Session, jobs: Iterable[Job]) -> dict[str, ReviewOut]:
    """Who approved each job and how many approvals it needs, in two queries."""
    jobs = list(jobs)
    if not jobs:
        return {}
    rows = session.execute(
        select(Approval.job_id, User.name, Approval.at)
        .join(User, User.id == Approval.user_id)
        .where(Approval.job_id.in_([job.id for job in jobs]))
        .order_by(Approval.at)
    ).all()
    needed: dict[str | None, int] = {}
    status = {}
    for job in jobs:
        contest = _job_contest(session, job)
        if contest not in needed:
            needed[contest] = approvals_needed(session, contest)
        approvals = [ApprovalOut(by=name, at=at) for job_id, name, at in rows if job_id == job.id]
        status[job.id] = ReviewOut(approvals=approvals, needed=needed[contest])
    return status


def _refuse_own(job: Job, actor: User) -> None:
    if actor.team_id is not None and actor.team_id == job.team_id:
        raise ApiError(403, "own_team", "you are a member of this job's team: another "
                       "organizer must review it")  # fmt: skip
    if job.user_id == actor.id:
        raise ApiError(403, "own_job", "you submitted this job: another organizer must review it")


def _open_job(session: Session, job_id: str, actor: User) -> Job:
    """The job, locked for this decision, if it is still open and the actor may decide it."""
    job = session.execute(
        select(Job).where(Job.id == job_id).with_for_update()
    ).scalar_one_or_none()
    if job is None:
        raise not_found("job", job_id, "see the review queue at GET /v1/review")
    if job.state not in {state.value for state in IN_REVIEW}:
        raise ApiError(409, "not_awaiting_review", f"job {job_id} is {job.state}; only jobs "
                       "awaiting review can be approved, released or rejected")  # fmt: skip
    _refuse_own(job, actor)
    return job


def _answer(session: Session, job: Job) -> JobOrganizerOut:
    session.refresh(job)
    dataset = session.get_one(Dataset, job.dataset_id)
    team = session.get_one(Team, job.team_id)
    return job_organizer_view(job, dataset.name, team.name, review_status(session, [job])[job.id])


def approve(session: Session, job_id: str, actor: User) -> JobOrganizerOut:
    """One approval; the one that completes what the contest needs releases the job."""
    job = _open_job(session, job_id, actor)
    if session.scalar(select(Approval).where(Approval.job_id == job.id,
                                             Approval.user_id == actor.id)):  # fmt: skip
        raise ApiError(409, "already_approved", f"you already approved job {job_id}; another "
                       "organizer must approve it too")  # fmt: skip
    session.add(Approval(job_id=job.id, user_id=actor.id))
    try:
        session.flush()
    except IntegrityError as exc:  # the same person, twice at once
        raise ApiError(409, "already_approved", f"you already approved job {job_id}") from exc
    count = session.scalar(select(func.count()).where(Approval.job_id == job.id)) or 0
    needed = approvals_needed(session, _job_contest(session, job))
    if count >= needed:
        moved = lifecycle.perform(session, job, Move.RELEASE, actor,
                                  detail={"approvals": count}, reviewed_by=actor.id)  # fmt: skip
    else:
        moved = lifecycle.perform(session, job, Move.APPROVE, actor,
                                  detail={"approvals": count, "needed": needed})  # fmt: skip
    if not moved:
        raise ApiError(409, "not_awaiting_review", f"job {job_id} changed while you decided; "
                       "read it again")  # fmt: skip
    return _answer(session, job)


def reject_job(session: Session, job_id: str, actor: User, reason: str) -> JobOrganizerOut:
    job = _open_job(session, job_id, actor)
    if not lifecycle.perform(session, job, Move.REJECT, actor, detail={"reason": reason},
                             review_reason=reason, reviewed_by=actor.id):  # fmt: skip
        raise ApiError(409, "not_awaiting_review", f"job {job_id} changed while you decided")
    return _answer(session, job)

"""Contests (organizers): rounds with dates, round-two admission, identity checks, the teams'
standing, and the results table of every released output (also as CSV)."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime

from fastapi import APIRouter, Query
from fastapi.responses import Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from api import crud
from api.auth import CurrentUser, Organizer
from api.contest import RoundDates, full_data_problems
from api.context import Context
from api.errors import ApiError, not_found
from api.models import Contest, Dataset, Job, Licence, Round, Team, User, as_utc, iso_z
from api.review import approvals_needed
from api.schemas import (
    Admission,
    ContestOut,
    Identity,
    MemberOut,
    NewContest,
    ResultRow,
    ReviewRule,
    RoundIn,
    RoundOut,
    TeamStatusOut,
)
from api.views import licence_view
from runner.lifecycle import JobState

router = APIRouter(prefix="/v1", tags=["contests"])


def _contest_view(session: Session, contest: Contest) -> ContestOut:
    now = datetime.now(UTC)
    rounds = session.scalars(
        select(Round).where(Round.contest_id == contest.id).order_by(Round.number)
    )
    return ContestOut(
        id=contest.id,
        name=contest.name,
        description=contest.description,
        rounds=[_round_view(r, now) for r in rounds],
        datasets=list(
            session.scalars(select(Dataset.name).where(Dataset.contest_id == contest.id))
        ),
        teams=list(session.scalars(select(Team.name).where(Team.contest_id == contest.id))),
        approvals_required=contest.approvals_required,
        approvals_needed=approvals_needed(session, contest.id),
    )


def _round_view(r: Round, now: datetime) -> RoundOut:
    is_open = RoundDates(r.number, r.opens_at, r.closes_at).is_open(now)
    return RoundOut(number=r.number, opens_at=r.opens_at, closes_at=r.closes_at, open_now=is_open)


@router.post("/contests", status_code=201)
def create_contest(body: NewContest, ctx: Context, actor: Organizer) -> ContestOut:
    with ctx.db.transaction() as session:
        if session.scalar(select(Contest).where(Contest.name == body.name)) is not None:
            raise ApiError(
                409, "contest_exists", f"a contest named {body.name!r} exists; pick another name"
            )
        contest = Contest(name=body.name, description=body.description)
        session.add(contest)
        session.flush()
        crud.audit(session, actor, "contest.created", contest=body.name)
        return _contest_view(session, contest)


@router.get("/contests")
def list_contests(ctx: Context, user: CurrentUser) -> list[ContestOut]:
    """Organizers: every contest; contestants: their team's."""
    with ctx.db.read() as session:
        query = select(Contest).order_by(Contest.name)
        if user.role != "organizer":
            team = session.get(Team, user.team_id)
            query = query.where(Contest.id == (team.contest_id if team else None))
        return [_contest_view(session, c) for c in session.scalars(query)]


@router.put("/contests/{contest}/rounds/{number}")
def set_round(
    contest: str, number: int, body: RoundIn, ctx: Context, actor: Organizer
) -> ContestOut:
    """Set round 1 (samples) or round 2 (full data) dates; times are UTC unless stated."""
    if number not in (1, 2):
        raise ApiError(422, "bad_round", "a contest has round 1 (samples) and round 2 (full data)")
    opens, closes = (as_utc(body.opens_at), as_utc(body.closes_at))
    if closes <= opens:
        raise ApiError(422, "bad_round", "closes_at must come after opens_at")
    with ctx.db.transaction() as session:
        found = crud.resolve_contest(session, contest)
        existing = session.scalar(
            select(Round).where(Round.contest_id == found.id, Round.number == number)
        )
        if existing is None:
            session.add(Round(contest_id=found.id, number=number, opens_at=opens,
                              closes_at=closes))  # fmt: skip
        else:
            existing.opens_at, existing.closes_at = opens, closes
        session.flush()
        crud.audit(session, actor, "round.set", contest=found.name, round=number,
                   opens_at=iso_z(opens), closes_at=iso_z(closes))  # fmt: skip
        return _contest_view(session, found)


@router.put("/contests/{contest}/review")
def set_review(contest: str, body: ReviewRule, ctx: Context, actor: Organizer) -> ContestOut:
    """How many independent organizers must approve each release of this contest (1 or 2);
    null goes back to the default (2 once there are two organizers)."""
    with ctx.db.transaction() as session:
        found = crud.resolve_contest(session, contest)
        found.approvals_required = body.approvals
        session.flush()
        crud.audit(session, actor, "contest.review_rule", contest=found.name,
                   approvals=body.approvals)  # fmt: skip
        return _contest_view(session, found)


@router.put("/teams/{team}/admission")
def set_admission(team: str, body: Admission, ctx: Context, actor: Organizer) -> TeamStatusOut:
    """Admit a finalist team to round two (or withdraw that)."""
    with ctx.db.transaction() as session:
        found = crud.get_team(session, team)
        found.admitted_at = datetime.now(UTC) if body.admitted else None
        crud.audit(session, actor, "team.admission", team=found.name, admitted=body.admitted)
        session.flush()
        return team_status(session, found)


@router.put("/users/{name}/identity")
def set_identity(name: str, body: Identity, ctx: Context, actor: Organizer) -> MemberOut:
    """Record that an organizer checked this person's identity (or withdraw it)."""
    with ctx.db.transaction() as session:
        user = session.scalar(select(User).where(User.name == name))
        if user is None:
            raise not_found("user", name, "see the members with GET /v1/teams/status")
        user.identity_verified = body.verified
        crud.audit(session, actor, "identity.verified" if body.verified else "identity.revoked",
                   user=name)  # fmt: skip
        return MemberOut(name=user.name, identity_verified=user.identity_verified)


@router.get("/teams/status")
def teams_status(ctx: Context, _actor: Organizer) -> list[TeamStatusOut]:
    """Every team's way to round two: admission, licence, identities, what still blocks it."""
    with ctx.db.read() as session:
        teams = session.scalars(select(Team).order_by(Team.name)).all()
        return [team_status(session, team) for team in teams]


def team_status(session: Session, team: Team) -> TeamStatusOut:
    contest = session.get(Contest, team.contest_id) if team.contest_id else None
    licence = session.scalar(
        select(Licence).where(Licence.team_id == team.id).order_by(Licence.uploaded_at.desc())
    )
    members = session.scalars(select(User).where(User.team_id == team.id).order_by(User.name))
    return TeamStatusOut(
        id=team.id,
        name=team.name,
        contest=contest.name if contest else None,
        admitted=team.admitted_at is not None,
        licence=licence_view(session, licence) if licence else None,
        members=[MemberOut(name=m.name, identity_verified=m.identity_verified) for m in members],
        full_data_blocked_by=full_data_problems(
            crud.team_standing(session, team), datetime.now(UTC)
        ),
    )


@router.get("/results", response_model=list[ResultRow])
def results(
    ctx: Context,
    user: CurrentUser,
    contest: str | None = Query(None, description="Only this contest's datasets."),
    format: str = Query("json", pattern="^(json|csv)$", description="json or csv"),
) -> Response:
    """Every released output, one row per value (organizers: all teams; contestants: their
    own), with its noise scale, 95 % error bound and ε."""
    query = (
        select(Job, Team.name, Dataset.name)
        .join(Team, Job.team_id == Team.id)
        .join(Dataset, Job.dataset_id == Dataset.id)
        .where(Job.state == JobState.RELEASED.value, Job.target == "full")
        .order_by(Team.name, Job.updated_at)
    )
    if user.role != "organizer":
        query = query.where(Job.team_id == user.team_id)
    with ctx.db.read() as session:
        if contest is not None:
            query = query.where(Dataset.contest_id == crud.resolve_contest(session, contest).id)
        rows = [
            ResultRow(team=team, dataset=dataset, job=job.id, mode=job.mode,
                      released_at=job.updated_at, output=cell["name"], keys=cell.get("keys"),
                      value=cell["value"], noise_scale=cell["noise_scale"],
                      error_bound_95=cell["error_bound_95"], epsilon=cell["epsilon"])
            for job, team, dataset in session.execute(query)
            for cell in job.result or []
        ]  # fmt: skip
    if format == "json":
        body = json.dumps([row.model_dump(mode="json") for row in rows])
        return Response(body, media_type="application/json")
    return Response(
        _csv(rows),
        media_type="text/csv",
        headers={"content-disposition": 'attachment; filename="results.csv"'},
    )


def _csv(rows: list[ResultRow]) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["team", "dataset", "job", "mode", "released_at", "output", "keys", "value",
                     "noise_scale", "error_bound_95", "epsilon"])  # fmt: skip
    for r in rows:
        keys = json.dumps(r.keys, sort_keys=True) if r.keys else ""
        writer.writerow([r.team, r.dataset, r.job, r.mode, iso_z(r.released_at), r.output,
                         keys, r.value, r.noise_scale, r.error_bound_95, r.epsilon])  # fmt: skip
    return out.getvalue()

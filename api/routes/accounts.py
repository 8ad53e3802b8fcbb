"""Organizers, teams and their members. Organizers come from the bootstrap secret."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Depends
from sqlalchemy import select

from api import crud, token_policy
from api.auth import AnyPrincipal, Organizer, bootstrap_allowed
from api.context import Context
from api.logins import token_expiry
from api.models import Team, User
from api.schemas import NewTeam, NewUser, TeamOut, UserOut, UserWithToken

router = APIRouter(prefix="/v1", tags=["accounts"])


def _with_token(user: User, token: str, expires_at: datetime | None) -> UserWithToken:
    return UserWithToken(id=user.id, name=user.name, role=user.role, team_id=user.team_id,
                         token=token, expires_at=expires_at)  # fmt: skip


@router.post("/organizers", status_code=201, dependencies=[Depends(bootstrap_allowed)])
def create_organizer(body: NewUser, ctx: Context) -> UserWithToken:
    expires = token_expiry(token_policy.read(ctx), "organizer")
    with ctx.db.transaction() as session:
        user, token = crud.create_user(session, body.name, "organizer", None, None, body.password,
                                       token_expires_at=expires)  # fmt: skip
    return _with_token(user, token, expires)


@router.get("/me")
def me(user: AnyPrincipal) -> UserOut:
    return UserOut(id=user.id, name=user.name, role=user.role, team_id=user.team_id)


@router.post("/teams", status_code=201)
def create_team(body: NewTeam, ctx: Context, actor: Organizer) -> TeamOut:
    with ctx.db.transaction() as session:
        team = crud.create_team(session, body.name, actor, body.contest)
    return TeamOut(id=team.id, name=team.name)


@router.get("/teams")
def list_teams(ctx: Context, _actor: Organizer) -> list[TeamOut]:
    with ctx.db.read() as session:
        return [TeamOut(id=t.id, name=t.name) for t in session.scalars(select(Team))]


@router.post("/teams/{team}/members", status_code=201)
def add_member(team: str, body: NewUser, ctx: Context, actor: Organizer) -> UserWithToken:
    expires = token_expiry(token_policy.read(ctx), "contestant")
    with ctx.db.transaction() as session:
        found = crud.get_team(session, team)
        user, token = crud.create_user(
            session, body.name, "contestant", found, actor, body.password,
            token_expires_at=expires,
        )  # fmt: skip
    return _with_token(user, token, expires)

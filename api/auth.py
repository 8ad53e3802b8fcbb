"""Bearer tokens: random, shown once, stored only as a SHA-256 hash."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy import select, update

from api.errors import ApiError
from api.models import ApiToken, User

TOKEN_PREFIX = "uns_"


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _bearer(request: Request) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError(
            401, "unauthenticated", "missing bearer token; send 'Authorization: Bearer <token>'"
        )
    return token.strip()


def bootstrap_allowed(request: Request) -> None:
    """Only the holder of the server's bootstrap secret may create organizers."""
    token = _bearer(request)
    expected = request.app.state.context.settings.bootstrap_token
    if not hmac.compare_digest(token.encode(), expected.encode()):
        raise ApiError(
            403,
            "forbidden",
            "creating organizers needs the server's bootstrap token "
            "(UNSEEN_BOOTSTRAP_TOKEN or <data-dir>/bootstrap-token)",
        )


#: How stale a token's ``last_used_at`` may get before a request refreshes it: one write a
#: minute per token at most, so status polls stay reads.
LAST_USED_RESOLUTION = timedelta(minutes=1)


def user_for_token(request: Request, token: str) -> User:
    """The live token's user, or a 401 naming the fix; refreshes its last use now and then."""
    db = request.app.state.context.db
    with db.read() as session:
        found = session.execute(
            select(User, ApiToken)
            .join(ApiToken, ApiToken.user_id == User.id)
            .where(ApiToken.token_hash == hash_token(token), ApiToken.revoked_at.is_(None))
        ).first()
    if found is None:
        raise ApiError(
            401, "unauthenticated", "unknown or revoked token; log in again (unseen login URL)"
        )
    user, api_token = found
    now = datetime.now(UTC)
    last = api_token.last_used_at
    if last is None or now - last.replace(tzinfo=UTC) > LAST_USED_RESOLUTION:
        with db.transaction() as session:
            session.execute(
                update(ApiToken).where(ApiToken.id == api_token.id).values(last_used_at=now)
            )
    request.state.token_id = api_token.id
    return user


def current_user(request: Request) -> User:
    return user_for_token(request, _bearer(request))


def organizer(user: Annotated[User, Depends(current_user)]) -> User:
    if user.role != "organizer":
        raise ApiError(403, "forbidden", "this needs an organizer's token")
    return user


def contestant(user: Annotated[User, Depends(current_user)]) -> User:
    if user.role != "contestant" or user.team_id is None:
        raise ApiError(403, "forbidden", "this needs a contestant's token (a member of a team)")
    return user


CurrentUser = Annotated[User, Depends(current_user)]
Organizer = Annotated[User, Depends(organizer)]
Contestant = Annotated[User, Depends(contestant)]

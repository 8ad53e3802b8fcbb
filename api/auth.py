"""Bearer tokens: random, shown once, stored only as a SHA-256 hash."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy import select

from api.errors import ApiError
from api.models import User

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


def current_user(request: Request) -> User:
    token = _bearer(request)
    with request.app.state.context.db.read() as session:
        user = session.scalar(select(User).where(User.token_hash == hash_token(token)))
    if user is None:
        raise ApiError(401, "unauthenticated", "unknown or revoked token; ask for a new one")
    return user


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

"""Bearer tokens: random, shown once, stored only as a SHA-256 hash."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy import select, update
from starlette.concurrency import run_in_threadpool

from api.errors import ApiError
from api.models import ApiToken, User, as_utc

TOKEN_PREFIX = "uns_"
NODE_ROLE = "node"  # a data node's worker credential; organizer and contestant are the others


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


#: How long this process reuses a token's lookup. A revocation takes effect in the process that
#: made it at once and in the server's other API processes within this time; in exchange a
#: status poll costs no database read for auth.
TOKEN_CACHE_SECONDS = 1.0
TOKEN_CACHE_ENTRIES = 10_000


@dataclass(frozen=True)
class _Known:
    user: User  # detached, read only
    token_id: str
    until: float  # time.monotonic()


_known: dict[str, _Known] = {}


def forget_tokens() -> None:
    """Drop every cached lookup (after a revocation)."""
    _known.clear()


def _cached_user(request: Request, digest: str) -> User | None:
    known = _known.get(digest)
    if known is None or known.until <= time.monotonic():
        return None
    request.state.token_id = known.token_id
    return known.user


def user_for_token(request: Request, token: str) -> User:
    """The live token's user, or a 401 naming the fix; refreshes its last use now and then."""
    digest = hash_token(token)
    user = _cached_user(request, digest)
    if user is not None:
        return user
    user, expires_at = _look_up(request, digest)
    if len(_known) >= TOKEN_CACHE_ENTRIES:
        _known.clear()
    keep = TOKEN_CACHE_SECONDS
    if expires_at is not None:  # never served from the cache past its expiry
        keep = min(keep, (expires_at - datetime.now(UTC)).total_seconds())
    _known[digest] = _Known(user, request.state.token_id, time.monotonic() + keep)
    return user


TOKEN_EXPIRED = "token expired; run unseen login URL (this server's address) for a new one"


def _look_up(request: Request, digest: str) -> tuple[User, datetime | None]:
    db = request.app.state.context.db
    with db.read() as session:
        found = session.execute(
            select(User, ApiToken)
            .join(ApiToken, ApiToken.user_id == User.id)
            .where(ApiToken.token_hash == digest, ApiToken.revoked_at.is_(None))
        ).first()
    if found is None:
        raise ApiError(
            401, "unauthenticated", "unknown or revoked token; log in again (unseen login URL)"
        )
    user, api_token = found
    now = datetime.now(UTC)
    expires_at = as_utc(api_token.expires_at) if api_token.expires_at is not None else None
    if expires_at is not None and expires_at <= now:
        raise ApiError(401, "token_expired", TOKEN_EXPIRED)
    last = api_token.last_used_at
    if last is None or now - last.replace(tzinfo=UTC) > LAST_USED_RESOLUTION:
        with db.transaction() as session:
            session.execute(
                update(ApiToken).where(ApiToken.id == api_token.id).values(last_used_at=now)
            )
    request.state.token_id = api_token.id
    return user, expires_at


async def any_principal(request: Request) -> User:
    """The token's user, a data node included. On the event loop when the token is cached (no
    thread hand-off: most requests), else the database lookup in a worker thread."""
    token = _bearer(request)
    user = _cached_user(request, hash_token(token))
    if user is not None:
        return user
    return await run_in_threadpool(user_for_token, request, token)


async def current_user(user: Annotated[User, Depends(any_principal)]) -> User:
    """An organizer or a contestant: a data node's credential opens only the node routes."""
    if user.role == NODE_ROLE:
        raise ApiError(403, "forbidden", "a data node's token works only on /v1/node/... routes")
    return user


async def organizer(user: Annotated[User, Depends(current_user)]) -> User:
    if user.role != "organizer":
        raise ApiError(403, "forbidden", "this needs an organizer's token")
    return user


async def contestant(user: Annotated[User, Depends(current_user)]) -> User:
    if user.role != "contestant" or user.team_id is None:
        raise ApiError(403, "forbidden", "this needs a contestant's token (a member of a team)")
    return user


async def data_node(user: Annotated[User, Depends(any_principal)]) -> User:
    if user.role != NODE_ROLE:
        raise ApiError(403, "forbidden", "this needs a data node's token (POST /v1/nodes)")
    return user


AnyPrincipal = Annotated[User, Depends(any_principal)]
DataNode = Annotated[User, Depends(data_node)]
CurrentUser = Annotated[User, Depends(current_user)]
Organizer = Annotated[User, Depends(organizer)]
Contestant = Annotated[User, Depends(contestant)]

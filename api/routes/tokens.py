"""Logging in, and the tokens it issues: listed, and revoked, by their owner or an organizer.

A token is shown once, when issued; the server keeps only its SHA-256, and it expires (the
server's default lifetime, or what the login asked for up to the maximum). Login is
``api.logins.authenticate``: throttled, failures audited, never saying which half was wrong.
"""

from __future__ import annotations

from fastapi import APIRouter, Query, Request
from sqlalchemy import select

from api import crud, token_policy
from api.auth import CurrentUser, Organizer, forget_tokens
from api.context import Context
from api.errors import ApiError
from api.logins import authenticate, password_matches, token_expiry
from api.models import ApiToken, User
from api.passwords import PasswordError, check_strength, hash_password
from api.schemas import (
    Login,
    NewPassword,
    RevokedOut,
    TokenOut,
    TokenPolicyIn,
    TokenPolicyOut,
    UserWithToken,
)

router = APIRouter(prefix="/v1", tags=["accounts"])


@router.post(
    "/login",
    status_code=201,
    responses={429: {"description": "Too many failed logins: wait ``Retry-After`` seconds."}},
)
def login(body: Login, request: Request, ctx: Context) -> UserWithToken:
    """A new token for the user with this name and password, valid for ``expires_in``
    seconds (default and maximum: the server's)."""
    address = request.client.host if request.client else "unknown"
    lifetimes = token_policy.read(ctx)
    expires = token_expiry(lifetimes, "contestant", body.expires_in)  # bound first
    user = authenticate(ctx, body.name, body.password, address, via="api")
    expires = token_expiry(lifetimes, user.role, body.expires_in)
    with ctx.db.transaction() as session:
        token = crud.issue_token(session, user, body.label or "login", expires)
        crud.audit(session, user, "login", label=body.label)
    return UserWithToken(id=user.id, name=user.name, role=user.role, team_id=user.team_id,
                         token=token, expires_at=expires)  # fmt: skip


@router.put("/me/password", status_code=204)
def set_password(body: NewPassword, request: Request, ctx: Context, user: CurrentUser) -> None:
    """Set or change the caller's password: the token proves who they are, and the current
    password, once there is one, that they are still its owner."""
    try:
        check_strength(body.password, user.name)
    except PasswordError as exc:
        raise ApiError(422, "weak_password", str(exc)) from exc
    with ctx.db.read() as session:
        stored = session.get_one(User, user.id).password_hash
    address = request.client.host if request.client else "unknown"
    current = body.current_password or ""
    if stored is not None and not password_matches(ctx, user.name, current, stored, address):
        with ctx.db.transaction() as session:
            crud.audit(session, user, "password.change_refused")
        fix = f"ask an organizer to run `unseen users reset-password {user.name}`"
        raise ApiError(403, "wrong_password", f"the current password is wrong; forgot it? {fix}")
    with ctx.db.transaction() as session:
        session.get_one(User, user.id).password_hash = hash_password(body.password)
        crud.audit(session, user, "password.set")


@router.get("/tokens")
def list_tokens(
    request: Request,
    ctx: Context,
    user: CurrentUser,
    of: str | None = Query(None, description="Organizers: another user's tokens, by name."),
) -> list[TokenOut]:
    owner = _owner(ctx, user, of)
    with ctx.db.read() as session:
        tokens = session.scalars(
            select(ApiToken).where(ApiToken.user_id == owner.id).order_by(ApiToken.created_at)
        ).all()
    current = getattr(request.state, "token_id", None)
    return [
        TokenOut(id=t.id, user=owner.name, label=t.label, created_at=t.created_at,
                 last_used_at=t.last_used_at, revoked_at=t.revoked_at, expires_at=t.expires_at,
                 current=t.id == current)
        for t in tokens
    ]  # fmt: skip


@router.delete("/tokens")
def revoke_other_tokens(request: Request, ctx: Context, user: CurrentUser) -> RevokedOut:
    """Revoke every token of the caller's but the one this request came with (a lost laptop:
    log in anew, then this). Each revocation is audited."""
    current = str(request.state.token_id)
    with ctx.db.transaction() as session:
        revoked = crud.revoke_other_tokens(session, user, current)
    forget_tokens()  # again, now committed
    return RevokedOut(revoked=revoked)


@router.delete("/tokens/{token_id}", status_code=204)
def revoke_token(token_id: str, ctx: Context, user: CurrentUser) -> None:
    """Revoke one token at once: its next request gets 401 (from another of the server's API
    processes, within ``TOKEN_CACHE_SECONDS``). Revoking twice is harmless."""
    with ctx.db.transaction() as session:
        crud.revoke_token(session, user, token_id)
    forget_tokens()  # again, now committed: no request can have cached it live meanwhile


@router.get("/token-policy")
def read_token_policy(ctx: Context, user: CurrentUser) -> TokenPolicyOut:
    """How long a new token lasts by default and at most (public to every signed-in user: a
    contestant asks within it)."""
    found = token_policy.read(ctx)
    return TokenPolicyOut(default_seconds=found.default_seconds, max_seconds=found.max_seconds,
                          set_by=found.set_by, set_at=found.set_at)  # fmt: skip


@router.put("/token-policy")
def set_token_policy(body: TokenPolicyIn, ctx: Context, user: Organizer) -> TokenPolicyOut:
    """Organizers set the lifetimes; a lower maximum also cuts live tokens back to it from now
    (audited as ``token_policy.set`` with how many)."""
    if body.default_seconds > body.max_seconds:
        raise ApiError(
            422,
            "bad_token_policy",
            f"the default lifetime ({body.default_seconds} s) is longer than the maximum "
            f"({body.max_seconds} s); lower the default or raise the maximum",
        )
    with ctx.db.transaction() as session:
        found, shortened = token_policy.set_lifetimes(
            session, user, body.default_seconds, body.max_seconds
        )
    forget_tokens()  # no cached lookup outlives a shortened expiry in this process
    return TokenPolicyOut(default_seconds=found.default_seconds, max_seconds=found.max_seconds,
                          set_by=found.set_by, set_at=found.set_at,
                          tokens_shortened=shortened)  # fmt: skip


def _owner(ctx: Context, user: User, of: str | None) -> User:
    if of is None or of == user.name:
        return user
    if user.role != "organizer":
        raise ApiError(403, "forbidden", "only organizers list other users' tokens")
    with ctx.db.read() as session:
        owner = session.scalar(select(User).where(User.name == of))
    if owner is None:
        raise ApiError(404, "not_found", f"no user named {of!r}")
    return owner

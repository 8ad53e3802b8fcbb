"""An organizer's reset of a contestant's forgotten password: the way back in that the login
refusal names. A temporary password is shown once, and every token of the account is revoked,
so whoever held one (a lost laptop) is out too."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime

from fastapi import APIRouter
from sqlalchemy import select, update

from api import crud, throttle
from api.auth import Organizer, forget_tokens
from api.context import Context
from api.errors import ApiError, not_found
from api.models import ApiToken, User
from api.passwords import hash_password
from api.schemas import PasswordReset

router = APIRouter(prefix="/v1", tags=["accounts"])


def temporary_password() -> str:
    """16 URL-safe characters (96 random bits): passes ``check_strength``, easy to copy."""
    return secrets.token_urlsafe(12)


@router.put("/users/{name}/password")
def reset_password(name: str, ctx: Context, actor: Organizer) -> PasswordReset:
    """Give a contestant a temporary password (shown once) and revoke all their tokens.

    Contestants only: an organizer's account is not another organizer's to take over (they
    change their own with ``PUT /v1/me/password``; the server's operator makes a new
    organizer with the bootstrap token), and a data node logs in with no password."""
    password = temporary_password()
    with ctx.db.transaction() as session:
        user = session.scalar(select(User).where(User.name == name))
        if user is None:
            raise not_found("user", name, "see the members with GET /v1/teams/status")
        if user.role != "contestant":
            raise ApiError(403, "forbidden", f"{name} is not a contestant: organizers reset "
                           "contestants' passwords only; an organizer changes their own "
                           "(PUT /v1/me/password), a node's tokens are revoked")  # fmt: skip
        user.password_hash = hash_password(password)
        revoked = crud.updated_rows(
            session,
            update(ApiToken)
            .where(ApiToken.user_id == user.id, ApiToken.revoked_at.is_(None))
            .values(revoked_at=datetime.now(UTC)),
        )
        throttle.forget_account(session, name)  # the temporary password works at once
        crud.audit(session, actor, "password.reset", user=name, tokens_revoked=revoked)
    forget_tokens()  # committed: no request of this process uses a revoked token from here on
    return PasswordReset(name=name, password=password, tokens_revoked=revoked)

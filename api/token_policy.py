"""Token lifetimes: how long a new token lasts unless its login asks otherwise, and the most a
login may ask for. Organizers set them (``PUT /v1/token-policy``); until they first do, the
server's settings (``UNSEEN_TOKEN_DAYS``, ``UNSEEN_TOKEN_MAX_DAYS``) hold.

A lower maximum also shortens the live tokens that would outlast it, so lowering it after a
leak takes effect at once rather than when the old tokens expire.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import update
from sqlalchemy.orm import Session

from api import crud
from api.context import AppContext
from api.models import ApiToken, TokenPolicy, User
from api.settings import AccountRules

POLICY_ROW = 1


@dataclass(frozen=True)
class Lifetimes:
    default_seconds: int
    max_seconds: int
    set_by: str | None  # None: the server's settings, no organizer has set them
    set_at: datetime | None

    @property
    def default(self) -> timedelta:
        return timedelta(seconds=self.default_seconds)


def read(ctx: AppContext) -> Lifetimes:
    with ctx.db.read() as session:
        return current(session, ctx.settings.accounts)


def current(session: Session, rules: AccountRules) -> Lifetimes:
    row = session.get(TokenPolicy, POLICY_ROW)
    if row is None:
        return Lifetimes(
            int(rules.token_lifetime.total_seconds()),
            int(rules.token_max_lifetime.total_seconds()),
            None,
            None,
        )
    return Lifetimes(row.default_seconds, row.max_seconds, row.set_by, row.set_at)


def set_lifetimes(
    session: Session, organizer: User, default_seconds: int, max_seconds: int
) -> tuple[Lifetimes, int]:
    """Store the organizer's lifetimes and cut live tokens back to the new maximum from now;
    returns the policy and how many tokens were shortened (audited together)."""
    now = datetime.now(UTC)
    row = session.get(TokenPolicy, POLICY_ROW)
    if row is None:
        row = TokenPolicy(id=POLICY_ROW)
        session.add(row)
    row.default_seconds, row.max_seconds = default_seconds, max_seconds
    row.set_by, row.set_at = organizer.name, now
    latest = now + timedelta(seconds=max_seconds)
    shortened = crud.updated_rows(
        session,
        update(ApiToken)
        .where(ApiToken.revoked_at.is_(None))
        .where(ApiToken.expires_at.is_not(None))  # a data node's credential has none
        .where(ApiToken.expires_at > latest)
        .values(expires_at=latest),
    )
    crud.audit(session, organizer, "token_policy.set", default_seconds=default_seconds,
               max_seconds=max_seconds, tokens_shortened=shortened)  # fmt: skip
    return Lifetimes(default_seconds, max_seconds, organizer.name, now), shortened

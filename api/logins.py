"""Checking a name and password, the one way every login (API and web pages) goes: throttled
per account and per address (``api.throttle``), failures audited, tokens issued with an expiry.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from api import crud, throttle
from api.auth import NODE_ROLE
from api.context import AppContext
from api.errors import ApiError
from api.models import User, iso_z
from api.passwords import verify_password
from api.settings import AccountRules
from api.token_policy import Lifetimes


def authenticate(ctx: AppContext, name: str, password: str, address: str, via: str) -> User:
    """The user with this name and password; else a 401 that never says which half was wrong,
    or a 429 with ``Retry-After`` once this account or address failed too often."""
    rules = ctx.settings.accounts
    keys = throttle.Keys.of(name, address)
    now = datetime.now(UTC)
    with ctx.db.read() as session:
        until = throttle.blocked_until(session, keys, now)
        user = session.scalar(select(User).where(User.name == name))
    if until is not None:
        raise _throttled(name, until, now)
    if not verify_password(password, user.password_hash if user else None):
        with ctx.db.transaction() as session:
            crud.audit(session, None, "login.failed", user=name, via=via)
            _count_failure(session, keys, rules, now, address)
        raise ApiError(
            401,
            "bad_credentials",
            "wrong name or password; forgot it? ask an organizer to run "
            f"`unseen users reset-password {name}`",
        )
    assert user is not None
    with ctx.db.transaction() as session:
        throttle.forget_account(session, name)
    return user


def password_matches(ctx: AppContext, name: str, password: str, stored: str, address: str) -> bool:
    """Whether ``password`` is the account's, checked under the same throttle as logins (a
    stolen token must not make the current password guessable): 429 while blocked, and a
    wrong one counts as a failed login."""
    rules = ctx.settings.accounts
    keys = throttle.Keys.of(name, address)
    now = datetime.now(UTC)
    with ctx.db.read() as session:
        until = throttle.blocked_until(session, keys, now)
    if until is not None:
        raise _throttled(name, until, now)
    if verify_password(password, stored):
        return True
    with ctx.db.transaction() as session:
        _count_failure(session, keys, rules, now, address)
    return False


def _count_failure(
    session: Session, keys: throttle.Keys, rules: AccountRules, now: datetime, address: str
) -> None:
    """One more failure on both counters; the block it starts, if any, audited once."""
    started = throttle.record_failure(session, keys, rules, now)
    if started is not None:
        crud.audit(session, None, "login.throttled", user=keys.account.removeprefix("user:"),
                   address=address, until=iso_z(started))  # fmt: skip


def _throttled(name: str, until: datetime, now: datetime) -> ApiError:
    wait = throttle.retry_after(until, now)
    error = ApiError(
        429,
        "too_many_logins",
        f"too many failed logins for this name or from this address; try again in {wait} s "
        f"(at {until:%H:%M:%S} UTC), or ask an organizer to reset your password "
        f"(`unseen users reset-password {name}`)",
        retry_after=wait,
    )
    error.headers = {"Retry-After": str(wait)}
    return error


def token_expiry(
    lifetimes: Lifetimes, role: str, asked_seconds: int | None = None
) -> datetime | None:
    """When a new token of a user with ``role`` stops working: the lifetime asked for (at most
    the maximum organizers set), else their default; a data node's credential never expires."""
    if role == NODE_ROLE:
        return None
    lifetime = lifetimes.default
    if asked_seconds is not None:
        most = lifetimes.max_seconds
        if asked_seconds > most:  # compared as numbers: any integer, however large
            raise ApiError(
                422,
                "lifetime_too_long",
                f"a token may last at most {most} s ({most / 86400:g} days) on this server; "
                "ask for less (`unseen tokens policy` shows the limits)",
            )
        lifetime = timedelta(seconds=asked_seconds)
    return datetime.now(UTC) + lifetime

"""Login throttling: after too many failed logins for one account name, or from one client
address, within a window, logins there are refused with a 429 until the window ends.

The counts live in the database (``login_failures``), so every API process of a server sees the
same ones and a restart forgets nothing. An account name is counted whether or not such a user
exists, and a blocked name is refused before its password is checked: the answer never tells
whether an account exists, nor whether a password tried while blocked was right.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from api.models import LoginFailures, as_utc
from api.settings import AccountRules


@dataclass(frozen=True)
class Keys:
    """The two counters one login attempt touches."""

    account: str
    address: str

    @classmethod
    def of(cls, name: str, address: str) -> Keys:
        return cls(account_key(name), f"addr:{address}")

    def limits(self, rules: AccountRules) -> dict[str, int]:
        return {self.account: rules.account_failures, self.address: rules.address_failures}


def blocked_until(session: Session, keys: Keys, now: datetime) -> datetime | None:
    """When the later of the two blocks on this attempt ends, or None if neither holds."""
    rows = session.scalars(
        select(LoginFailures).where(LoginFailures.key.in_([keys.account, keys.address]))
    ).all()
    ends = [as_utc(r.blocked_until) for r in rows if r.blocked_until is not None]
    live = [end for end in ends if end > now]
    return max(live) if live else None


def record_failure(
    session: Session, keys: Keys, rules: AccountRules, now: datetime
) -> datetime | None:
    """Count one failed login on both counters; the end of the block it starts, if any.

    Each counter's window opens at its first failure; the failure that reaches the limit
    blocks logins there until the window's end."""
    started = None
    for key, limit in keys.limits(rules).items():
        _ensure_row(session, key, now)
        row = session.scalars(
            select(LoginFailures).where(LoginFailures.key == key).with_for_update()
        ).one()
        if now - as_utc(row.window_start) >= rules.window:
            row.failures, row.window_start, row.blocked_until = 0, now, None
        row.failures += 1
        if row.failures >= limit and row.blocked_until is None:
            row.blocked_until = as_utc(row.window_start) + rules.window
            started = max(started or row.blocked_until, row.blocked_until)
    _prune(session, rules, now)
    return started


def account_key(name: str) -> str:
    return f"user:{name.lower()}"


def forget_account(session: Session, name: str) -> None:
    """A successful login, or an organizer's password reset, clears the account's count and
    ends its block (the address keeps its own)."""
    session.execute(delete(LoginFailures).where(LoginFailures.key == account_key(name)))


def retry_after(until: datetime, now: datetime) -> int:
    """Whole seconds to wait, for the ``Retry-After`` header: at least one."""
    return max(1, math.ceil((until - now).total_seconds()))


def _ensure_row(session: Session, key: str, now: datetime) -> None:
    """The counter's row exists afterwards, whoever made it: concurrent first failures from
    two API processes must not both INSERT."""
    values = {"key": key, "failures": 0, "window_start": now}
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        session.execute(pg_insert(LoginFailures).values(values).on_conflict_do_nothing())
    elif dialect == "sqlite":
        session.execute(sqlite_insert(LoginFailures).values(values).on_conflict_do_nothing())
    elif session.get(LoginFailures, key) is None:
        session.add(LoginFailures(**values))
        session.flush()


def _prune(session: Session, rules: AccountRules, now: datetime) -> None:
    """Counters whose window is over and whose block has ended tell nothing any more."""
    session.execute(
        delete(LoginFailures)
        .where(
            LoginFailures.window_start < now - rules.window,
            (LoginFailures.blocked_until.is_(None)) | (LoginFailures.blocked_until < now),
        )
        .execution_options(synchronize_session=False)
    )

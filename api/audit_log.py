"""The append-only, hash-chained audit log.

Every entry carries the SHA-256 of the previous one: ``hash = H(seq, at, actor, action, detail,
prev_hash)`` over a canonical JSON encoding. Changing, removing or reordering an entry breaks
every hash after it; the ``audit_head`` row holds the last sequence number and hash, so cutting
entries off the end shows too. Appends serialize on that row (``SELECT ... FOR UPDATE`` on
PostgreSQL; SQLite's write transactions are serial already), so the chain never forks.

What it cannot show: someone with write access who recomputes the whole chain. Record the head
hash somewhere else now and then (``GET /v1/audit/verify`` returns it) to anchor it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from api.models import AuditEvent, AuditHead

GENESIS = "0" * 64


def canonical_time(at: datetime) -> str:
    """UTC with microseconds, whether the database gave back an aware or a naive datetime."""
    aware = at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)
    return aware.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def entry_hash(
    seq: int, at: datetime, actor: str | None, action: str, detail: Any, prev_hash: str
) -> str:
    body = json.dumps(
        [seq, canonical_time(at), actor, action, detail, prev_hash],
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        allow_nan=False,
    )
    return hashlib.sha256(body.encode("utf-8")).hexdigest()


def append(session: Session, actor: str | None, action: str, detail: dict[str, Any]) -> None:
    """Add one entry after the current head, in the caller's transaction."""
    head = session.scalars(select(AuditHead).where(AuditHead.id == 1).with_for_update()).one()
    at = datetime.now(UTC)
    seq = head.seq + 1
    digest = entry_hash(seq, at, actor, action, detail, head.hash)
    session.add(AuditEvent(seq=seq, at=at, actor=actor, action=action, detail=detail,
                           prev_hash=head.hash, hash=digest))  # fmt: skip
    head.seq, head.hash = seq, digest


@dataclass(frozen=True)
class ChainReport:
    ok: bool
    entries: int
    head_hash: str
    first_bad_seq: int | None = None
    problem: str = ""


def verify(session: Session) -> ChainReport:
    """Recompute every hash in order; name the first entry that does not fit."""
    expected_prev, expected_seq, entries = GENESIS, 1, 0
    events = session.scalars(select(AuditEvent).order_by(AuditEvent.seq)).yield_per(1000)
    for event in events:
        entries += 1
        problem = ""
        if event.seq != expected_seq:
            problem = f"entry {expected_seq} is missing"
        elif event.prev_hash != expected_prev:
            problem = "its previous-hash does not match the entry before it"
        elif event.hash != entry_hash(
            event.seq, event.at, event.actor, event.action, event.detail, event.prev_hash
        ):
            problem = "its content does not match its hash (changed after writing)"
        if problem:
            return ChainReport(False, entries, expected_prev, min(event.seq, expected_seq), problem)
        expected_prev, expected_seq = event.hash, event.seq + 1
    head = session.get_one(AuditHead, 1)
    if (head.seq, head.hash) != (expected_seq - 1, expected_prev):
        problem = "entries at the end were removed (the head records more)"
        return ChainReport(False, entries, expected_prev, expected_seq, problem)
    return ChainReport(True, entries, expected_prev)

"""The audit log, for organizers: who did what, including every budget charge, and a check of
its hash chain (``api.audit_log``)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field
from sqlalchemy import select

from api import audit_log
from api.auth import Organizer
from api.context import Context
from api.models import AuditEvent
from api.schemas import UtcTime

router = APIRouter(prefix="/v1", tags=["audit"])


class AuditEventOut(BaseModel):
    seq: int
    at: UtcTime
    actor: str | None
    action: str
    detail: dict[str, Any]
    prev_hash: str
    hash: str


class ChainOut(BaseModel):
    ok: bool
    entries: int
    head_hash: str = Field(description="Write it down elsewhere to anchor the chain.")
    first_bad_seq: int | None
    problem: str


@router.get("/audit")
def read_audit_log(
    ctx: Context,
    _organizer: Organizer,
    action: str | None = Query(None, description="Only this action, e.g. budget.charged."),
    job: str | None = Query(None, description="Only events about this job."),
    actor: str | None = Query(None, description="Only events by this user."),
    before: int | None = Query(None, description="Only entries before this seq (paging)."),
    limit: int = Query(200, ge=1, le=5000),
) -> list[AuditEventOut]:
    """Newest first."""
    query = select(AuditEvent).order_by(AuditEvent.seq.desc()).limit(limit)
    if action is not None:
        query = query.where(AuditEvent.action == action)
    if actor is not None:
        query = query.where(AuditEvent.actor == actor)
    if before is not None:
        query = query.where(AuditEvent.seq < before)
    if job is not None:
        query = query.where(AuditEvent.detail["job"].as_string() == job)
    with ctx.db.read() as session:
        return [
            AuditEventOut(seq=e.seq, at=e.at, actor=e.actor, action=e.action, detail=e.detail,
                          prev_hash=e.prev_hash, hash=e.hash)
            for e in session.scalars(query)
        ]  # fmt: skip


@router.get("/audit/verify")
def verify_audit_log(ctx: Context, _organizer: Organizer) -> ChainOut:
    """Recompute the whole chain: ok, or the first entry that was changed or removed."""
    with ctx.db.read() as session:
        report = audit_log.verify(session)
    return ChainOut(**vars(report))

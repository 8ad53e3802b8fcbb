"""The audit log, for organizers: who did what, including every budget charge."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Query
from pydantic import BaseModel
from sqlalchemy import select

from api.auth import Organizer
from api.context import Context
from api.models import AuditEvent

router = APIRouter(prefix="/v1", tags=["audit"])


class AuditEventOut(BaseModel):
    id: int
    at: datetime
    actor: str | None
    action: str
    detail: dict[str, Any]


@router.get("/audit")
def audit_log(
    ctx: Context,
    _organizer: Organizer,
    action: str | None = Query(None, description="Only this action, e.g. budget.charged."),
    job: str | None = Query(None, description="Only events about this job."),
    limit: int = Query(200, ge=1, le=5000),
) -> list[AuditEventOut]:
    """Newest first."""
    query = select(AuditEvent).order_by(AuditEvent.id.desc()).limit(limit)
    if action is not None:
        query = query.where(AuditEvent.action == action)
    if job is not None:
        query = query.where(AuditEvent.detail["job"].as_string() == job)
    with ctx.db.read() as session:
        return [
            AuditEventOut(id=e.id, at=e.at, actor=e.actor, action=e.action, detail=e.detail)
            for e in session.scalars(query)
        ]

"""Signed licence agreements: a team uploads the file, an organizer approves or rejects it.

Uploads are size-capped and must really be a PDF, PNG or JPEG (the first bytes are checked,
not just the declared type); the file is stored under the server's data directory with its
SHA-256, and only the team and the organizers can read it back.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from pathlib import Path

from fastapi import APIRouter, UploadFile
from fastapi.responses import FileResponse
from sqlalchemy import select
from sqlalchemy.orm import Session

from api import crud
from api.auth import CurrentUser, Organizer
from api.context import Context
from api.errors import ApiError, not_found
from api.models import Licence, Team, User
from api.schemas import LicenceOut, ReviewDecision
from api.views import licence_view

router = APIRouter(prefix="/v1", tags=["licences"])

MAX_LICENCE_BYTES = 10 * 1024 * 1024
SIGNATURES = {  # media type -> how such a file starts
    "application/pdf": b"%PDF-",
    "image/png": b"\x89PNG\r\n\x1a\n",
    "image/jpeg": b"\xff\xd8\xff",
}


def _team_for(session: Session, user: User, team: str) -> Team:
    found = crud.get_team(session, team)
    if user.role != "organizer" and found.id != user.team_id:
        raise not_found("team", team, "you can only see your own team")
    return found


@router.post("/teams/{team}/licences", status_code=201)
def upload_licence(team: str, file: UploadFile, ctx: Context, user: CurrentUser) -> LicenceOut:
    """Upload the team's signed licence (PDF, PNG or JPEG, at most 10 MB)."""
    with ctx.db.read() as session:
        found = _team_for(session, user, team)
    content = file.file.read(MAX_LICENCE_BYTES + 1)
    if len(content) > MAX_LICENCE_BYTES:
        raise ApiError(413, "too_large", "a licence file may be at most 10 MB; scan at 150 dpi")
    media_type = next((t for t, magic in SIGNATURES.items() if content.startswith(magic)), None)
    if media_type is None:
        raise ApiError(415, "bad_file", "upload the signed licence as a PDF, PNG or JPEG file")
    licence = Licence(team_id=found.id, filename=Path(file.filename or "licence").name[:255],
                      media_type=media_type, path="", sha256=hashlib.sha256(content).hexdigest(),
                      size=len(content), uploaded_by=user.id)  # fmt: skip
    directory = ctx.settings.licences_dir
    directory.mkdir(parents=True, exist_ok=True)
    with ctx.db.transaction() as session:
        session.add(licence)
        session.flush()
        licence.path = str(directory / licence.id)
        Path(licence.path).write_bytes(content)
        crud.audit(session, user, "licence.uploaded", team=found.name, licence=licence.id,
                   sha256=licence.sha256)  # fmt: skip
        return licence_view(session, licence)


@router.get("/teams/{team}/licences")
def list_licences(team: str, ctx: Context, user: CurrentUser) -> list[LicenceOut]:
    """The team's uploads, newest first."""
    with ctx.db.read() as session:
        found = _team_for(session, user, team)
        licences = session.scalars(
            select(Licence).where(Licence.team_id == found.id).order_by(Licence.uploaded_at.desc())
        )
        return [licence_view(session, licence) for licence in licences]


@router.get("/licences/{licence_id}/file", response_class=FileResponse)
def licence_file(licence_id: str, ctx: Context, user: CurrentUser) -> FileResponse:
    with ctx.db.read() as session:
        licence = _licence(session, licence_id, user)
    return FileResponse(licence.path, media_type=licence.media_type, filename=licence.filename)


@router.post("/licences/{licence_id}/approve")
def approve_licence(licence_id: str, ctx: Context, actor: Organizer) -> LicenceOut:
    return _decide(ctx, actor, licence_id, "approved", "")


@router.post("/licences/{licence_id}/reject")
def reject_licence(
    licence_id: str, body: ReviewDecision, ctx: Context, actor: Organizer
) -> LicenceOut:
    if not body.reason.strip():
        raise ApiError(422, "reason_needed", "say why, so the team can fix it: {'reason': ...}")
    return _decide(ctx, actor, licence_id, "rejected", body.reason)


def _licence(session: Session, licence_id: str, user: User) -> Licence:
    licence = session.get(Licence, licence_id)
    if licence is None or (user.role != "organizer" and licence.team_id != user.team_id):
        raise not_found("licence", licence_id, "list your team's licences first")
    return licence


def _decide(ctx: Context, actor: User, licence_id: str, status: str, reason: str) -> LicenceOut:
    with ctx.db.transaction() as session:
        licence = _licence(session, licence_id, actor)
        licence.status, licence.reason = status, reason
        licence.decided_by, licence.decided_at = actor.id, datetime.now(UTC)
        crud.audit(session, actor, f"licence.{status}", licence=licence.id, reason=reason)
        session.flush()
        return licence_view(session, licence)

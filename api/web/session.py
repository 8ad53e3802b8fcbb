"""Browser sessions for the organizers' pages.

Logging in issues an ordinary API token (labelled "web session", stored hashed, listed and
revocable like any other) and puts it in an HttpOnly, SameSite=Strict cookie; logging out
revokes it. Every form also carries a token derived from the session (HMAC), so a form posted
from elsewhere is refused even by a browser that ignored SameSite.
"""

from __future__ import annotations

import hashlib
import hmac

from fastapi import Request

COOKIE = "unseen_session"


def csrf_token(session_token: str) -> str:
    return hmac.new(session_token.encode(), b"unseen-form", hashlib.sha256).hexdigest()[:32]


def csrf_ok(request: Request, sent: str) -> bool:
    token = request.cookies.get(COOKIE, "")
    return bool(token) and hmac.compare_digest(csrf_token(token), sent or "")

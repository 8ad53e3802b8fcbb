"""The organizers' pages: log in, review queue, job detail (release or reject), teams and
licences, budgets, and the audit log with filters.

Every action calls the same function its API route does, so the page and the API can never
disagree about a rule. After a form post the browser is redirected (post/redirect/get) with a
short message; errors come back as the API's one-line message.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from api import crud, token_policy
from api.auth import forget_tokens, user_for_token
from api.errors import ApiError
from api.logins import authenticate
from api.models import User
from api.routes import audit, budget, contests, jobs, licences, review
from api.schemas import Admission, Identity, JobOrganizerOut, ReviewDecision
from api.web.cells import as_cells, released_jobs, summarize
from api.web.charts import charts_for
from api.web.paging import page_number, paginate
from api.web.session import COOKIE, csrf_ok, csrf_token
from runner.lifecycle import IN_REVIEW, JobState

router = APIRouter(prefix="/ui", include_in_schema=False)
#: How long an organizer stays logged in to these pages: the cookie and its token.
WEB_SESSION = timedelta(hours=12)
templates = Jinja2Templates(directory=Path(__file__).with_name("templates"))
Csrf = Annotated[str, Form()]


class Redirect(Exception):
    """Raised where a page needs a logged-in organizer; answered by ``redirect_to_login``."""

    def __init__(self, to: str) -> None:
        self.to = to


def redirect_to_login(_request: Request, exc: Exception) -> RedirectResponse:
    assert isinstance(exc, Redirect)
    return RedirectResponse(exc.to, status_code=303)


def _organizer(request: Request) -> User:
    token = request.cookies.get(COOKIE)
    if not token:
        raise Redirect("/ui/login")
    try:
        user = user_for_token(request, token)
    except ApiError:
        raise Redirect("/ui/login?error=" + quote("your session ended; log in again")) from None
    if user.role != "organizer":
        raise Redirect("/ui/login?error=" + quote("these pages are for organizers"))
    return user


def _page(request: Request, template: str, user: User | None, **context: Any) -> HTMLResponse:
    token = request.cookies.get(COOKIE, "")
    return templates.TemplateResponse(
        request,
        template,
        {"user": user, "csrf": csrf_token(token) if token else "", "done":
         request.query_params.get("done", ""), "error": request.query_params.get("error", ""),
         **context},
    )  # fmt: skip


def _back(to: str, done: str = "", error: str = "") -> RedirectResponse:
    query = f"?done={quote(done)}" if done else f"?error={quote(error)}" if error else ""
    return RedirectResponse(to + query, status_code=303)


def _guarded(request: Request, csrf: str, to: str, action: Any) -> Response:
    """Run one form action as the logged-in organizer: CSRF checked, API errors shown."""
    user = _organizer(request)
    if not csrf_ok(request, csrf):
        return _back(to, error="the form expired; reload the page and try again")
    try:
        done = action(request.app.state.context, user)
    except ApiError as exc:
        return _back(to, error=exc.message)
    return _back(to, done=done)


@router.get("/login")
def login_page(request: Request) -> HTMLResponse:
    return _page(request, "login.html", None)


@router.post("/login")
def login(
    request: Request, name: Annotated[str, Form()], password: Annotated[str, Form()]
) -> Response:
    ctx = request.app.state.context
    address = request.client.host if request.client else "unknown"
    try:  # throttled with the API's logins: the same counters
        user = authenticate(ctx, name, password, address, via="web")
    except ApiError as exc:
        return _back("/ui/login", error=exc.message)
    if user.role != "organizer":
        return _back("/ui/login", error="these pages are for organizers; contestants use the CLI")
    # A web session lasts as long as its cookie, never longer than any token may.
    expires = datetime.now(UTC) + min(WEB_SESSION, token_policy.read(ctx).default)
    with ctx.db.transaction() as session:
        token = crud.issue_token(session, user, "web session", expires)
        crud.audit(session, user, "login", via="web")
    response = RedirectResponse("/ui/review", status_code=303)
    response.set_cookie(COOKIE, token, httponly=True, samesite="strict",
                        max_age=int(WEB_SESSION.total_seconds()),
                        secure=request.url.scheme == "https")  # fmt: skip
    return response


@router.post("/logout")
def logout(request: Request, csrf: Csrf) -> Response:
    def revoke(ctx: Any, user: User) -> str:
        token_id = request.state.token_id
        with ctx.db.transaction() as session:
            crud.revoke_token(session, user, token_id)
        forget_tokens()  # again, now committed
        return "logged out"

    try:
        response = _guarded(request, csrf, "/ui/login", revoke)
    except Redirect as ended:  # the session had already ended: forget the cookie all the same
        response = RedirectResponse(ended.to, status_code=303)
    response.delete_cookie(COOKIE)
    return response


@router.get("/")
def home() -> RedirectResponse:
    return RedirectResponse("/ui/review", status_code=303)


@router.get("/review")
def review_page(request: Request) -> Response:
    user = _organizer(request)
    ctx = request.app.state.context
    pending = review.review_queue(ctx, user)
    recent = [j for j in jobs.list_jobs(ctx, user) if j.state not in IN_REVIEW]
    return _page(request, "review.html", user, pending=pending, recent=recent[:30])


@router.get("/jobs/{job_id}")
def job_page(request: Request, job_id: str, page: str = "1") -> Response:
    user = _organizer(request)
    try:
        job = jobs.read_job(job_id, request.app.state.context, user)
    except ApiError as exc:
        if exc.status != 404:
            return _page(request, "error.html", user, message=exc.message)
        return not_found(request, user, f"No job {job_id!r}.", "/ui/review", "the review queue")
    cells = (job.pending_values if isinstance(job, JobOrganizerOut) else None) or []
    heading, what = VALUES_HEADING.get(job.state, ("Values (noised)", "noised"))
    return _page(request, "job.html", user, job=job, heading=heading,
                 charts=charts_for(cells, what), summary=summarize(cells) if cells else None,
                 paged=paginate(cells, page_number(page)), url=request.url,
                 plan=json.dumps(job.plan, indent=2) if job.plan else "")  # fmt: skip


#: Included after every other router (api/app.py): a /ui address no page answers gets an HTML
#: 404 with a way back, not the API's JSON error.
fallback = APIRouter(prefix="/ui", include_in_schema=False)


@fallback.get("/{rest:path}")
def unknown_page(request: Request, rest: str) -> Response:
    user = _organizer(request)
    return not_found(request, user, f"No page /ui/{rest}.", "/ui/review", "the review queue")


def not_found(request: Request, user: User | None, message: str, back: str, name: str) -> Response:
    """An HTML 404 with a way back, for a page whose object does not exist (or is not
    this organizer's to see)."""
    response = _page(request, "not_found.html", user, message=message, back=back, back_name=name)
    response.status_code = 404
    return response


#: The values' heading and their word in chart titles, by job state: values still under
#: review are never titled as released.
VALUES_HEADING = {
    "awaiting_review": ("Values awaiting review (noised; not released)", "awaiting review"),
    "partially_reviewed": ("Values awaiting review (noised; not released)", "awaiting review"),
    "released": ("Released values (noised)", "released"),
    "rejected": ("Rejected values (noised; never released)", "rejected"),
}
CONFIRM_FIRST = "tick the box to confirm first; nothing was done"


@router.post("/jobs/{job_id}/release")
def release_job(
    request: Request, job_id: str, csrf: Csrf, confirm: Annotated[str, Form()] = ""
) -> Response:
    def act(ctx: Any, user: User) -> str:
        if confirm != "yes":
            raise ApiError(400, "unconfirmed", CONFIRM_FIRST)
        job = review.release(job_id, ctx, user)
        if job.state == JobState.RELEASED.value:
            return "released: the team sees the values now"
        assert job.review is not None
        left = job.review.needed - len(job.review.approvals)
        return f"approved; {left} more approval(s) from another organizer release it"

    return _guarded(request, csrf, f"/ui/jobs/{job_id}", act)


@router.post("/jobs/{job_id}/reject")
def reject_job(
    request: Request,
    job_id: str,
    csrf: Csrf,
    reason: Annotated[str, Form()] = "",
    confirm: Annotated[str, Form()] = "",
) -> Response:
    def act(ctx: Any, user: User) -> str:
        if confirm != "yes":
            raise ApiError(400, "unconfirmed", CONFIRM_FIRST)
        review.reject(job_id, ReviewDecision(reason=reason), ctx, user)
        return "rejected: the team sees your reason; the budget stays spent"

    return _guarded(request, csrf, f"/ui/jobs/{job_id}", act)


@router.get("/teams")
def teams_page(request: Request) -> Response:
    user = _organizer(request)
    ctx = request.app.state.context
    return _page(request, "teams.html", user, teams=contests.teams_status(ctx, user),
                 contests=contests.list_contests(ctx, user))  # fmt: skip


@router.post("/licences/{licence_id}/{decision}")
def decide_licence(
    request: Request,
    licence_id: str,
    decision: str,
    csrf: Csrf,
    reason: Annotated[str, Form()] = "",
) -> Response:
    def act(ctx: Any, user: User) -> str:
        if decision == "approve":
            licences.approve_licence(licence_id, ctx, user)
            return "licence approved"
        licences.reject_licence(licence_id, ReviewDecision(reason=reason), ctx, user)
        return "licence rejected; the team sees why"

    return _guarded(request, csrf, "/ui/teams", act)


@router.post("/users/{name}/identity")
def verify_identity(
    request: Request, name: str, csrf: Csrf, verified: Annotated[str, Form()] = "yes"
) -> Response:
    def act(ctx: Any, user: User) -> str:
        contests.set_identity(name, Identity(verified=verified == "yes"), ctx, user)
        return f"identity of {name} {'verified' if verified == 'yes' else 'withdrawn'}"

    return _guarded(request, csrf, "/ui/teams", act)


@router.post("/teams/{team}/admission")
def admit_team(
    request: Request, team: str, csrf: Csrf, admitted: Annotated[str, Form()] = "yes"
) -> Response:
    def act(ctx: Any, user: User) -> str:
        contests.set_admission(team, Admission(admitted=admitted == "yes"), ctx, user)
        return f"{team} {'admitted to' if admitted == 'yes' else 'withdrawn from'} round two"

    return _guarded(request, csrf, "/ui/teams", act)


@router.get("/budgets")
def budgets_page(request: Request) -> Response:
    user = _organizer(request)
    ctx = request.app.state.context
    rows = budget.budgets(ctx, user)
    return _page(request, "budgets.html", user, budgets=rows, populations=budget.populations(ctx))


@router.get("/results")
def results_page(request: Request, job: str = "", page: str = "1") -> Response:
    """Every released value, paged; one line per released job first. With ``job``, that
    job's summary and chart above its values."""
    user = _organizer(request)
    response = contests.results(request.app.state.context, user, contest=None, format="json")
    rows = json.loads(bytes(response.body))
    released = released_jobs(rows)
    if job:
        rows = [r for r in rows if r["job"] == job]
    cells = as_cells(rows)
    shown = bool(job and cells)
    return _page(request, "results.html", user, jobs=released, job=job,
                 summary=summarize(cells) if shown else None,
                 charts=charts_for(cells) if shown else [], paged=paginate(rows, page_number(page)),
                 url=request.url)  # fmt: skip


@router.get("/audit")
def audit_page(
    request: Request,
    action: str = "",
    actor: str = "",
    job: str = "",
    before: int | None = None,
) -> Response:
    user = _organizer(request)
    ctx = request.app.state.context
    events = audit.read_audit_log(ctx, user, action=action or None, job=job or None,
                                  actor=actor or None, before=before, limit=100)  # fmt: skip
    chain = audit.verify_audit_log(ctx, user)
    return _page(request, "audit.html", user, events=events, chain=chain,
                 filters={"action": action, "actor": actor, "job": job})  # fmt: skip

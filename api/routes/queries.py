"""Query-mode jobs: a declarative plan over the full data, run by trusted code (no sandbox).

Refused up front (4xx) for an unknown dataset, a plan the dataset's public policy does not
allow (the message names the fix), or a budget that cannot cover ε; the budget is reserved
atomically in the same transaction that queues the job.
"""

from __future__ import annotations

from fastapi import APIRouter

from api import crud
from api.auth import Contestant
from api.context import Context
from api.errors import ApiError
from api.schemas import JobOut, NewQuery
from api.views import job_view
from privacy.query import DatasetPolicy, PlanError, QueryPlan, check_delta, parse_plan
from runner.schedule import query_schedule

router = APIRouter(prefix="/v1", tags=["queries"])


def checked_plan(raw: dict[str, object], policy: DatasetPolicy, delta: float) -> QueryPlan:
    """The parsed plan, or a 422 naming the fix; δ must suit its keys (see ``check_delta``)."""
    try:
        plan = parse_plan(raw, policy)
        check_delta(plan, delta)
    except PlanError as exc:
        raise ApiError(422, "bad_plan", str(exc)) from exc
    return plan


@router.post("/queries", status_code=202)
def submit_query(body: NewQuery, ctx: Context, user: Contestant) -> JobOut:
    """Queue a query-mode job on the full data; its release is ε-DP at the user level, or
    (ε, δ)-DP when keys without a public set go through partition selection."""
    with ctx.db.transaction() as session:
        dataset = crud.get_dataset(session, body.dataset, user)
        checked_plan(body.plan, crud.dataset_policy(dataset), body.delta)
        job, team = crud.queue_job(
            session, user, dataset, body.epsilon, body.delta, mode="query", code="",
            plan=body.plan, outputs=[], combine="",
            schedule_seconds=query_schedule(ctx.settings.schedule).seconds,
        )  # fmt: skip
        view = job_view(job, dataset.name, team.name, organizer=False)
    ctx.worker.submit(job.id)
    return view

"""Job submission and reading. Submission is refused up front (4xx) for anything checkable —
unknown dataset, bad code, bad outputs, budget — and reserves the budget atomically."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Query, Response
from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from api import crud
from api.auth import Contestant, CurrentUser
from api.context import AppContext, Context
from api.errors import ApiError, not_found
from api.models import Dataset, Job, Team, User, new_id
from api.review import review_status
from api.routes.queries import checked_plan
from api.schemas import (
    AnyJobOut,
    EstimateIn,
    JobOut,
    NewJob,
    NoiseOut,
    OutputIn,
    ScheduleRulesOut,
)
from api.views import job_view, model_response
from privacy.budget import to_epsilon
from privacy.outputs import (
    Combine,
    OutputSpec,
    OutputSpecError,
    make_output_spec,
    validate_output_specs,
)
from privacy.query import plan_query_noise
from privacy.sample_aggregate import NoisePlan, plan_noise
from runner.lifecycle import JobState
from runner.sample import run_on_sample, write_code
from runner.schedule import (
    Schedule,
    ScheduleError,
    aggregate_schedule,
    block_seconds_from_sample,
)
from sandbox.policy import check_code

router = APIRouter(prefix="/v1", tags=["jobs"])


def _specs(outputs: list[OutputIn]) -> list[OutputSpec]:
    try:
        specs = [make_output_spec(o.name, o.lo, o.hi, o.default) for o in outputs]
        validate_output_specs(specs)
    except OutputSpecError as exc:
        raise ApiError(422, "bad_outputs", str(exc)) from exc
    return specs


def _check_code(code: str, ctx: AppContext) -> None:
    """413 ``too_large`` for code over the node's size limit (the API's shape for every size
    limit); else 422 ``bad_code`` with every violation of the pre-flight policy, each with its
    line."""
    # surrogatepass: JSON may carry a lone surrogate, which no UTF-8 file holds; measuring it
    # must not raise (the policy check below refuses it with its line, a 422).
    size, most = len(code.encode("utf-8", "surrogatepass")), ctx.settings.max_code_bytes
    if size > most:
        raise ApiError(413, "too_large", f"the code is {size} bytes, over the {most} bytes a job "
                       "may have; trim it")  # fmt: skip
    violations = check_code(code, ctx.settings.max_code_bytes)
    if violations:
        raise ApiError(
            422,
            "bad_code",
            "; ".join(str(v) for v in violations),
            problems=[{"line": v.line, "message": v.message} for v in violations],
        )


@router.post("/estimate")
def estimate(body: EstimateIn, ctx: Context, user: CurrentUser) -> list[NoiseOut]:
    """Noise scale and 95 % error bound of an aggregate job's outputs or of a plan's noisy
    quantities, from public parameters only: no data is read, no budget is spent."""
    with ctx.db.read() as session:
        dataset = crud.get_dataset(session, body.dataset, user)
    if body.plan is not None:
        plan = checked_plan(body.plan, crud.dataset_policy(dataset), body.delta)
        return [
            NoiseOut(name=q.quantity, epsilon=q.epsilon, sensitivity=q.sensitivity,
                     noise_scale=q.noise_scale, error_bound_95=q.error_bound_95,
                     describes=q.describes, max_rows_per_unit=plan.max_rows_per_unit,
                     max_groups_per_unit=plan.max_groups_per_unit)
            for q in plan_query_noise(plan, body.epsilon, body.delta)
        ]  # fmt: skip
    if body.delta:
        raise ApiError(422, "bad_plan", "delta applies to query plans only; drop it")
    if body.code is not None:
        _check_code(body.code, ctx)
    specs = _specs(body.outputs)
    return [NoiseOut(**vars(plan)) for plan in _noise_plans(specs, body.combine, dataset.blocks,
                                                             body.epsilon)]  # fmt: skip


def _noise_plans(
    specs: list[OutputSpec], combine: str, blocks: int, epsilon: float
) -> list[NoisePlan]:
    """The release's public plan at the ε the job will run at, or 422 ``bad_outputs`` naming
    the smallest bounds that work (bounds too narrow for their magnitude)."""
    try:
        return plan_noise(specs, Combine(combine), blocks, to_epsilon(crud.epsilon_units(epsilon)))
    except OutputSpecError as exc:
        raise ApiError(422, "bad_outputs", str(exc)) from exc


@router.get("/schedule")
def schedule_rules(ctx: Context, user: CurrentUser) -> ScheduleRulesOut:
    """The node's public scheduling rules: how a job's block time and length are fixed."""
    return ScheduleRulesOut(
        **asdict(ctx.settings.schedule), slots=ctx.settings.slots, sandbox=ctx.sandbox.describe()
    )


@router.post("/jobs", status_code=202)
def submit(body: NewJob, ctx: Context, user: Contestant, response: Response) -> JobOut:
    """Queue a full-data job (202), or run on the public sample at once (200, no budget)."""
    _check_code(body.code, ctx)
    specs = _specs(body.outputs)
    image_problem = ctx.sandbox.image_problem()
    if image_problem:
        raise ApiError(503, "runner_image_missing", str(image_problem))
    if body.target == "sample":
        response.status_code = 200
        return _run_on_sample(body, specs, ctx, user)
    if body.epsilon is None:
        raise ApiError(422, "bad_epsilon", "a full-data job needs epsilon, e.g. 0.5")
    with ctx.db.transaction() as session:
        dataset = crud.get_dataset(session, body.dataset, user)
        _noise_plans(specs, body.combine, dataset.blocks, body.epsilon)  # before any budget
        asked = body.block_seconds
        if asked is None:  # the default: from this code's last run on the sample, if any
            asked = _timed_on_sample(session, user, dataset, body.code, ctx)
        schedule = _schedule(ctx, dataset.blocks, asked)
        job, team = crud.queue_job(
            session,
            user,
            dataset,
            body.epsilon,
            mode=body.mode,
            code=body.code,
            outputs=[vars(spec) for spec in specs],
            combine=body.combine,
            block_seconds=schedule.block_seconds,
            schedule_seconds=schedule.seconds,
        )
        view = job_view(job, dataset.name, team.name, organizer=False)
    ctx.worker.submit(job.id)
    return view


def _timed_on_sample(
    session: Session, user: User, dataset: Dataset, code: str, ctx: AppContext
) -> float | None:
    """T from the team's latest run of exactly this code on this dataset's sample."""
    run = session.scalars(
        select(Job.sample_run)
        .where(Job.team_id == user.team_id, Job.dataset_id == dataset.id,
               Job.target == "sample", Job.code == code)
        .order_by(Job.created_at.desc())
        .limit(1)
    ).first()  # fmt: skip
    if not run or run.get("seconds") is None:
        return None
    return block_seconds_from_sample(ctx.settings.schedule, float(run["seconds"]))


def _schedule(ctx: AppContext, blocks: int, asked: float | None) -> Schedule:
    """The job's public schedule, or 422 ``bad_block_seconds`` naming the node's limits."""
    try:
        return aggregate_schedule(ctx.settings.schedule, blocks, ctx.settings.slots, asked)
    except ScheduleError as exc:
        raise ApiError(422, "bad_block_seconds", str(exc)) from exc


def _run_on_sample(body: NewJob, specs: list[OutputSpec], ctx: Context, user: User) -> JobOut:
    with ctx.db.read() as session:
        dataset = crud.get_dataset(session, body.dataset, user)
        crud.require_sample_access(session, user)
    job_id = new_id()
    code_path = write_code(ctx.settings.jobs_dir, job_id, body.code)
    run = run_on_sample(code_path, Path(dataset.sample_path), specs, ctx.sandbox)
    with ctx.db.transaction() as session:
        team = session.get(Team, user.team_id)
        assert team is not None
        job = Job(
            id=job_id,
            team_id=team.id,
            user_id=user.id,
            dataset_id=dataset.id,
            mode=body.mode,
            target="sample",
            state=JobState.RELEASED.value,
            code=body.code,
            outputs=[vars(spec) for spec in specs],
            combine=body.combine,
            epsilon=0.0,
            charge_units=0,
            blocks_done=1,
            blocks_total=1,
            sample_run=asdict(run),
        )
        session.add(job)
        session.flush()
        crud.audit(session, user, "job.sample_run", job=job_id, dataset=dataset.name)
        return job_view(job, dataset.name, team.name, organizer=False)


def _visible_jobs(user: User) -> Select[Job, str, str]:
    query = select(Job, Dataset.name, Team.name).join(Dataset).join(Team)
    if user.role != "organizer":
        query = query.where(Job.team_id == user.team_id)
    return query


IdPrefix = Annotated[
    str | None,
    Query(pattern=r"^[0-9a-f]{1,32}$",
          description="Only jobs whose id starts with this (a contestant's: their team's)."),
]  # fmt: skip


@router.get("/jobs")
def list_jobs(
    ctx: Context, user: CurrentUser, state: str | None = None, prefix: IdPrefix = None
) -> list[AnyJobOut]:
    query = _visible_jobs(user).order_by(Job.created_at.desc())
    if prefix is not None:  # among the jobs this user may see: no probing of other teams' ids
        query = query.where(Job.id.startswith(prefix, autoescape=True))
    organizer = user.role == "organizer"
    if state is not None and organizer:
        query = query.where(Job.state == state)
    with ctx.db.read() as session:
        rows = session.execute(query.limit(500)).all()
        reviews = review_status(session, [row[0] for row in rows]) if organizer else {}
        views = [job_view(*row, organizer=organizer, review=reviews.get(row[0].id))
                 for row in rows]  # fmt: skip
    # A contestant's filter is on the state they see: the true one may not show yet.
    return [view for view in views if state is None or view.state == state]


@router.get("/jobs/{job_id}", response_model=AnyJobOut)
def get_job(job_id: str, ctx: Context, user: CurrentUser) -> Response:
    """One job: what status polls read (sent without FastAPI's re-validation: the hot path)."""
    return model_response(read_job(job_id, ctx, user))


def read_job(job_id: str, ctx: AppContext, user: User) -> JobOut:
    """The job as this user may see it, or 404 (the web pages read it too)."""
    organizer = user.role == "organizer"
    with ctx.db.read() as session:
        row = session.execute(_visible_jobs(user).where(Job.id == job_id)).first()
        if row is None:  # another team's job looks exactly like a missing one
            raise not_found("job", job_id, "list your jobs with GET /v1/jobs")
        review = review_status(session, [row[0]])[job_id] if organizer else None
        return job_view(*row, organizer=organizer, review=review)

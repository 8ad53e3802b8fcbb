"""Model → response conversions; the contestant view is built without organizer-only fields."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, TypedDict

from fastapi import Response
from pydantic import BaseModel
from sqlalchemy.orm import Session

from api.models import Budget, Dataset, Job, Licence, Population, Team, User, as_utc
from api.schemas import (
    BudgetOut,
    DatasetOrganizerOut,
    DatasetOut,
    JobOrganizerOut,
    JobOut,
    LicenceOut,
    OutputIn,
    PopulationOut,
    Progress,
    ReleasedOut,
    ReviewOut,
    SampleRunOut,
    ScheduleOut,
    UtcTime,
)
from privacy.budget import remaining_units, to_delta, to_epsilon
from runner.lifecycle import JobState
from runner.schedule import timeline


def model_response(content: BaseModel | Sequence[BaseModel]) -> Response:
    """JSON of views already built and checked by their models. Returned as a Response, it is
    sent as is: FastAPI would otherwise dump, re-validate and dump again each view — the
    largest cost of a status poll after the database read. Routes that use it declare their
    ``response_model`` for the schema."""
    if isinstance(content, BaseModel):
        body = content.model_dump_json().encode()
    else:
        body = b"[" + b",".join(item.model_dump_json().encode() for item in content) + b"]"
    return Response(body, media_type="application/json")


class DatasetFields(TypedDict):
    """The fields ``DatasetOut`` and ``DatasetOrganizerOut`` share."""

    name: str
    description: str
    unit_column: str
    columns: dict[str, str]
    bounds: dict[str, list[float]]
    key_sets: dict[str, list[str | int | float]]
    blocks: int
    sample_rows: int
    population: str
    team_epsilon: float
    team_delta: float
    synthetic: bool
    sample_epsilon: float | None


Charge = Literal["none", "reserved", "charged", "returned"]


class JobFields(TypedDict):
    """The fields ``JobOut`` and ``JobOrganizerOut`` share: what a contestant's view may hold."""

    id: str
    dataset: str
    team: str
    mode: str
    target: str
    state: str
    epsilon: float
    delta: float
    combine: str
    outputs: list[OutputIn]
    plan: dict[str, Any] | None
    progress: Progress
    schedule: ScheduleOut | None
    error_class: str | None
    review_reason: str | None
    result: list[ReleasedOut] | None
    sample_run: SampleRunOut | None
    charge: Charge
    created_at: UtcTime
    updated_at: UtcTime


def _dataset_fields(dataset: Dataset) -> DatasetFields:
    return {
        "name": dataset.name,
        "description": dataset.description,
        "unit_column": dataset.unit_column,
        "columns": dataset.columns,
        "bounds": dataset.bounds,
        "key_sets": dataset.key_sets,
        "blocks": dataset.blocks,
        "sample_rows": dataset.sample_rows,
        "population": dataset.population.name,
        "team_epsilon": to_epsilon(dataset.population.team_cap_units),
        "team_delta": to_delta(dataset.population.team_delta_cap_units),
        "synthetic": dataset.sample_synthetic,
        "sample_epsilon": dataset.sample_epsilon,
    }


def dataset_organizer_view(dataset: Dataset) -> DatasetOrganizerOut:
    return DatasetOrganizerOut(
        **_dataset_fields(dataset), rows=dataset.rows, units=dataset.units, node=dataset.node
    )


def dataset_view(dataset: Dataset, organizer: bool) -> DatasetOut:
    """The catalog entry; the exact size of the full data is for organizers only."""
    if organizer:
        return dataset_organizer_view(dataset)
    return DatasetOut(**_dataset_fields(dataset))


def _values(raw: list[dict[str, Any]] | None) -> list[ReleasedOut] | None:
    return None if raw is None else [ReleasedOut(**value) for value in raw]


def _job_fields(job: Job, dataset: str, team: str) -> JobFields:
    """Every field of the job as it truly is: the organizer's view."""
    released = job.state == JobState.RELEASED.value
    schedule = None
    if job.schedule_seconds:
        release_at = (
            None
            if job.started_at is None
            else as_utc(job.started_at) + timedelta(seconds=job.schedule_seconds)
        )
        schedule = ScheduleOut(
            block_seconds=job.block_seconds, seconds=job.schedule_seconds, release_at=release_at
        )
    return {
        "id": job.id,
        "dataset": dataset,
        "team": team,
        "mode": job.mode,
        "target": job.target,
        "state": job.state,
        "epsilon": job.epsilon,
        "delta": job.delta,
        "combine": job.combine,
        "outputs": [OutputIn(**spec) for spec in job.outputs],
        "plan": job.plan,
        "progress": Progress(
            blocks_done=job.blocks_done,
            blocks_total=job.blocks_total,
            fraction=job.blocks_done / job.blocks_total if job.blocks_total else 0.0,
        ),
        "schedule": schedule,
        "error_class": job.error_class,
        "review_reason": job.review_reason,
        "charge": _charge(job),
        "result": _values(job.result) if released else None,
        "sample_run": SampleRunOut(**job.sample_run) if job.sample_run else None,
        "created_at": job.created_at,
        "updated_at": job.updated_at,
    }


def _charge(job: Job) -> Charge:
    """What the lifecycle did to the job's reservation (``Job.budget_effect``)."""
    if job.target == "sample":
        return "none"
    if job.budget_effect == "commit":
        return "charged"
    return "returned" if job.budget_effect == "return" else "reserved"


def job_organizer_view(
    job: Job, dataset: str, team: str, review: ReviewOut | None = None
) -> JobOrganizerOut:
    return JobOrganizerOut(
        **_job_fields(job, dataset, team),
        code=job.code,
        pending_values=_values(job.result),
        report=job.report,
        logs=job.logs,
        error_detail=job.error_detail,
        review=review,
    )


def contestant_job_fields(
    job: Job, dataset: str, team: str, now: datetime | None = None
) -> JobFields:
    """The job as its team sees it: on a full-data job, state, times, progress, error class
    and decision follow the public schedule (``runner.schedule.timeline``), not the run."""
    fields = _job_fields(job, dataset, team)
    if job.state == JobState.PARTIALLY_REVIEWED.value:  # how far review got is the organizers'
        fields["state"] = JobState.AWAITING_REVIEW.value
    if not job.schedule_seconds:  # a sample run (public data), or a job from before schedules
        return fields
    seen = timeline(
        fields["state"],
        as_utc(job.created_at),
        None if job.started_at is None else as_utc(job.started_at),
        as_utc(job.updated_at),
        job.schedule_seconds,
        now or datetime.now(UTC),
    )
    fields["state"] = seen.state
    fields["updated_at"] = seen.updated_at
    fields["progress"] = Progress(
        blocks_done=int(seen.fraction * job.blocks_total),
        blocks_total=job.blocks_total,
        fraction=round(seen.fraction, 3),
    )
    if not seen.revealed:
        fields["error_class"] = fields["review_reason"] = fields["result"] = None
        fields["charge"] = "reserved"
    return fields


def job_view(
    job: Job, dataset: str, team: str, organizer: bool, review: ReviewOut | None = None
) -> JobOut:
    """A contestant's view carries no organizer-only field and follows the job's public
    schedule; an organizer's carries every field as it truly is."""
    if organizer:
        return job_organizer_view(job, dataset, team, review)
    return JobOut(**contestant_job_fields(job, dataset, team))


def _left(cap: int, spent: int, reserved: int) -> int:
    return remaining_units(cap, spent, reserved)


def budget_view(
    budget: Budget, team: str, population: Population, datasets: list[str]
) -> BudgetOut:
    left = _left(budget.cap_units, budget.spent_units, budget.reserved_units)
    delta_left = _left(budget.delta_cap_units, budget.delta_spent_units,
                       budget.delta_reserved_units)  # fmt: skip
    pool_left = _left(population.cap_units, population.spent_units, population.reserved_units)
    pool_delta_left = _left(population.delta_cap_units, population.delta_spent_units,
                            population.delta_reserved_units)  # fmt: skip
    return BudgetOut(
        team=team,
        population=population.name,
        datasets=datasets,
        cap=to_epsilon(budget.cap_units),
        spent=to_epsilon(budget.spent_units),
        reserved=to_epsilon(budget.reserved_units),
        remaining=to_epsilon(left),
        delta_cap=to_delta(budget.delta_cap_units),
        delta_spent=to_delta(budget.delta_spent_units),
        delta_reserved=to_delta(budget.delta_reserved_units),
        delta_remaining=to_delta(delta_left),
        population_cap=to_epsilon(population.cap_units),
        population_remaining=to_epsilon(pool_left),
        population_delta_cap=to_delta(population.delta_cap_units),
        population_delta_remaining=to_delta(pool_delta_left),
        available=to_epsilon(max(0, min(left, pool_left))),
        delta_available=to_delta(max(0, min(delta_left, pool_delta_left))),
    )


def population_view(
    population: Population, contest: str | None, datasets: list[str], team_caps_units: int
) -> PopulationOut:
    p = population
    return PopulationOut(
        name=p.name, contest=contest, description=p.description, datasets=datasets,
        cap=to_epsilon(p.cap_units), spent=to_epsilon(p.spent_units),
        reserved=to_epsilon(p.reserved_units),
        remaining=to_epsilon(_left(p.cap_units, p.spent_units, p.reserved_units)),
        delta_cap=to_delta(p.delta_cap_units), delta_spent=to_delta(p.delta_spent_units),
        delta_reserved=to_delta(p.delta_reserved_units),
        delta_remaining=to_delta(
            _left(p.delta_cap_units, p.delta_spent_units, p.delta_reserved_units)
        ),
        team_epsilon=to_epsilon(p.team_cap_units), team_delta=to_delta(p.team_delta_cap_units),
        team_caps_total=to_epsilon(team_caps_units),
        samples_spent=to_epsilon(p.samples_spent_units),
    )  # fmt: skip


def licence_view(session: Session, licence: Licence) -> LicenceOut:
    team = session.get_one(Team, licence.team_id)
    uploader = session.get_one(User, licence.uploaded_by)
    return LicenceOut(
        id=licence.id, team=team.name, filename=licence.filename, media_type=licence.media_type,
        size=licence.size, sha256=licence.sha256, uploaded_by=uploader.name,
        uploaded_at=licence.uploaded_at, status=licence.status, reason=licence.reason,
        decided_at=licence.decided_at,
    )  # fmt: skip

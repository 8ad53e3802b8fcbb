"""Persistence operations. Each function runs inside the caller's transaction; the budget
operations are conditional UPDATEs (the team's ledger and its population's, both or neither),
so concurrent requests can never overspend."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import ColumnElement, CursorResult, Update, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from api import audit_log
from api.auth import forget_tokens, hash_token, new_token
from api.contest import RoundDates, TeamStanding, full_data_problems, sample_problems
from api.errors import ApiError, not_found
from api.models import (
    ApiToken,
    Budget,
    Contest,
    Dataset,
    Job,
    Licence,
    Population,
    Round,
    Team,
    User,
)
from api.passwords import PasswordError, check_strength, hash_password
from privacy.budget import (
    BudgetError,
    charge_units,
    delta_charge_units,
    remaining_units,
    to_delta,
    to_epsilon,
)
from privacy.query import DatasetPolicy
from runner.lifecycle import JobState


def audit(session: Session, actor: User | None, action: str, **detail: object) -> None:
    audit_log.append(session, actor.name if actor else None, action, detail)


def create_user(
    session: Session,
    name: str,
    role: str,
    team: Team | None,
    actor: User | None,
    password: str | None = None,
    *,
    token_expires_at: datetime | None,
) -> tuple[User, str]:
    if session.scalar(select(User).where(User.name == name)) is not None:
        raise ApiError(409, "user_exists", f"a user named {name!r} exists; pick another name")
    user = User(name=name, role=role, team_id=team.id if team else None)
    if password is not None:
        try:
            check_strength(password, name)
        except PasswordError as exc:
            raise ApiError(422, "weak_password", str(exc)) from exc
        user.password_hash = hash_password(password)
    session.add(user)
    session.flush()
    token = issue_token(session, user, "created with the account", token_expires_at)
    audit(session, actor, "user.created", user=name, role=role, team=team.name if team else None)
    return user, token


def revoke_token(session: Session, user: User, token_id: str) -> None:
    """Revoke one of ``user``'s tokens (organizers: anyone's); revoking twice is harmless."""
    token = session.get(ApiToken, token_id)
    if token is None or (token.user_id != user.id and user.role != "organizer"):
        raise ApiError(404, "not_found", f"no token {token_id!r} of yours; list them first")
    if token.revoked_at is None:
        token.revoked_at = datetime.now(UTC)
        audit(session, user, "token.revoked", token=token.id)
    forget_tokens()


def revoke_other_tokens(session: Session, user: User, keep: str) -> list[str]:
    """Revoke every live token of ``user`` but ``keep`` (the one in use): each audited."""
    now = datetime.now(UTC)
    others = session.scalars(
        select(ApiToken).where(
            ApiToken.user_id == user.id, ApiToken.id != keep, ApiToken.revoked_at.is_(None)
        )
    ).all()
    for token in others:
        token.revoked_at = now
        audit(session, user, "token.revoked", token=token.id, all_others=True)
    forget_tokens()
    return [token.id for token in others]


def issue_token(session: Session, user: User, label: str, expires_at: datetime | None) -> str:
    """A new bearer token for ``user``, valid until ``expires_at`` (None: a data node's, for
    ever): returned once, only its hash is kept."""
    token = new_token()
    session.add(ApiToken(user_id=user.id, token_hash=hash_token(token), label=label[:64],
                         expires_at=expires_at))  # fmt: skip
    session.flush()
    return token


def open_budget(session: Session, team: Team, population: Population) -> None:
    """Every (team, population) pair gets its ledger up front, so reservations never race an
    INSERT."""
    session.add(
        Budget(
            team_id=team.id,
            population_id=population.id,
            cap_units=population.team_cap_units,
            delta_cap_units=population.team_delta_cap_units,
        )
    )


def create_team(session: Session, name: str, actor: User, contest: str | None = None) -> Team:
    """A team of a contest, with a budget ledger on each of the contest's populations."""
    if session.scalar(select(Team).where(Team.name == name)) is not None:
        raise ApiError(409, "team_exists", f"a team named {name!r} exists; pick another name")
    joined = resolve_contest(session, contest)
    team = Team(name=name, contest_id=joined.id)
    session.add(team)
    session.flush()
    for population in session.scalars(select(Population).where(Population.contest_id == joined.id)):
        open_budget(session, team, population)
    audit(session, actor, "team.created", team=name, contest=joined.name)
    return team


def get_team(session: Session, team_id: str) -> Team:
    team = session.get(Team, team_id) or session.scalar(select(Team).where(Team.name == team_id))
    if team is None:
        raise not_found("team", team_id, "list teams with GET /v1/teams")
    return team


def get_dataset(session: Session, name: str, user: User | None = None) -> Dataset:
    """The dataset by name; for a contestant, only one of their team's contest (others do not
    exist for them: the same 404, listing only what they may see)."""
    query = select(Dataset)
    if user is not None and user.role != "organizer":
        query = query.where(Dataset.contest_id == _team_contest(session, user))
    dataset = session.scalar(query.where(Dataset.name == name))
    if dataset is None:
        names = session.scalars(query.with_only_columns(Dataset.name).order_by(Dataset.name))
        known = ", ".join(names) or "none registered yet"
        raise not_found("dataset", name, f"known datasets: {known}")
    return dataset


def _team_contest(session: Session, user: User) -> str | None:
    team = session.get(Team, user.team_id) if user.team_id else None
    return team.contest_id if team else None


def visible_datasets(session: Session, user: User) -> list[Dataset]:
    query = select(Dataset).order_by(Dataset.name)
    if user.role != "organizer":
        query = query.where(Dataset.contest_id == _team_contest(session, user))
    return list(session.scalars(query))


def resolve_contest(session: Session, name: str | None) -> Contest:
    """The named contest, or the only one there is; otherwise a 422 naming the fix."""
    if name is not None:
        contest = session.scalar(select(Contest).where(Contest.name == name))
        if contest is None:
            raise not_found("contest", name, "list contests with GET /v1/contests")
        return contest
    contests = session.scalars(select(Contest).limit(2)).all()
    if len(contests) == 1:
        return contests[0]
    raise ApiError(
        422,
        "contest_needed",
        "create a contest first (POST /v1/contests)"
        if not contests
        else "there are several contests; name the one this belongs to ('contest')",
    )


def team_standing(session: Session, team: Team) -> TeamStanding:
    contest = session.get(Contest, team.contest_id) if team.contest_id else None
    rounds = session.scalars(select(Round).where(Round.contest_id == team.contest_id)).all()
    # The latest decision stands (a newer upload awaiting review does not suspend an approved
    # licence); with no decision yet, a pending upload; with no upload, nothing.
    decided = session.scalar(
        select(Licence.status)
        .where(Licence.team_id == team.id, Licence.status != "pending")
        .order_by(Licence.decided_at.desc())
        .limit(1)
    )
    uploaded = session.scalar(select(Licence.id).where(Licence.team_id == team.id).limit(1))
    latest = decided or ("pending" if uploaded else None)
    unverified = session.scalars(
        select(User.name).where(User.team_id == team.id, User.identity_verified.is_(False))
    ).all()
    return TeamStanding(
        contest=contest.name if contest else "(none)",
        rounds=[RoundDates(r.number, r.opens_at, r.closes_at) for r in rounds],
        admitted=team.admitted_at is not None,
        licence=latest,
        unverified_members=list(unverified),
    )


def require_sample_access(session: Session, user: User) -> None:
    """Round one or two open for the contestant's contest (organizers always may)."""
    if user.role == "organizer":
        return
    team = session.get_one(Team, user.team_id)
    problems = sample_problems(team_standing(session, team), datetime.now(UTC))
    if problems:
        raise ApiError(403, "contest_closed", f"samples are not available now: {problems[0]}")


def require_full_access(session: Session, team: Team) -> None:
    problems = full_data_problems(team_standing(session, team), datetime.now(UTC))
    if problems:
        raise ApiError(
            403,
            "not_admitted",
            f"team {team.name!r} cannot run on the full data yet: " + "; ".join(problems),
            missing=problems,
        )


def add_dataset(session: Session, dataset: Dataset, actor: User) -> None:
    """Record a dataset whose population is already set (``api.populations.place``)."""
    session.add(dataset)
    try:
        session.flush()
    except IntegrityError as exc:
        raise ApiError(
            409, "dataset_exists", f"dataset {dataset.name!r} is already registered"
        ) from exc
    audit(session, actor, "dataset.registered", dataset=dataset.name, blocks=dataset.blocks,
          population=dataset.population.name)  # fmt: skip


def budget_row(session: Session, team_id: str, population_id: str) -> Budget:
    budget = session.scalar(
        select(Budget).where(Budget.team_id == team_id, Budget.population_id == population_id)
    )
    if budget is None:  # cannot happen: rows are made with teams and datasets
        raise ApiError(500, "budget_missing", "no budget row; ask the organizer to set a cap")
    return budget


def dataset_policy(dataset: Dataset) -> DatasetPolicy:
    """What query plans on this dataset may use: its schema, unit, public bounds and keys."""
    return DatasetPolicy(
        columns=dict(dataset.columns),
        unit_column=dataset.unit_column,
        bounds={name: (float(lo), float(hi)) for name, (lo, hi) in dataset.bounds.items()},
        key_sets=dict(dataset.key_sets),
    )


def epsilon_units(epsilon: float) -> int:
    """ε as budget units, or a 422 naming the allowed range."""
    try:
        return charge_units(epsilon)
    except BudgetError as exc:
        raise ApiError(422, "bad_epsilon", str(exc)) from exc


def queue_job(
    session: Session,
    user: User,
    dataset: Dataset,
    epsilon: float,
    delta: float = 0.0,
    **fields: object,
) -> tuple[Job, Team]:
    """Reserve the budget and queue the job in the caller's transaction: both or neither."""
    units = epsilon_units(epsilon)
    try:
        delta_units = delta_charge_units(delta)
    except BudgetError as exc:
        raise ApiError(422, "bad_delta", str(exc)) from exc
    # The job runs at the ε and δ it is charged, exactly (see privacy.budget.charge_units).
    epsilon, delta = to_epsilon(units), to_delta(delta_units)
    team = session.get(Team, user.team_id)
    assert team is not None
    require_full_access(session, team)
    reserve_budget(session, team, dataset, units, delta_units)
    job = Job(
        delta=delta,
        delta_units=delta_units,
        team_id=team.id,
        user_id=user.id,
        dataset_id=dataset.id,
        state=JobState.QUEUED.value,
        epsilon=epsilon,
        charge_units=units,
        blocks_total=dataset.blocks,
        **fields,
    )
    session.add(job)
    session.flush()
    audit(session, user, "job.submitted", job=job.id, dataset=dataset.name, epsilon=epsilon,
          mode=job.mode)  # fmt: skip
    audit(session, user, "budget.reserved", job=job.id, epsilon=epsilon, delta=delta)
    return job, team


def reserve_budget(
    session: Session, team: Team, dataset: Dataset, units: int, delta_units: int = 0
) -> None:
    """Reserve on both ledgers, each by one UPDATE whose WHERE re-checks what is left: the
    population's contest-wide row first (always in that order, so concurrent transactions
    never wait on each other crosswise), then the team's. If either cannot cover the job,
    nothing stays charged (the population's share is undone) and the 409 names which cap."""
    population = updated_rows(
        session,
        update(Population)
        .where(Population.id == dataset.population_id, *_covers(Population, units, delta_units))
        .values(**_moved(Population, reserved=(units, delta_units)))
        .execution_options(synchronize_session=False),
    )
    if population != 1:
        raise _population_exhausted(session, dataset, units, delta_units)
    reserved = updated_rows(
        session,
        update(Budget)
        .where(
            Budget.team_id == team.id,
            Budget.population_id == dataset.population_id,
            *_covers(Budget, units, delta_units),
        )
        .values(**_moved(Budget, reserved=(units, delta_units)))
        .execution_options(synchronize_session=False),
    )
    if reserved != 1:
        # Undo the population's share here, not only by the caller's rollback: a caller that
        # catches the 409 and commits must not leave it charged for a job that never ran.
        session.execute(
            update(Population)
            .where(Population.id == dataset.population_id)
            .values(**_moved(Population, reserved=(-units, -delta_units)))
            .execution_options(synchronize_session=False)
        )
        raise _team_exhausted(session, team, dataset, units, delta_units)


Ledger = type[Budget] | type[Population]


def updated_rows(session: Session, statement: Update) -> int:
    """Rows an UPDATE changed (a compare-and-set's answer): ``execute`` is typed as returning
    a plain ``Result``, but for an UPDATE it is the ``CursorResult`` that has ``rowcount``."""
    return cast(CursorResult[Any], session.execute(statement)).rowcount


def _covers(table: Ledger, units: int, delta_units: int) -> list[ColumnElement[bool]]:
    return [
        table.cap_units - table.spent_units - table.reserved_units >= units,
        table.delta_cap_units - table.delta_spent_units - table.delta_reserved_units >= delta_units,
    ]


def _moved(
    table: Ledger, reserved: tuple[int, int], spent: tuple[int, int] = (0, 0)
) -> dict[str, object]:
    """New values of a ledger's columns: ``reserved`` and ``spent`` are added, as (ε, δ) units."""
    return {
        "reserved_units": table.reserved_units + reserved[0],
        "delta_reserved_units": table.delta_reserved_units + reserved[1],
        "spent_units": table.spent_units + spent[0],
        "delta_spent_units": table.delta_spent_units + spent[1],
    }


def _left(row: Budget | Population) -> tuple[int, int]:
    return (
        remaining_units(row.cap_units, row.spent_units, row.reserved_units),
        remaining_units(row.delta_cap_units, row.delta_spent_units, row.delta_reserved_units),
    )


def _population_exhausted(
    session: Session, dataset: Dataset, units: int, delta_units: int
) -> ApiError:
    population = session.get_one(Population, dataset.population_id)
    session.refresh(population)
    left, delta_left = _left(population)
    where = (
        f"population {population.name!r} (the people of {dataset.name!r}; its contest-wide "
        "cap is shared by every team)"
    )
    extra = {"cap": "population", "population": population.name,
             "population_remaining": to_epsilon(left)}  # fmt: skip
    if delta_left < delta_units:
        return ApiError(
            409, "budget_exceeded",
            f"this job needs delta={to_delta(delta_units):g} but {where} has "
            f"delta={to_delta(delta_left):g} left; lower delta, or the organizers may raise "
            f"its delta cap (`unseen populations set {population.name} --delta D`)",
            remaining_delta=to_delta(delta_left), **extra,
        )  # fmt: skip
    return ApiError(
        409, "budget_exceeded",
        f"this job needs ε={to_epsilon(units):g} but {where} has ε={to_epsilon(left):g} left; "
        "lower epsilon, or the organizers may raise the population's cap "
        f"(`unseen populations set {population.name} --epsilon E`)",
        remaining=to_epsilon(left), **extra,
    )  # fmt: skip


def _team_exhausted(
    session: Session, team: Team, dataset: Dataset, units: int, delta_units: int
) -> ApiError:
    budget = budget_row(session, team.id, dataset.population_id)
    session.refresh(budget)
    left, delta_left = _left(budget)
    population = dataset.population.name
    where = f"team {team.name!r} has"
    on = f"left on population {population!r} (dataset {dataset.name!r} and any that share it)"
    extra = {"cap": "team", "population": population}
    if delta_left < delta_units:
        return ApiError(
            409, "budget_exceeded",
            f"this job needs delta={to_delta(delta_units):g} but {where} "
            f"delta={to_delta(delta_left):g} {on}; lower delta or ask the organizer to raise "
            "the team's delta cap",
            remaining=to_epsilon(left), remaining_delta=to_delta(delta_left), **extra,
        )  # fmt: skip
    return ApiError(
        409, "budget_exceeded",
        f"this job needs ε={to_epsilon(units):g} but {where} ε={to_epsilon(left):g} {on}; "
        "lower epsilon or ask the organizer to raise the team's cap",
        remaining=to_epsilon(left), **extra,
    )  # fmt: skip


def _settle(session: Session, job: Job, spent: bool) -> None:
    """Release a job's reservation on both ledgers, as spent or returned; population first."""
    population_id = (
        select(Dataset.population_id).where(Dataset.id == job.dataset_id).scalar_subquery()
    )
    amounts = (job.charge_units, job.delta_units)
    released = (-amounts[0], -amounts[1])
    for table, where in (
        (Population, [Population.id == population_id]),
        (Budget, [Budget.team_id == job.team_id, Budget.population_id == population_id]),
    ):
        session.execute(
            update(table)
            .where(*where)
            .values(**_moved(table, reserved=released, spent=amounts if spent else (0, 0)))
            .execution_options(synchronize_session=False)
        )


def commit_budget(session: Session, job: Job) -> None:
    """Reserved → spent, for a job whose noise was drawn: the team's and the population's."""
    _settle(session, job, spent=True)


def return_budget(session: Session, job: Job) -> None:
    """Drop the reservation of a job that drew no noise, on both ledgers."""
    _settle(session, job, spent=False)

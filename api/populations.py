"""Populations: which people a dataset's privacy unit stands for, and the caps on them.

The accounting rule (docs/threat-model.md, "Budgets are per population"): every budget is kept
per team and population; a job on any dataset of a population is charged to the team's ledger
on it *and* to the population's contest-wide ledger, both or neither. A team's cap never goes
below what it spent and holds; raised, it gives at most what the population has left; the
population's cap never goes below what all teams spent and hold.

Where a dataset belongs is decided at registration: the same source bytes (SHA-256) as a
dataset of the contest mean the same people, so the new one joins that population (or is
refused when it names another); otherwise it joins the population it names, or a new one
named after it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from api.crud import open_budget
from api.errors import ApiError, not_found
from api.models import Budget, Contest, Dataset, Population, Team
from privacy.budget import (
    BudgetError,
    cap_units,
    delta_cap_units,
    remaining_units,
    to_delta,
    to_epsilon,
)

#: Caps of a new population when the registration names none: per team, and over all teams.
DEFAULT_TEAM_EPSILON, DEFAULT_TEAM_DELTA = 10.0, 1e-6
DEFAULT_POPULATION_EPSILON, DEFAULT_POPULATION_DELTA = 100.0, 1e-5


@dataclass(frozen=True)
class Caps:
    """The caps a registration asks for; None: not given (a default, or the population's)."""

    team_epsilon: float | None = None
    team_delta: float | None = None
    epsilon: float | None = None
    delta: float | None = None


def place(
    session: Session,
    dataset: Dataset,
    contest: Contest,
    requested: str | None,
    caps: Caps,
    description: str = "",
) -> Population:
    """The population ``dataset`` joins (made, with a ledger per team, if new); sets it on the
    dataset. Raises a 409 naming the fix when the request contradicts what is registered."""
    twin = None
    if dataset.content_sha256 is not None:
        twin = session.scalar(
            select(Dataset)
            .where(Dataset.content_sha256 == dataset.content_sha256)
            .where(Dataset.contest_id == contest.id)
            .limit(1)
        )
    if twin is not None:
        if requested not in (None, twin.population.name):
            raise ApiError(
                409, "population_conflict",
                f"this source has the same bytes as dataset {twin.name!r}, whose people are "
                f"population {twin.population.name!r}; the same people cannot be a second "
                f"population. Register it with population={twin.population.name!r} (or none)",
                dataset=twin.name, population=twin.population.name,
            )  # fmt: skip
        population: Population | None = twin.population
    else:
        name = requested or dataset.name
        population = session.scalar(select(Population).where(Population.name == name))
        if population is not None and requested is None:
            raise ApiError(
                409, "population_exists",
                f"a population named {name!r} exists; name it (population={name!r}) to add "
                "this dataset's people to it, or name a new population",
            )  # fmt: skip
        if population is not None and population.contest_id != contest.id:
            raise ApiError(
                409, "population_elsewhere",
                f"population {name!r} belongs to another contest; population names are "
                "unique across contests, so pick another name",
            )  # fmt: skip
    if population is None:
        population = _create(session, name, contest, caps, description)
    else:
        _check_same_caps(population, caps)
    dataset.population = population
    dataset.population_id = population.id
    return population


def _create(
    session: Session, name: str, contest: Contest, caps: Caps, description: str
) -> Population:
    def given(value: float | None, default: float) -> float:
        return default if value is None else value

    try:
        population = Population(
            name=name,
            description=description or f"the people of {name}",
            contest_id=contest.id,
            cap_units=cap_units(given(caps.epsilon, DEFAULT_POPULATION_EPSILON)),
            delta_cap_units=delta_cap_units(given(caps.delta, DEFAULT_POPULATION_DELTA)),
            team_cap_units=cap_units(given(caps.team_epsilon, DEFAULT_TEAM_EPSILON)),
            team_delta_cap_units=delta_cap_units(given(caps.team_delta, DEFAULT_TEAM_DELTA)),
            spent_units=0, reserved_units=0, delta_spent_units=0, delta_reserved_units=0,
        )  # fmt: skip
    except BudgetError as exc:
        raise ApiError(422, "bad_cap", str(exc)) from exc
    if population.team_cap_units > population.cap_units:
        raise ApiError(
            422, "cap_above_population",
            f"team_epsilon={to_epsilon(population.team_cap_units):g} is more than the "
            f"population's contest-wide cap ε={to_epsilon(population.cap_units):g}; lower "
            "team_epsilon or raise population_epsilon",
        )  # fmt: skip
    session.add(population)
    try:
        session.flush()
    except IntegrityError as exc:  # another registration made it a moment ago
        raise ApiError(
            409, "population_exists",
            f"population {name!r} was just made by another registration; register again to "
            "join it (name it) or pick another name",
        ) from exc  # fmt: skip
    for team in session.scalars(select(Team).where(Team.contest_id == contest.id)):
        open_budget(session, team, population)
    return population


def _check_same_caps(population: Population, caps: Caps) -> None:
    """Joining a population keeps its caps; a registration asking for others is refused."""
    asked = {
        "team_epsilon": (caps.team_epsilon, to_epsilon(population.team_cap_units)),
        "team_delta": (caps.team_delta, to_delta(population.team_delta_cap_units)),
        "population_epsilon": (caps.epsilon, to_epsilon(population.cap_units)),
        "population_delta": (caps.delta, to_delta(population.delta_cap_units)),
    }
    for field, (value, current) in asked.items():
        if value is not None and abs(value - current) > 1e-12 * max(1.0, current):
            raise ApiError(
                409, "population_caps_differ",
                f"this dataset joins population {population.name!r}, whose {field} is "
                f"{current:g}, not {value:g}; leave {field} out (the population's caps hold "
                "for all its datasets) or change them with `unseen populations set` / "
                "`unseen populations team`",
            )  # fmt: skip


def get_population(session: Session, name: str) -> Population:
    population = session.scalar(select(Population).where(Population.name == name))
    if population is None:
        names = ", ".join(session.scalars(select(Population.name).order_by(Population.name)))
        raise not_found("population", name, f"known populations: {names or 'none yet'}")
    return population


def population_of(session: Session, name: str) -> Population:
    """A population by its name, or by the name of a dataset of it."""
    dataset = session.scalar(select(Dataset).where(Dataset.name == name))
    if dataset is not None:
        return dataset.population
    return get_population(session, name)


def dataset_names(session: Session, population_id: str) -> list[str]:
    query = select(Dataset.name).where(Dataset.population_id == population_id)
    return list(session.scalars(query.order_by(Dataset.name)))


def _units(epsilon: float, delta: float | None) -> tuple[int, int | None]:
    try:
        return cap_units(epsilon), None if delta is None else delta_cap_units(delta)
    except BudgetError as exc:
        raise ApiError(422, "bad_cap", str(exc)) from exc


def set_team_cap(
    session: Session, team: Team, population: Population, epsilon: float, delta: float | None
) -> Budget:
    """Set a team's caps on a population. Rows are locked population first, like reservations."""
    if team.contest_id != population.contest_id:
        raise ApiError(
            409, "other_contest",
            f"team {team.name!r} and population {population.name!r} are in different contests",
        )  # fmt: skip
    units, delta_units = _units(epsilon, delta)
    pool = session.scalars(
        select(Population).where(Population.id == population.id).with_for_update()
    ).one()
    session.refresh(pool)
    budget = session.scalars(
        select(Budget)
        .where(Budget.team_id == team.id, Budget.population_id == population.id)
        .with_for_update()
    ).one()
    session.refresh(budget)
    what = f"team {team.name!r} on population {population.name!r}"
    _check_cap("ε", what, units, budget.cap_units, budget.spent_units, budget.reserved_units,
               pool, to_epsilon)  # fmt: skip
    budget.cap_units = units
    if delta_units is not None:
        _check_cap("δ", what, delta_units, budget.delta_cap_units, budget.delta_spent_units,
                   budget.delta_reserved_units, pool, to_delta)  # fmt: skip
        budget.delta_cap_units = delta_units
    session.flush()
    return budget


def _check_cap(
    kind: str,
    what: str,
    new: int,
    cap: int,
    spent: int,
    reserved: int,
    pool: Population,
    shown: Callable[[int], float],
) -> None:
    """A team's cap: not below what it spent and holds; raised, not past what is left."""
    used = spent + reserved
    if new < used:
        raise ApiError(
            409, "cap_below_spent",
            f"{what} has spent {kind}={shown(spent):g} and holds {shown(reserved):g} in "
            f"running jobs; a cap below {shown(used):g} would go negative: set at least that",
            spent=shown(spent), reserved=shown(reserved),
        )  # fmt: skip
    if kind == "ε":
        left = remaining_units(pool.cap_units, pool.spent_units, pool.reserved_units)
        pool_cap = pool.cap_units
    else:
        left = remaining_units(pool.delta_cap_units, pool.delta_spent_units,
                               pool.delta_reserved_units)  # fmt: skip
        pool_cap = pool.delta_cap_units
    if new > cap and new - used > left:
        raise ApiError(
            409, "cap_above_population",
            f"population {pool.name!r} has {kind}={shown(left):g} left of its contest-wide cap "
            f"{shown(pool_cap):g} (over all teams), so {what} can be given at most "
            f"{shown(used + left):g}; ask for less, or raise the population's cap first "
            f"(`unseen populations set {pool.name}`)",
            population_remaining=shown(left),
        )  # fmt: skip


def set_population_cap(
    session: Session, population: Population, epsilon: float, delta: float | None
) -> Population:
    """Set the contest-wide caps; never below what all teams spent and hold."""
    units, delta_units = _units(epsilon, delta)
    pool = session.scalars(
        select(Population).where(Population.id == population.id).with_for_update()
    ).one()
    session.refresh(pool)
    checks = [("ε", units, pool.spent_units, pool.reserved_units, to_epsilon)]
    if delta_units is not None:
        checks.append(("δ", delta_units, pool.delta_spent_units, pool.delta_reserved_units,
                       to_delta))  # fmt: skip
    for kind, new, spent, reserved, show in checks:
        if new < spent + reserved:
            raise ApiError(
                409, "cap_below_spent",
                f"population {pool.name!r}: the teams have spent {kind}={show(spent):g} and "
                f"hold {show(reserved):g} in running jobs; a cap below {show(spent + reserved):g} "
                "would go negative: set at least that",
                spent=show(spent), reserved=show(reserved),
            )  # fmt: skip
    pool.cap_units = units
    if delta_units is not None:
        pool.delta_cap_units = delta_units
    session.flush()
    return pool

"""Privacy budgets, kept per team and population: a team reads its own; organizers read all,
set team caps, and set each population's contest-wide cap (``api.populations``)."""

from __future__ import annotations

from collections import defaultdict

from fastapi import APIRouter, Response
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from api import crud
from api.auth import CurrentUser, Organizer
from api.context import AppContext, Context
from api.models import Budget, Contest, Dataset, Population, Team, User
from api.populations import (
    dataset_names,
    get_population,
    population_of,
    set_population_cap,
    set_team_cap,
)
from api.schemas import BudgetCapIn, BudgetOut, PopulationCapIn, PopulationOut
from api.views import budget_view, model_response, population_view

router = APIRouter(prefix="/v1", tags=["budget"])


@router.get("/budget", response_model=list[BudgetOut])
def get_budgets(ctx: Context, user: CurrentUser) -> Response:
    """Budgets of the caller's team (organizers: every team), one per population with the
    datasets it covers, and what the population has left contest-wide. Sent as built: a hot
    path."""
    return model_response(budgets(ctx, user))


def _datasets_by_population(session: Session) -> dict[str, list[str]]:
    found: dict[str, list[str]] = defaultdict(list)
    query = select(Dataset.population_id, Dataset.name).order_by(Dataset.name)
    for population_id, name in session.execute(query):
        found[population_id].append(name)
    return found


def budgets(ctx: AppContext, user: User) -> list[BudgetOut]:
    query = (
        select(Budget, Team.name, Population)
        .join(Team, Budget.team_id == Team.id)
        .join(Population, Budget.population_id == Population.id)
        .order_by(Team.name, Population.name)
    )
    if user.role != "organizer":
        query = query.where(Budget.team_id == user.team_id)
    with ctx.db.read() as session:
        datasets = _datasets_by_population(session)
        return [
            budget_view(budget, team, population, datasets[population.id])
            for budget, team, population in session.execute(query)
        ]


@router.put("/teams/{team}/budgets/{dataset}")
def set_cap(
    team: str, dataset: str, body: BudgetCapIn, ctx: Context, actor: Organizer
) -> BudgetOut:
    """Set a team's cap on a population, named by itself or by any dataset of it. Refused
    below what the team spent and holds, and (when raised) past what the population has left
    contest-wide on top of that."""
    with ctx.db.transaction() as session:
        found_team = crud.get_team(session, team)
        population = population_of(session, dataset)
        budget = set_team_cap(session, found_team, population, body.epsilon, body.delta)
        crud.audit(session, actor, "budget.cap_set", team=found_team.name, dataset=dataset,
                   population=population.name, epsilon=body.epsilon, delta=body.delta)  # fmt: skip
        return budget_view(
            budget, found_team.name, population, dataset_names(session, population.id)
        )


def populations(ctx: AppContext) -> list[PopulationOut]:
    team_caps = (
        select(Budget.population_id, func.sum(Budget.cap_units))
        .group_by(Budget.population_id)
    )  # fmt: skip
    query = (
        select(Population, Contest.name)
        .outerjoin(Contest, Population.contest_id == Contest.id)
        .order_by(Population.name)
    )
    with ctx.db.read() as session:
        totals = dict(session.execute(team_caps).tuples().all())
        datasets = _datasets_by_population(session)
        return [
            population_view(p, contest, datasets[p.id], int(totals.get(p.id) or 0))
            for p, contest in session.execute(query)
        ]


@router.get("/populations")
def list_populations(ctx: Context, actor: Organizer) -> list[PopulationOut]:
    """Every population: its datasets, its contest-wide ledger over all teams, the team caps."""
    return populations(ctx)


@router.put("/populations/{population}")
def set_population(
    population: str, body: PopulationCapIn, ctx: Context, actor: Organizer
) -> PopulationOut:
    """Set a population's contest-wide cap (the total the data provider agreed to); refused
    below what all teams together spent and hold."""
    with ctx.db.transaction() as session:
        found = set_population_cap(
            session, get_population(session, population), body.epsilon, body.delta
        )
        crud.audit(session, actor, "population.cap_set", population=found.name,
                   epsilon=body.epsilon, delta=body.delta)  # fmt: skip
        team_caps = session.scalar(
            select(func.sum(Budget.cap_units)).where(Budget.population_id == found.id)
        )
        contest = session.get(Contest, found.contest_id) if found.contest_id else None
        return population_view(
            found, contest.name if contest else None, dataset_names(session, found.id),
            int(team_caps or 0),
        )  # fmt: skip

"""Privacy budgets: a team reads its own; organizers read all and set caps."""

from __future__ import annotations

from fastapi import APIRouter, Response
from sqlalchemy import select

from api import crud
from api.auth import CurrentUser, Organizer
from api.context import AppContext, Context
from api.models import Budget, Dataset, Team, User
from api.schemas import BudgetCapIn, BudgetOut
from api.views import budget_view, model_response
from privacy.budget import cap_units, delta_cap_units

router = APIRouter(prefix="/v1", tags=["budget"])


@router.get("/budget", response_model=list[BudgetOut])
def get_budgets(ctx: Context, user: CurrentUser) -> Response:
    """Budgets of the caller's team (organizers: every team), sent as built: a hot path."""
    return model_response(budgets(ctx, user))


def budgets(ctx: AppContext, user: User) -> list[BudgetOut]:
    query = (
        select(Budget, Team.name, Dataset.name)
        .join(Team, Budget.team_id == Team.id)
        .join(Dataset, Budget.dataset_id == Dataset.id)
        .order_by(Team.name, Dataset.name)
    )
    if user.role != "organizer":
        query = query.where(Budget.team_id == user.team_id)
    with ctx.db.read() as session:
        return [budget_view(*row) for row in session.execute(query)]


@router.put("/teams/{team}/budgets/{dataset}")
def set_cap(
    team: str, dataset: str, body: BudgetCapIn, ctx: Context, actor: Organizer
) -> BudgetOut:
    with ctx.db.transaction() as session:
        found_team = crud.get_team(session, team)
        found_dataset = crud.get_dataset(session, dataset)
        budget = crud.budget_row(session, found_team.id, found_dataset.id)
        budget.cap_units = cap_units(body.epsilon)
        if body.delta is not None:
            budget.delta_cap_units = delta_cap_units(body.delta)
        crud.audit(
            session,
            actor,
            "budget.cap_set",
            team=found_team.name,
            dataset=dataset,
            epsilon=body.epsilon,
            delta=body.delta,
        )
        session.flush()
        return budget_view(budget, found_team.name, found_dataset.name)

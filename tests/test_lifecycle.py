"""The job lifecycle: one table (runner.lifecycle), one function that performs it
(api.job_lifecycle.perform), on a real SQLite and a real PostgreSQL database.

Every move from every state: allowed exactly where the table says, with its state, its audit
entries and its budget effect on both ledgers; refused everywhere else with nothing changed.
And nothing but that function writes a job's state."""

from __future__ import annotations

import ast
import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from api import job_lifecycle
from api.db import Database
from api.models import AuditEvent, Budget, Dataset, Job, Population, Team, User
from runner.lifecycle import (
    INITIAL_STATES,
    TERMINAL_STATES,
    TRANSITIONS,
    BudgetEffect,
    JobState,
    Move,
    allowed,
    mermaid,
    table,
)
from tests.conftest import DATABASES, ROOT, postgres_database

UNITS = 700_000  # the job's reservation: ε = 0.7


def test_the_table_is_closed_and_every_state_is_reachable() -> None:
    reachable = set(INITIAL_STATES) | {row.target for row in TRANSITIONS.values()}
    assert reachable == set(JobState)
    for row in TRANSITIONS.values():
        assert row.sources and not row.sources & TERMINAL_STATES, row  # terminal means final
    for source, target in itertools.product(JobState, JobState):
        moves = allowed(source, target)
        expected = [m for m, r in TRANSITIONS.items() if source in r.sources and r.target == target]
        assert moves == expected
    # the only budget effects: noise drawn or data touched commits, untouched failure returns
    assert {m for m, r in TRANSITIONS.items() if r.budget is BudgetEffect.COMMIT} == {
        Move.COMPLETE, Move.FAIL_CHARGED
    }  # fmt: skip
    assert {m for m, r in TRANSITIONS.items() if r.budget is BudgetEffect.RETURN} == {
        Move.FAIL_UNTOUCHED
    }  # fmt: skip


def test_the_docs_diagram_is_the_table() -> None:
    text = (ROOT / "docs" / "lifecycle.md").read_text()
    assert f"```mermaid\n{mermaid()}\n```\n\n{table()}" in text, (
        "regenerate the diagram and table: python -m runner.lifecycle"
    )


@pytest.fixture(params=DATABASES)
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    if request.param == "sqlite":
        db = Database(f"sqlite:///{tmp_path / 'lifecycle.db'}")
        yield db
        db.dispose()
        return
    with postgres_database() as url:
        db = Database(url)
        yield db
        db.dispose()


def _job_in(db: Database, state: JobState) -> str:
    """A job of one team on one dataset, in ``state``, with its ε reserved on both ledgers."""
    with db.transaction() as session:
        population = Population(name="cards", cap_units=10_000_000, team_cap_units=5_000_000,
                                reserved_units=UNITS)  # fmt: skip
        session.add(population)
        session.flush()
        team = Team(name="alpha")
        session.add(team)
        session.flush()
        user = User(name="alice", role="contestant", team_id=team.id)
        dataset = Dataset(name="cards", unit_column="card_id", blocks=4, rows=10, units=5,
                          directory="/nowhere", sample_path="/nowhere", sample_rows=1,
                          population_id=population.id)  # fmt: skip
        session.add_all([user, dataset])
        session.flush()
        session.add(Budget(team_id=team.id, population_id=population.id, cap_units=5_000_000,
                           reserved_units=UNITS))  # fmt: skip
        job = Job(team_id=team.id, user_id=user.id, dataset_id=dataset.id, state=state.value,
                  code="", outputs=[], combine="mean", epsilon=0.7, charge_units=UNITS)  # fmt: skip
        session.add(job)
        session.flush()
        return job.id


def _ledgers(db: Database) -> tuple[tuple[int, int], tuple[int, int]]:
    with db.read() as session:
        budget = session.scalars(select(Budget)).one()
        population = session.scalars(select(Population)).one()
        return (
            (budget.spent_units, budget.reserved_units),
            (population.spent_units, population.reserved_units),
        )


def _actions(db: Database) -> list[str]:
    with db.read() as session:
        return list(session.scalars(select(AuditEvent.action).order_by(AuditEvent.seq)))


@pytest.mark.parametrize("move", list(Move))
def test_every_move_from_every_state(database: Database, move: Move) -> None:
    row = TRANSITIONS[move]
    for state in JobState:
        with database.transaction() as session:  # a clean slate per source state
            for table in (AuditEvent, Job, Budget, Dataset, User, Team, Population):
                session.query(table).delete()
        job_id = _job_in(database, state)
        before_audit, before_ledgers = _actions(database), _ledgers(database)
        with database.transaction() as session:
            job = session.get_one(Job, job_id)
            moved = job_lifecycle.perform(session, job, move)
        with database.read() as session:
            after = session.get_one(Job, job_id).state
        audit, ledgers = _actions(database)[len(before_audit) :], _ledgers(database)
        if state not in row.sources:
            assert not moved, (move, state)
            assert (after, audit, ledgers) == (state.value, [], before_ledgers), (move, state)
            continue
        assert moved and after == row.target.value, (move, state)
        budget_audit = {BudgetEffect.COMMIT: ["budget.charged"],
                        BudgetEffect.RETURN: ["budget.returned"]}.get(row.budget, [])  # fmt: skip
        assert audit == [*budget_audit, row.audit], (move, state)
        expected = {
            BudgetEffect.NONE: ((0, UNITS), (0, UNITS)),
            BudgetEffect.COMMIT: ((UNITS, 0), (UNITS, 0)),
            BudgetEffect.RETURN: ((0, 0), (0, 0)),
        }[row.budget]
        assert ledgers == expected, (move, state)


def test_a_move_cannot_be_won_twice(database: Database) -> None:
    """Two workers claiming, or a completion racing a failure: the loser changes nothing."""
    job_id = _job_in(database, JobState.QUEUED)
    with database.transaction() as session:
        job = session.get_one(Job, job_id)
        assert job_lifecycle.perform(session, job, Move.CLAIM)
        assert not job_lifecycle.perform(session, job, Move.CLAIM)
    with database.transaction() as session:
        job = session.get_one(Job, job_id)
        assert job_lifecycle.perform(session, job, Move.COMPLETE)
        assert not job_lifecycle.perform(session, job, Move.FAIL_UNTOUCHED)
    assert _ledgers(database) == ((UNITS, 0), (UNITS, 0))  # charged once, never returned
    with database.read() as session:
        assert session.scalar(select(func.count()).select_from(AuditEvent)) == 3
    with database.transaction() as session, pytest.raises(ValueError, match="move's to set"):
        job_lifecycle.perform(session, session.get_one(Job, job_id), Move.RELEASE, state="x")


# --- nothing else writes Job.state ------------------------------------------------------

#: Where a job is *created* in an initial state (the only other writes of a state).
CREATION_SITES = {("api/crud.py", "QUEUED"), ("api/routes/jobs.py", "RELEASED")}


def _state_writes(path: Path) -> Iterator[str]:
    """Each write of a state in the file: ``x.state = ...``, ``update(...).values(state=...)``
    and ``Job(state=...)`` (named by the state it creates)."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Assign | ast.AugAssign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(isinstance(t, ast.Attribute) and t.attr == "state" for t in targets):
                yield f"assigns {ast.unparse(node)}"
        if isinstance(node, ast.Call) and any(k.arg == "state" for k in node.keywords):
            value = ast.unparse(next(k.value for k in node.keywords if k.arg == "state"))
            if isinstance(node.func, ast.Attribute) and node.func.attr == "values":
                yield f"updates to {value}"
            if isinstance(node.func, ast.Name) and node.func.id == "Job":
                yield value.split(".")[1] if value.startswith("JobState.") else value


def test_nothing_but_the_lifecycle_writes_a_job_state() -> None:
    found = set()
    for path in sorted((ROOT / "api").rglob("*.py")) + sorted((ROOT / "runner").rglob("*.py")):
        relative = str(path.relative_to(ROOT))
        if relative == "api/job_lifecycle.py" or "/migrations/" in relative:
            continue
        found |= {(relative, write) for write in _state_writes(path)}
    assert found == CREATION_SITES, found
    lifecycle = list(_state_writes(ROOT / "api" / "job_lifecycle.py"))
    assert lifecycle == ["updates to row.target.value"], lifecycle  # the one write

"""The job lifecycle: one table (runner.lifecycle), one function that performs it
(api.job_lifecycle.perform), on a real SQLite and a real PostgreSQL database.

Every move from every state: allowed exactly where the table says, with its state, its audit
entries and its budget effect on both ledgers; refused everywhere else with nothing changed.
Nothing but that function writes a job's state. And the worker's moves through the real app,
its sandbox a fake (tests/fakes.py): a job that runs, one no block of which ran, one that
failed after some block ran. No Docker: `make unit` runs all of it."""

from __future__ import annotations

import ast
import itertools
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

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
from sandbox.container import BlockRun, RunEnd
from tests.conftest import (
    DATABASES,
    ROOT,
    Deployment,
    SodaData,
    postgres_database,
    start_fake_deployment,
)
from tests.fakes import FakeSandbox, InProcessServer, printed

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


@pytest.fixture(scope="module", params=DATABASES)
def migrated(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Database]:
    """One database per kind for the module: making and migrating one costs a few tenths of
    a second, too much to pay for every test of `make unit`."""
    if request.param == "sqlite":
        db = Database(f"sqlite:///{tmp_path_factory.mktemp('lifecycle') / 'lifecycle.db'}")
        yield db
        db.dispose()
        return
    with postgres_database() as url:
        db = Database(url)
        yield db
        db.dispose()


def _empty(db: Database) -> None:
    with db.transaction() as session:
        for table in (AuditEvent, Job, Budget, Dataset, User, Team, Population):
            session.query(table).delete()


@pytest.fixture
def database(migrated: Database) -> Database:
    """The module's database, emptied: each test starts from nothing."""
    _empty(migrated)
    return migrated


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
        _empty(database)  # a clean slate per source state
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


# --- the lifecycle through the app, its sandbox a fake ------------------------------------

QUICK = "def analyze(df):\n    return {'n': float(len(df))}\n"
OUTPUTS = [{"name": "n", "lo": 0, "hi": 100000}]


@pytest.fixture(scope="module")
def served(soda: SodaData, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    """The real app and worker in this process, over HTTP; its sandbox is the deployment's
    FakeSandbox, whose ``run`` a test sets to say how the blocks end."""
    deployed = start_fake_deployment(tmp_path_factory.mktemp("lifecycle"), soda,
                                     sandbox=FakeSandbox())  # fmt: skip
    yield deployed
    deployed.server.stop()


def _sandbox(served: Deployment) -> FakeSandbox:
    assert isinstance(served.server, InProcessServer)
    return served.server.sandbox


def _moves(served: Deployment, job_id: str) -> list[str]:
    """The job's lifecycle entries in the audit chain, in order."""
    entries = served.organizer.audit(job=job_id)
    return [e["action"] for e in sorted(entries, key=lambda e: e["seq"])
            if e["action"].startswith(("job.", "budget."))]  # fmt: skip


def _ended(served: Deployment, run: Callable[[Path, Path], BlockRun] | None) -> dict[str, Any]:
    _sandbox(served).run = run
    job = served.contestant.submit("cards_tiny", QUICK, OUTPUTS, 0.1)
    done = served.contestant.wait(job["id"], timeout=60, interval=0.05)
    return {**done, "moves": _moves(served, job["id"])}


def test_a_job_goes_queued_running_review_released_and_is_charged_once(
    served: Deployment,
) -> None:
    done = _ended(served, None)
    assert (done["state"], done["charge"]) == ("awaiting_review", "charged"), done
    assert served.organizer.release(done["id"])["state"] == "released"
    assert _moves(served, done["id"]) == [
        "job.submitted", "budget.reserved", "job.started", "budget.charged",
        "job.awaiting_review", "job.released",
    ]  # fmt: skip


def test_a_sandbox_that_runs_no_block_fails_the_job_and_returns_its_budget(
    served: Deployment,
) -> None:
    broken = BlockRun(RunEnd.SANDBOX_ERROR, None, b"", b"no engine", 0.0, sandbox="fake/memory")
    done = _ended(served, lambda _code, _block: broken)
    assert (done["state"], done["charge"]) == ("failed", "returned"), done
    assert done["moves"][-2:] == ["budget.returned", "job.failed"]


def test_a_job_whose_code_ran_on_some_block_is_charged_though_it_failed(
    served: Deployment,
) -> None:
    def first_runs(_code: Path, block: Path) -> BlockRun:
        if block.name.endswith("00000.parquet"):
            return BlockRun(RunEnd.EXITED, 0, printed({"n": 3.0}), b"", 0.01)
        return BlockRun(RunEnd.SANDBOX_ERROR, None, b"", b"engine gone", 0.0)

    done = _ended(served, first_runs)
    assert (done["state"], done["charge"]) == ("failed", "charged"), done
    assert done["moves"][-2:] == ["budget.charged", "job.failed"]

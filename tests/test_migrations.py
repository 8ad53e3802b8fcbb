"""Schema migrations: a fresh database on SQLite and on PostgreSQL is brought to exactly the
models' schema, upgrading twice changes nothing, and a database made before migrations existed
is refused with the fix instead of being altered blindly."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, inspect

from api.db import Database
from api.migrate import SchemaError, current_revision, upgrade
from api.models import Base
from tests.conftest import DATABASES, postgres_database


@pytest.fixture(params=DATABASES)
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'unseen.db'}"
    else:
        with postgres_database() as database:
            yield database


def test_migrations_build_exactly_the_models_schema(url: str) -> None:
    database = Database(url)
    try:
        with database.engine.connect() as connection:
            differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
        assert differences == []
        assert current_revision(database.engine) is not None
        upgrade(database.engine)  # a second start: nothing to do, nothing breaks
        assert "budgets" in inspect(database.engine).get_table_names()
    finally:
        database.dispose()


def test_a_database_made_without_migrations_is_refused_with_the_fix(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = create_engine(url)
    Base.metadata.create_all(engine)
    engine.dispose()
    with pytest.raises(SchemaError, match="fresh data directory"):
        Database(url)


def test_server_migrate_command_reports_the_revision_or_the_fix(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    def migrate(url: str) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "UNSEEN_DATABASE_URL": url}
        command = [sys.executable, "-m", "api.cli", "migrate", "--data-dir", str(tmp_path)]
        return subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)

    fresh = migrate(f"sqlite:///{tmp_path / 'fresh.db'}")
    assert fresh.returncode == 0 and "schema revision" in fresh.stdout
    old = tmp_path / "old.db"
    engine = create_engine(f"sqlite:///{old}")
    Base.metadata.create_all(engine)
    engine.dispose()
    refused = migrate(f"sqlite:///{old}")
    assert refused.returncode == 1
    assert "fresh data directory" in refused.stderr and "Traceback" not in refused.stderr


def test_upgrading_from_0001_keeps_every_users_token_valid(url: str) -> None:
    """0002 moved tokens to their own table: a user's existing token must still be found,
    and downgrading puts it back."""
    from alembic import command
    from sqlalchemy import text

    from api.auth import hash_token
    from api.migrate import alembic_config

    engine = create_engine(url)
    try:
        upgrade(engine, "0001")
        with engine.begin() as connection:
            connection.execute(text(
                "INSERT INTO users (id, name, role, team_id, token_hash, created_at) VALUES "
                "('u1', 'olga', 'organizer', NULL, :hash, CURRENT_TIMESTAMP)"
            ), {"hash": hash_token("uns_old-token")})  # fmt: skip
        upgrade(engine)
        with engine.connect() as connection:
            rows = connection.execute(text("SELECT user_id, token_hash FROM api_tokens")).all()
        assert rows == [("u1", hash_token("uns_old-token"))]
        with engine.begin() as connection:
            config = alembic_config()
            config.attributes["connection"] = connection
            command.downgrade(config, "0001")
        with engine.connect() as connection:
            back = connection.execute(text("SELECT token_hash FROM users")).scalar_one()
        assert back == hash_token("uns_old-token")
    finally:
        engine.dispose()


def test_entries_written_before_the_chain_existed_are_chained_in_order(url: str) -> None:
    from sqlalchemy import text

    from api import audit_log
    from api.db import Database

    engine = create_engine(url)
    try:
        upgrade(engine, "0002")
        with engine.begin() as connection:
            for index, action in enumerate(["team.created", "dataset.registered", "login"]):
                connection.execute(text(
                    "INSERT INTO audit_events (at, actor, action, detail) VALUES "
                    "(CURRENT_TIMESTAMP, 'olga', :action, :detail)"
                ), {"action": action, "detail": f'{{"n": {index}}}'})  # fmt: skip
    finally:
        engine.dispose()
    database = Database(url)  # upgrades to head
    try:
        with database.transaction() as session:
            audit_log.append(session, "olga", "after.upgrade", {})
        with database.read() as session:
            report = audit_log.verify(session)
        assert report.ok and report.entries == 4, report
    finally:
        database.dispose()


def _at_0004_with_budgets(url: str) -> None:
    """A contest with two teams and one dataset at revision 0004: team t1 has ε=5 of 8 left
    (spent 7, 0.5 reserved by a running job), t2's cap was lowered below what it spent."""
    from sqlalchemy import text

    engine = create_engine(url)
    try:
        upgrade(engine, "0004")
        with engine.begin() as connection:
            for statement in (
                "INSERT INTO contests (id, name, description, created_at) "
                "VALUES ('c1', 'cup', '', CURRENT_TIMESTAMP)",
                "INSERT INTO teams (id, name, created_at, contest_id) VALUES "
                "('t1', 'alpha', CURRENT_TIMESTAMP, 'c1'), ('t2', 'beta', CURRENT_TIMESTAMP, 'c1')",
                "INSERT INTO users (id, name, role, team_id, created_at, identity_verified) "
                "VALUES ('u1', 'al', 'contestant', 't1', CURRENT_TIMESTAMP, false)",
                "INSERT INTO datasets (id, name, description, unit_column, columns, bounds, "
                "key_sets, blocks, rows, units, directory, sample_path, sample_rows, "
                "team_cap_units, team_delta_cap_units, node, created_at, contest_id) VALUES "
                "('d1', 'cards', '', 'card_id', '{}', '{}', '{}', 2, 10, 5, '/x', '/y', 3, "
                "10000000, 1000000000, 'local', CURRENT_TIMESTAMP, 'c1')",
                "INSERT INTO budgets (team_id, dataset_id, cap_units, spent_units, "
                "reserved_units, delta_cap_units, delta_spent_units, delta_reserved_units) "
                "VALUES ('t1', 'd1', 80000000, 70000000, 500000, 0, 0, 0), "
                "('t2', 'd1', 10000000, 12000000, 0, 0, 0, 0)",
                # A job pointing at the dataset: SQLite rebuilds the table under it.
                "INSERT INTO jobs (id, team_id, user_id, dataset_id, mode, target, state, code, "
                "outputs, combine, epsilon, charge_units, delta, delta_units, blocks_done, "
                "blocks_total, noise_drawn, created_at, updated_at) VALUES ('j1', 't1', 'u1', "
                "'d1', 'aggregate', 'full', 'running', '', '[]', 'mean', 0.5, 500000, 0, 0, 0, "
                "2, false, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)",
            ):
                connection.execute(text(statement))
    finally:
        engine.dispose()


def test_0005_carries_each_dataset_over_as_its_own_population(url: str) -> None:
    """Budgets per dataset become budgets per population, spent and reserved as they were;
    the contest-wide cap is at least what today's teams could spend together, and both
    ledgers then hold: t1 has ε=0.5 left, t2 (over its lowered cap) none."""
    from sqlalchemy import select

    from api import crud
    from api.errors import ApiError
    from api.models import Budget, Dataset, Job, Population, Team

    _at_0004_with_budgets(url)
    database = Database(url)  # upgrades to head
    try:
        with database.read() as session:
            (population,) = session.scalars(select(Population)).all()
            dataset = session.scalars(select(Dataset)).one()
            ledgers = {b.team_id: b for b in session.scalars(select(Budget))}
        assert population.name == "cards" and dataset.population_id == population.id
        assert dataset.content_sha256 is None
        assert (population.spent_units, population.reserved_units) == (82_000_000, 500_000)
        assert population.cap_units == 100_000_000  # max(8 + 12, the default 100)
        assert population.team_cap_units == 10_000_000
        assert {t: (b.cap_units, b.spent_units, b.reserved_units) for t, b in ledgers.items()} == {
            "t1": (80_000_000, 70_000_000, 500_000), "t2": (10_000_000, 12_000_000, 0)
        }  # fmt: skip
        with database.transaction() as session:
            alpha, beta = session.get_one(Team, "t1"), session.get_one(Team, "t2")
            cards = session.get_one(Dataset, "d1")
            crud.reserve_budget(session, alpha, cards, 9_500_000)
            with pytest.raises(ApiError, match="team 'beta'"):
                crud.reserve_budget(session, beta, cards, 1_000_000)
        with database.transaction() as session:
            crud.return_budget(session, session.get_one(Job, "j1"))  # the job's 0.5 moves back
        with database.read() as session:
            pool = session.scalars(select(Population)).one()
            alpha_ledger = session.scalars(select(Budget).where(Budget.team_id == "t1")).one()
        assert (pool.reserved_units, alpha_ledger.reserved_units) == (9_500_000, 9_500_000)
    finally:
        database.dispose()


def test_0005_downgrades_to_ledgers_per_dataset(url: str) -> None:
    from alembic import command
    from sqlalchemy import text

    from api.migrate import alembic_config

    _at_0004_with_budgets(url)
    engine = create_engine(url)
    try:
        upgrade(engine)
        with engine.begin() as connection:
            config = alembic_config()
            config.attributes["connection"] = connection
            command.downgrade(config, "0004")
        with engine.connect() as connection:
            rows = connection.execute(text(
                "SELECT team_id, dataset_id, cap_units, spent_units FROM budgets ORDER BY team_id"
            )).all()  # fmt: skip
            caps = connection.execute(text("SELECT team_cap_units FROM datasets")).all()
        assert [tuple(r) for r in rows] == [("t1", "d1", 80_000_000, 70_000_000),
                                            ("t2", "d1", 10_000_000, 12_000_000)]  # fmt: skip
        assert [tuple(c) for c in caps] == [(10_000_000,)]
    finally:
        engine.dispose()


def test_0009_takes_each_jobs_charge_from_its_state_and_the_audit_log(url: str) -> None:
    """Finished full-data jobs were charged, except a failed one whose reservation the audit
    log shows returned; a running job and a sample run have no budget effect yet."""
    from sqlalchemy import text

    _at_0004_with_budgets(url)  # job j1 running
    engine = create_engine(url)
    try:
        upgrade(engine, "0008")
        job = ("INSERT INTO jobs (id, team_id, user_id, dataset_id, mode, target, state, code, "
               "outputs, combine, epsilon, charge_units, delta, delta_units, blocks_done, "
               "blocks_total, noise_drawn, created_at, updated_at) VALUES ('{id}', 't1', 'u1', "
               "'d1', 'aggregate', '{target}', '{state}', '', '[]', 'mean', 0.5, 500000, 0, 0, "
               "0, 2, false, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)")  # fmt: skip
        with engine.begin() as connection:
            rows = [("j2", "full", "failed"), ("j3", "full", "failed"),
                    ("j4", "full", "released"), ("j5", "sample", "released")]  # fmt: skip
            for id_, target, state in rows:
                connection.execute(text(job.format(id=id_, target=target, state=state)))
            connection.execute(text(
                "INSERT INTO audit_events (seq, prev_hash, hash, at, actor, action, detail) "
                "VALUES (1, '0', '1', CURRENT_TIMESTAMP, NULL, 'budget.returned', "
                "'{\"job\": \"j2\", \"epsilon\": 0.5}')"
            ))  # fmt: skip
        upgrade(engine)
        with engine.connect() as connection:
            found = dict(connection.execute(text("SELECT id, budget_effect FROM jobs")).all())
        assert found == {"j1": None, "j2": "return", "j3": "commit", "j4": "commit", "j5": None}
    finally:
        engine.dispose()

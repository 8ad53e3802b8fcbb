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
from tests.conftest import postgres_database


@pytest.fixture(params=["sqlite", "postgresql"])
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

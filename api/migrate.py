"""Schema migrations with Alembic: every server start brings the database to the newest schema.

The migration scripts live in ``api/migrations/versions``; ``upgrade`` runs them on the given
engine's connection (so SQLite keeps its pragmas and ``BEGIN IMMEDIATE``), and a database made
before migrations existed is refused with the fix rather than altered blindly.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, Engine, inspect, text

MIGRATIONS = Path(__file__).with_name("migrations")


class SchemaError(RuntimeError):
    """The database cannot be brought to this version's schema; the message names the fix."""


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


@contextmanager
def _migrating(engine: Engine) -> Iterator[Connection]:
    """One transaction for the migrations. On SQLite, foreign keys are off meanwhile (SQLite
    alters a table by dropping it for a copy, which rows pointing at it would refuse) and are
    checked in full before the commit, as SQLite's own procedure for altering tables says."""
    if engine.dialect.name != "sqlite":
        with engine.begin() as connection:
            yield connection
        return
    with engine.connect() as connection:
        driver = connection.connection.driver_connection
        enforced = driver.execute("PRAGMA foreign_keys").fetchone()[0]  # type: ignore[union-attr]
        driver.execute("PRAGMA foreign_keys=OFF")  # type: ignore[union-attr]  # outside BEGIN
        try:
            with connection.begin():
                yield connection
                broken = connection.execute(text("PRAGMA foreign_key_check")).all()
                if broken:
                    raise SchemaError(f"a migration left rows pointing nowhere: {broken[:5]}")
        finally:
            driver.execute(f"PRAGMA foreign_keys={'ON' if enforced else 'OFF'}")  # type: ignore[union-attr]


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Apply every migration not yet applied, in one transaction."""
    with _migrating(engine) as connection:
        tables = set(inspect(connection).get_table_names())
        if tables - {"alembic_version"} and "alembic_version" not in tables:
            raise SchemaError(
                "this database was made by a version of unseen without migrations; "
                "start from a fresh data directory (or database) and register the data again"
            )
        config = alembic_config()
        config.attributes["connection"] = connection
        command.upgrade(config, revision)

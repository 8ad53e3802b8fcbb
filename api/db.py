"""Database engine and sessions: SQLite by default (WAL, busy timeout), any SQLAlchemy URL works.

SQLite note: pysqlite's own transaction handling is switched off and every *write* transaction
starts with ``BEGIN IMMEDIATE``, so read-check-write sequences (budget reservations) take the
write lock up front instead of failing or interleaving. Reads use a plain ``BEGIN`` on a second
engine so status polls never queue behind writers under WAL.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

from api.migrate import upgrade

#: Connections kept open: as many as request threads can use at once (anyio's pool has 40), so
#: a burst of reads never pays for opening and configuring a new connection.
POOL_SIZE, POOL_OVERFLOW = 40, 20


def _sqlite_engine(url: str, begin: str) -> Engine:
    engine = create_engine(
        url,
        connect_args={"check_same_thread": False, "timeout": 30},
        pool_size=POOL_SIZE,
        max_overflow=POOL_OVERFLOW,
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: sqlite3.Connection, _record: object) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        # Straight to the driver: this runs for every session, and SQLAlchemy's execution
        # machinery would cost more than SQLite's BEGIN itself.
        connection.connection.driver_connection.execute(begin)  # type: ignore[union-attr]

    return engine


class Database:
    """Session factories: ``transaction()`` for writes, ``read()`` for queries."""

    def __init__(self, url: str) -> None:
        if url.startswith("sqlite"):
            self.engine = _sqlite_engine(url, "BEGIN IMMEDIATE")
            self._read_engine = _sqlite_engine(url, "BEGIN")
        else:
            self.engine = create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=30)
            self._read_engine = self.engine
        upgrade(self.engine)
        self._writes = sessionmaker(self.engine, expire_on_commit=False)
        self._reads = sessionmaker(self._read_engine, expire_on_commit=False)

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        with self._writes.begin() as session:
            yield session

    @contextmanager
    def read(self) -> Iterator[Session]:
        with self._reads.begin() as session:
            yield session

    def dispose(self) -> None:
        self.engine.dispose()
        self._read_engine.dispose()

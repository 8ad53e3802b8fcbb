"""The hash-chained audit log on a real database: appends from many threads never fork the
chain (SQLite and PostgreSQL), any change, removal or truncation is detected and located, and
the check is served to organizers only."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from sqlalchemy import text

from api import audit_log
from api.db import Database
from client.api import UnseenError
from tests.conftest import DATABASES, Deployment, postgres_database


@pytest.fixture(params=DATABASES)
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    if request.param == "sqlite":
        db = Database(f"sqlite:///{tmp_path / 'unseen.db'}")
        yield db
        db.dispose()
    else:
        with postgres_database() as url:
            db = Database(url)
            yield db
            db.dispose()


def write(db: Database, count: int, actor: str = "olga") -> None:
    for index in range(count):
        with db.transaction() as session:
            audit_log.append(session, actor, "test.event", {"index": index, "eps": 0.1 * index})


def verify(db: Database) -> audit_log.ChainReport:
    with db.read() as session:
        return audit_log.verify(session)


def test_concurrent_appends_make_one_unbroken_chain(database: Database) -> None:
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(lambda worker: write(database, 25, f"worker-{worker}"), range(8)))
    report = verify(database)
    assert report.ok, report
    assert report.entries == 200
    with database.read() as session:
        seqs = [row[0] for row in session.execute(text("SELECT seq FROM audit_events"))]
    assert sorted(seqs) == list(range(1, 201))


@pytest.mark.parametrize(
    ("tamper", "bad_seq", "says"),
    [
        ("UPDATE audit_events SET detail = '{\"index\": 99}' WHERE seq = 4", 4, "content"),
        ("UPDATE audit_events SET actor = 'mallory' WHERE seq = 2", 2, "content"),
        ("DELETE FROM audit_events WHERE seq = 5", 5, "missing"),
        ("DELETE FROM audit_events WHERE seq = 10", 10, "removed"),
        ("UPDATE audit_events SET prev_hash = hash WHERE seq = 7", 7, "previous-hash"),
    ],
)
def test_any_tampering_is_found_and_located(
    database: Database, tamper: str, bad_seq: int, says: str
) -> None:
    write(database, 10)
    assert verify(database).ok
    with database.transaction() as session:
        session.execute(text(tamper))
    report = verify(database)
    assert not report.ok
    assert report.first_bad_seq == bad_seq and says in report.problem


def test_organizers_verify_the_servers_chain_and_contestants_may_not(
    deployment: Deployment,
) -> None:
    report = deployment.organizer.verify_audit()
    assert report["ok"] and report["entries"] > 0 and len(report["head_hash"]) == 64
    latest = deployment.organizer.audit(limit=1)[0]
    assert latest["seq"] >= report["entries"]  # a job may finish between the two requests
    if latest["seq"] == report["entries"]:
        assert latest["hash"] == report["head_hash"]
    with pytest.raises(UnseenError) as refused:
        deployment.contestant.verify_audit()
    assert refused.value.status == 403

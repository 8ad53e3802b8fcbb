"""Two-person review, for real: two organizers on one server (SQLite and PostgreSQL), the
contest's rule, no second approval by the same person, rejection by any reviewer after a
partial approval, the terminal's view of it, and no review of one's own team's job."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import update

from api.db import Database
from api.errors import ApiError
from api.models import Job, Team, User
from api.review import approve, reject_job
from client.api import UnseenClient, UnseenError
from runner.lifecycle import JobState
from tests.conftest import (
    DATABASES,
    Deployment,
    SodaData,
    postgres_database,
    start_deployment,
)
from tests.test_cli_journey import cli
from tests.test_lifecycle import _job_in

pytestmark = pytest.mark.docker
QUICK = "def analyze(df):\n    return {'n': float(len(df))}\n"
OUTPUTS = [{"name": "n", "lo": 0, "hi": 100000}]


class Desk:
    def __init__(self, d: Deployment, second: UnseenClient) -> None:
        self.d, self.olga, self.omar, self.team = d, d.organizer, second, d.contestant

    def pending(self, epsilon: float = 0.05) -> str:
        job = self.team.submit("cards_tiny", QUICK, OUTPUTS, epsilon)
        assert self.olga.wait(job["id"], timeout=120)["state"] == "awaiting_review"
        return str(job["id"])


@pytest.fixture(scope="module", params=DATABASES)
def desk(
    request: pytest.FixtureRequest, runner_image: str, soda: SodaData,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Desk]:  # fmt: skip
    with postgres_database() if request.param == "postgresql" else _no_database() as url:
        env = {"UNSEEN_DATABASE_URL": url} if url else {}
        d = start_deployment(tmp_path_factory.mktemp(f"review-{request.param}"), soda, env)
        try:
            bootstrap = UnseenClient(d.server.url, d.server.bootstrap_token)
            second = bootstrap.with_token(bootstrap.create_organizer("omar")["token"])
            yield Desk(d, second)
        finally:
            d.server.stop()


class _no_database:
    def __enter__(self) -> str:
        return ""

    def __exit__(self, *_: object) -> None:
        return None


def test_two_organizers_must_both_approve_and_nobody_twice(desk: Desk) -> None:
    contest = next(c for c in desk.olga.contests() if c["name"] == "soda-test")
    assert (contest["approvals_required"], contest["approvals_needed"]) == (None, 2)
    job_id = desk.pending()
    first = desk.olga.release(job_id)
    assert first["state"] == "partially_reviewed"
    assert [a["by"] for a in first["review"]["approvals"]] == ["olga"]
    assert first["review"]["needed"] == 2
    with pytest.raises(UnseenError) as twice:
        desk.olga.release(job_id)
    assert (twice.value.status, twice.value.code) == (409, "already_approved")
    assert "another organizer" in twice.value.message
    seen = desk.team.wait(job_id, until=frozenset({"awaiting_review", "released"}), timeout=60)
    assert (seen["state"], seen["result"]) == ("awaiting_review", None)  # the partial is theirs
    assert job_id in [j["id"] for j in desk.omar.review_queue()]
    done = desk.omar.release(job_id)
    assert done["state"] == "released"
    assert [a["by"] for a in done["review"]["approvals"]] == ["olga", "omar"]
    assert desk.team.job(job_id)["result"] is not None
    approved = desk.olga.audit(action="job.approved", job=job_id)
    released = desk.olga.audit(action="job.released", job=job_id)
    assert [(e["actor"], e["detail"]["approvals"]) for e in approved] == [("olga", 1)]
    assert [(e["actor"], e["detail"]["approvals"]) for e in released] == [("omar", 2)]
    with pytest.raises(UnseenError) as again:
        desk.omar.release(job_id)
    assert (again.value.status, again.value.code) == (409, "not_awaiting_review")


def test_any_reviewer_may_reject_after_a_partial_approval(desk: Desk) -> None:
    job_id = desk.pending()
    desk.olga.release(job_id)
    rejected = desk.omar.reject(job_id, "cells too fine for this contest")
    assert rejected["state"] == "rejected"
    seen = desk.team.wait(job_id, timeout=60)
    assert (seen["state"], seen["review_reason"]) == ("rejected", "cells too fine for this contest")
    assert [e["actor"] for e in desk.olga.audit(action="job.rejected", job=job_id)] == ["omar"]


def test_the_contest_chooses_one_or_two_and_the_terminal_says_what_is_left(
    desk: Desk, tmp_path: Path
) -> None:
    org = {"UNSEEN_URL": desk.d.server.url, "UNSEEN_TOKEN": str(desk.olga.token)}
    job_id = desk.pending()
    approved = cli("review", "release", job_id, home=tmp_path, extra=org)
    assert approved.returncode == 0, approved.stderr
    assert "approved by 1 of 2 needed (olga at" in approved.stdout
    assert "still needed: 1 from another organizer" in approved.stdout
    shown = cli("review", "show", job_id, home=tmp_path, extra=org)
    assert "approved by 1 of 2 needed" in shown.stdout

    one = cli("review", "rule", "soda-test", "--approvals", "1", home=tmp_path, extra=org)
    assert one.returncode == 0 and "needs 1 approval" in one.stdout, one.stderr
    single = desk.pending()
    assert desk.omar.release(single)["state"] == "released"  # one approval is enough now
    with pytest.raises(UnseenError) as bad:
        desk.olga.set_review_rule("soda-test", 3)
    assert bad.value.status == 422
    assert desk.olga.set_review_rule("soda-test", None)["approvals_needed"] == 2
    assert desk.omar.release(job_id)["state"] == "released"  # olga's approval still counts
    assert desk.olga.audit(action="contest.review_rule")


@pytest.fixture(params=DATABASES)
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    with postgres_database() if request.param == "postgresql" else _no_database() as url:
        db = Database(url or f"sqlite:///{tmp_path / 'review.db'}")
        yield db
        db.dispose()


def test_nobody_reviews_their_own_teams_or_their_own_job(database: Database) -> None:
    job_id = _job_in(database, JobState.AWAITING_REVIEW)
    with database.transaction() as session:
        team = session.query(Team).one()
        insider = User(name="ingrid", role="organizer", team_id=team.id)
        outsider = User(name="otto", role="organizer")
        session.add_all([insider, outsider])
    with database.transaction() as session, pytest.raises(ApiError) as own_team:
        approve(session, job_id, session.query(User).filter_by(name="ingrid").one())
    assert (own_team.value.status, own_team.value.code) == (403, "own_team")
    with database.transaction() as session:
        otto = session.query(User).filter_by(name="otto").one()
        session.execute(update(Job).values(user_id=otto.id))  # as if otto had submitted it
    with database.transaction() as session:
        otto = session.query(User).filter_by(name="otto").one()
        with pytest.raises(ApiError) as own_job:
            reject_job(session, job_id, otto, "no")
    assert (own_job.value.status, own_job.value.code) == (403, "own_job")
    with database.read() as session:
        assert session.get_one(Job, job_id).state == JobState.AWAITING_REVIEW.value

"""Infrastructure failures: refused clearly at submission, or failed cleanly with the budget
returned when no noise was drawn; concurrent submissions never overspend a population's
contest-wide cap."""

from __future__ import annotations

import secrets
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import docker
import pytest

from client.api import UnseenClient, UnseenError
from tests.conftest import Deployment, SodaData, start_deployment
from tests.test_cli_run import unseen
from tests.test_populations import COUNT, fresh_source, register

pytestmark = pytest.mark.docker

QUICK = "def analyze(df):\n    return {'n': float(len(df))}\n"
SLOW = "import time\ndef analyze(df):\n    time.sleep(6)\n    return {'n': 1.0}\n"
OUTPUTS = [{"name": "n", "lo": 0, "hi": 100000}]


def tiny_budget(client: UnseenClient) -> dict[str, float]:
    return next(b for b in client.budget() if "cards_tiny" in b["datasets"])


def test_missing_runner_image_is_refused_with_the_fix(
    runner_image: str, soda: SodaData, tmp_path: Path
) -> None:
    env = {"UNSEEN_RUNNER_IMAGE": "unseen-runner:not-built", "UNSEEN_NODE": "no-image"}
    d = start_deployment(tmp_path / "state", soda, env)
    try:
        with pytest.raises(UnseenError) as refused:
            d.contestant.submit("cards_tiny", QUICK, OUTPUTS, 0.5)
        assert refused.value.status == 503
        assert "unseen images build" in refused.value.message
        assert tiny_budget(d.contestant)["reserved"] == 0
        assert d.contestant.jobs() == []
    finally:
        d.server.stop()


def test_image_vanishing_before_the_run_fails_the_job_and_returns_budget(
    runner_image: str, soda: SodaData, tmp_path: Path
) -> None:
    engine = docker.from_env()
    doomed = "unseen-runner:doomed-test"
    engine.images.get(runner_image).tag(doomed)
    env = {"UNSEEN_RUNNER_IMAGE": doomed, "UNSEEN_NODE": "doomed"}
    d = start_deployment(tmp_path / "state", soda, env)
    try:
        blocker = d.contestant.submit("cards_tiny", SLOW, OUTPUTS, 0.5)
        victim = d.contestant.submit("cards_tiny", QUICK, OUTPUTS, 1.0)
        d.contestant.wait(blocker["id"], until=frozenset({"running"}), timeout=60)
        time.sleep(1.0)  # let the blocker's containers be created from the tag
        engine.images.remove(doomed)  # untag only: the image itself stays for other tags
        assert d.contestant.wait(blocker["id"], timeout=120)["state"] == "awaiting_review"
        failed = d.contestant.wait(victim["id"], timeout=120)
        assert failed["state"] == "failed"
        assert failed["error_class"] == "infrastructure"
        assert failed["result"] is None
        detail = d.organizer.job(victim["id"])["error_detail"]
        assert "runner image" in detail or "Docker" in detail
        budget = tiny_budget(d.contestant)
        assert budget["spent"] == pytest.approx(0.5)  # only the job that drew noise
        assert budget["reserved"] == pytest.approx(0.0)
        returned = d.organizer.audit(action="budget.returned", job=victim["id"])
        assert [e["detail"]["epsilon"] for e in returned] == [1.0]
        assert not d.organizer.audit(action="budget.charged", job=victim["id"])
        assert failed["charge"] == "returned"
        assert d.contestant.job(blocker["id"])["charge"] == "charged"
        member = str(d.contestant.token)
        said = unseen("result", victim["id"][:9], url=d.server.url, token=member)
        assert said.returncode == 1 and "infrastructure" in said.stderr
        assert "ε 1 was returned" in said.stderr and "submit it again" in said.stderr
        listed = unseen("jobs", url=d.server.url, token=member)
        row = next(line for line in listed.stdout.splitlines() if victim["id"][:8] in line)
        assert "1 returned" in row and "charged" not in row  # returned ε is not listed as spent
    finally:
        d.server.stop()
        if any(doomed in image.tags for image in engine.images.list()):
            engine.images.remove(doomed)


def rush_one_population(d: Deployment, soda: SodaData, directory: Path) -> None:
    """200 submissions of ε=1 at once, queries and aggregate jobs, from two teams on two
    datasets of one population (two different files, the same people) whose contest-wide cap is
    5, each team's own cap 4: exactly 5 get in, and exactly ε=5 is spent once they ran."""
    tag = secrets.token_hex(3)
    people = f"rush_{tag}"
    files = [fresh_source(soda, directory, rows) for rows in (1200, 1300)]
    names = [f"{people}_a", f"{people}_b"]
    for name, source in zip(names, files, strict=True):
        register(d, soda, name, source, population=people, team_epsilon=4.0,
                 population_epsilon=5.0)  # fmt: skip
    clients = [d.new_contestant(f"team-rush-{tag}-{side}", f"r{side}{tag}") for side in "ab"]

    def attempt(index: int) -> tuple[int, str]:
        client, dataset = clients[index % 2], names[(index // 2) % 2]
        try:
            if index % 4 < 2:
                return index % 2, client.query(dataset, COUNT, 1.0)["id"]
            return index % 2, client.submit(dataset, QUICK, OUTPUTS, 1.0)["id"]
        except UnseenError as exc:
            assert exc.code == "budget_exceeded", exc
            return index % 2, ""

    with ThreadPoolExecutor(max_workers=200) as pool:
        accepted = [(side, job) for side, job in pool.map(attempt, range(200)) if job]
    assert len(accepted) == 5
    (row,) = [p for p in d.organizer.populations() if p["name"] == people]
    assert row["spent"] + row["reserved"] == pytest.approx(5.0)
    assert sorted(row["datasets"]) == names
    for side, job in accepted:
        assert clients[side].wait(job, timeout=300)["state"] == "awaiting_review"
    (row,) = [p for p in d.organizer.populations() if p["name"] == people]
    assert (row["spent"], row["reserved"]) == (pytest.approx(5.0), pytest.approx(0.0))
    spent = [next(b for b in c.budget() if b["population"] == people)["spent"] for c in clients]
    assert sum(spent) == pytest.approx(5.0) and max(spent) <= 4.0


def test_concurrent_submissions_never_overspend(
    deployment: Deployment, soda: SodaData, tmp_path: Path
) -> None:
    """The contest-wide cap holds under 200 concurrent submissions from two teams on two
    datasets of one population (SQLite; test_postgres.py runs it on PostgreSQL)."""
    rush_one_population(deployment, soda, tmp_path)

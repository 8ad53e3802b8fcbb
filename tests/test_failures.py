"""Infrastructure failures: refused clearly at submission, or failed cleanly with the budget
returned when no noise was drawn; concurrent submissions never overspend."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import docker
import pytest

from client.api import UnseenClient, UnseenError
from tests.conftest import Deployment, SodaData, start_deployment

pytestmark = pytest.mark.docker

QUICK = "def analyze(df):\n    return {'n': float(len(df))}\n"
SLOW = "import time\ndef analyze(df):\n    time.sleep(6)\n    return {'n': 1.0}\n"
OUTPUTS = [{"name": "n", "lo": 0, "hi": 100000}]


def tiny_budget(client: UnseenClient) -> dict[str, float]:
    return next(b for b in client.budget() if b["dataset"] == "cards_tiny")


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
    finally:
        d.server.stop()
        if any(doomed in image.tags for image in engine.images.list()):
            engine.images.remove(doomed)


def test_concurrent_submissions_never_overspend(deployment: Deployment) -> None:
    """20 submissions of ε=1 at once against a cap of 5: exactly 5 are accepted."""
    d = deployment
    client = d.new_contestant("team-rush", "rush")
    d.organizer.set_budget_cap("team-rush", "cards_tiny", 5.0)

    def attempt(_: int) -> str:
        try:
            return client.submit("cards_tiny", QUICK, OUTPUTS, 1.0)["id"]
        except UnseenError as exc:
            assert exc.code == "budget_exceeded", exc
            return ""

    with ThreadPoolExecutor(max_workers=20) as pool:
        accepted = [job for job in pool.map(attempt, range(20)) if job]
    assert len(accepted) == 5
    budget = tiny_budget(client)
    assert budget["spent"] + budget["reserved"] == pytest.approx(5.0)
    for job in accepted:
        client.wait(job, timeout=300)
    assert tiny_budget(client)["spent"] == pytest.approx(5.0)

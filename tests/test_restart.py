"""Nothing is lost on restart: jobs survive, a job caught mid-run fails (charged: its code ran
on the full data) and shows so at its scheduled time, queued jobs run, and the dead worker's
sandbox containers are reaped."""

from __future__ import annotations

import time
from pathlib import Path

import docker
import pytest

from tests.conftest import SodaData, start_deployment
from tests.test_cli_run import unseen

pytestmark = pytest.mark.docker

QUICK = "def analyze(df):\n    return {'n': float(len(df))}\n"
SLOW = "import time\ndef analyze(df):\n    time.sleep(120)\n    return {'n': 1.0}\n"
OUTPUTS = [{"name": "n", "lo": 0, "hi": 100000}]
NODE = "restart-test"


def test_killed_server_restarts_consistently(
    runner_image: str, soda: SodaData, tmp_path: Path
) -> None:
    env = {"UNSEEN_NODE": NODE, "UNSEEN_BLOCK_SECONDS": "300"}
    first = start_deployment(tmp_path / "state", soda, env)
    client = first.contestant
    done = client.submit("cards_tiny", QUICK, OUTPUTS, 0.5)
    assert client.wait(done["id"], timeout=300)["state"] == "awaiting_review"
    slow = client.submit("cards_tiny", SLOW, OUTPUTS, 1.0, block_seconds=20)
    queued = client.submit("cards_tiny", QUICK, OUTPUTS, 0.25)
    client.wait(slow["id"], until=frozenset({"running"}), timeout=120)
    engine = docker.from_env()
    label = {"label": f"unseen.node={NODE}"}
    for _ in range(100):
        if engine.containers.list(all=True, filters=label, ignore_removed=True):
            break
        time.sleep(0.2)
    assert engine.containers.list(all=True, filters=label, ignore_removed=True), (
        "the slow block never started"
    )

    first.server.stop(kill=True)  # SIGKILL: no chance to clean up
    orphans = {c.id for c in engine.containers.list(all=True, filters=label, ignore_removed=True)}
    assert orphans, "orphans expected after SIGKILL"

    first.server.start()
    client, organizer = first.contestant, first.organizer
    # Reaped at start (the queued job may already have started containers of its own).
    assert not orphans & {
        c.id for c in engine.containers.list(all=True, filters=label, ignore_removed=True)
    }
    truth = organizer.job(slow["id"])
    assert (truth["state"], truth["error_class"]) == ("failed", "interrupted")
    # The team sees it fail only when its public schedule ends: whether a job was still
    # running when the server died depends on how long its blocks took.
    assert (client.job(slow["id"])["state"], client.job(slow["id"])["error_class"]) == (
        "running", None,
    )  # fmt: skip
    assert client.job(slow["id"])["charge"] == "reserved"  # the charge shows on schedule too
    assert truth["charge"] == "charged"
    interrupted = client.wait(slow["id"], timeout=120)
    assert (interrupted["state"], interrupted["error_class"]) == ("failed", "interrupted")
    assert interrupted["charge"] == "charged"
    said = unseen("result", slow["id"][:10], url=first.server.url, token=str(client.token))
    assert said.returncode == 1 and "interrupted" in said.stderr
    assert "ε 1 was charged" in said.stderr and "submit it again" in said.stderr
    assert client.job(done["id"])["state"] == "awaiting_review"
    assert client.wait(queued["id"], timeout=300)["state"] == "awaiting_review"
    budget = next(b for b in client.budget() if "cards_tiny" in b["datasets"])
    # 0.5 + 0.25, and the interrupted 1.0: its code had run on the full data
    assert budget["spent"] == pytest.approx(1.75)
    assert organizer.audit(action="budget.charged", job=slow["id"])
    assert budget["reserved"] == pytest.approx(0.0)
    organizer.release(done["id"])
    assert client.job(done["id"])["result"] is not None
    first.server.stop()

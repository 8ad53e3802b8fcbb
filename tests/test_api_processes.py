"""The API in several processes: one runs the jobs, the others only serve requests; a job
submitted to any of them runs once, and a revoked token stops working in all of them within
the token cache's lifetime."""

from __future__ import annotations

import os
import runpy
import secrets
import time
from pathlib import Path

import pytest

from api.auth import TOKEN_CACHE_SECONDS
from api.launcher import ServerProcess
from client.api import UnseenClient, UnseenError
from client.plans import Query
from tests.conftest import ROOT, SodaData, start_deployment

pytestmark = pytest.mark.docker
EXAMPLE = ROOT / "examples" / "mean_fare_by_period.py"
PLAN = Query().group_by("line").count("trips").bound(rows_per_unit=2, groups_per_unit=1).to_dict()


def children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        found += [int(child) for child in text]
    return found


def test_a_second_process_serves_and_the_first_runs_its_jobs(
    runner_image: str, soda: SodaData, tmp_path: Path
) -> None:
    """A second server on the same data dir cannot take the worker lock: it only serves. Jobs
    submitted to it are found by the first one's poll and run there, once each."""
    leader = start_deployment(tmp_path / "server", soda, {"UNSEEN_SLOTS": "2"})
    follower = ServerProcess(
        leader.server.data_dir,
        leader.server.bootstrap_token,
        env={"UNSEEN_NODE": f"test-{secrets.token_hex(3)}"},
        log_path=tmp_path / "follower.log",
    ).start()
    try:
        member = UnseenClient(follower.url, leader.contestant.token)
        query = member.query("transport_cards", PLAN, 0.5)["id"]
        outputs = runpy.run_path(str(EXAMPLE))["OUTPUTS"]
        aggregate = member.submit("transport_cards", EXAMPLE.read_text(), outputs, 0.5)["id"]
        for job_id in (query, aggregate):
            done = member.wait(job_id, timeout=300)
            assert done["state"] == "awaiting_review", done
            assert done["progress"]["blocks_done"] == done["progress"]["blocks_total"] > 0
        events = leader.organizer.audit(job=query)
        assert [e["action"] for e in events].count("job.started") == 1  # claimed once
        sample = member.run_on_sample("transport_cards", EXAMPLE.read_text(), outputs)
        assert sample["sample_run"]["outcome"] == "ok"  # the follower's own sandbox
        log = (tmp_path / "follower.log").read_text()
        assert "orphaned sandbox" not in log  # only the worker's process reaps
    finally:
        follower.stop()
        leader.server.stop()


def test_processes_share_the_port_and_revocation_reaches_all(
    runner_image: str, soda: SodaData, tmp_path: Path
) -> None:
    deployed = start_deployment(tmp_path / "server", soda, {"UNSEEN_API_PROCESSES": "2"})
    try:
        server_pid = deployed.server._process.pid  # type: ignore[union-attr]
        assert len(children(server_pid)) >= 2  # uvicorn's two workers (and its helpers)
        # Fresh connections land on either process; every job still runs exactly once.
        jobs = []
        for _ in range(4):
            fresh = UnseenClient(deployed.server.url, deployed.contestant.token)
            jobs.append(fresh.query("transport_cards", PLAN, 0.25)["id"])
            fresh.close()
        for job_id in jobs:
            assert deployed.contestant.wait(job_id, timeout=300)["state"] == "awaiting_review"
        started = deployed.organizer.audit(action="job.started")
        claimed = [e["detail"]["job"] for e in started if e["detail"]["job"] in jobs]
        assert sorted(claimed) == sorted(jobs)
        # A revoked token: refused at once where revoked, everywhere within the cache time.
        new = deployed.organizer.add_member(str(deployed.team["id"]), "amy")["token"]
        amy = UnseenClient(deployed.server.url, new)
        for _ in range(8):  # fresh connections: both processes look the token up and keep it
            fresh = UnseenClient(deployed.server.url, new)
            assert fresh.me()["name"] == "amy"
            fresh.close()
        (current,) = [t for t in amy.tokens() if t["current"]]
        amy.revoke_token(current["id"])
        time.sleep(TOKEN_CACHE_SECONDS + 0.2)
        for _ in range(8):
            fresh = UnseenClient(deployed.server.url, new)
            with pytest.raises(UnseenError) as refused:
                fresh.me()
            assert refused.value.status == 401
            fresh.close()
    finally:
        deployed.server.stop()
    assert os.path.exists(deployed.server.data_dir / "worker.lock")

"""docker-compose.yml for real: the API on PostgreSQL, Redis, and data nodes node-a (transport
cards) and node-b (taxi GPS), every image built here. Datasets are registered on their nodes,
jobs run there; then the faults the issue names are injected by stopping containers."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from api.launcher import free_port
from client.api import UnseenClient
from client.plans import Query
from examples.compose_demo import ComposeStack, place_files, running_stack
from tests.conftest import FAST_SCHEDULE, SodaData, admitted_member, open_contest
from tests.test_e2e_jobs import EXAMPLE, FARE_OUTPUTS

pytestmark = pytest.mark.docker
LONG = 300  # blocks of a job long enough to stop a service in the middle of it
# (its schedule: 2 s + 150 waves of 0.4 + 0.2 s, about 92 s)


@dataclass
class Contest:
    stack: ComposeStack
    organizer: UnseenClient
    contestant: UnseenClient

    def charges(self, job_id: str) -> int:
        return len(self.organizer.audit(action="budget.charged", job=job_id))

    def wait_until_running(self, job_id: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while self.organizer.job(job_id)["progress"]["blocks_done"] == 0:
            assert time.monotonic() < deadline, "the job never got going"
            time.sleep(0.05)


@pytest.fixture(scope="module")
def contest(
    runner_image: str, soda: SodaData, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Contest]:
    port = free_port()
    host = tmp_path_factory.mktemp("compose") / "host"
    with pytest.MonkeyPatch.context() as env:
        for name, value in FAST_SCHEDULE.items():  # read by docker-compose.yml
            env.setenv(name, value)
        with running_stack(host, f"unseentest{port}", port) as stack:
            with UnseenClient(stack.url, stack.bootstrap) as anonymous:
                organizer = anonymous.with_token(anonymous.create_organizer("olga")["token"])
            open_contest(organizer)
            contestant = admitted_member(organizer, "team-compose", "cora")
            placed = place_files(stack, soda.full, soda.sample)
            for name, blocks in (("transport_cards", 8), ("taxi_gps", 10)):
                entry = placed[name]
                registration = {**soda.registration(name, blocks), "node": entry["node"],
                                "source_path": str(entry["source"]),
                                "sample_path": str(entry["sample"])}  # fmt: skip
                organizer.register_dataset(**registration)
                if name == "transport_cards":
                    organizer.register_dataset(**{**registration, "name": f"{name}_long",
                                                  "blocks": LONG})  # fmt: skip
            yield Contest(stack, organizer, contestant)


def test_jobs_run_on_the_node_holding_the_data(contest: Contest) -> None:
    stack, organizer, contestant = contest.stack, contest.organizer, contest.contestant
    job = contestant.submit("transport_cards", EXAMPLE, FARE_OUTPUTS, 1.0)
    plan = Query().group_by("occupied").count("fixes").bound(rows_per_unit=20).to_dict()
    query = contestant.query("taxi_gps", plan, 1.0)
    for submitted in (job, query):
        done = contestant.wait(submitted["id"], timeout=300)
        assert done["state"] == "awaiting_review", organizer.job(submitted["id"])
    assert organizer.job(job["id"])["report"]["outcomes"] == {"ok": 8}
    released = organizer.release(job["id"])["result"]
    assert [v["noise_scale"] for v in released] == pytest.approx([8 / 8 * 3] * 3)
    cells = organizer.release(query["id"])["result"]
    assert {cell["keys"]["occupied"] for cell in cells} == {0, 1}

    # Each node ran its own blocks, and partitioned its own data, with the key, in its own
    # directory; the API holds only the public samples and has no path to a node's files.
    ran = {node: stack.logs(node, tail="all") for node in ("node-a", "node-b")}
    assert "Task unseen.run_blocks[" in ran["node-a"]
    assert "Task unseen.query_blocks[" in ran["node-b"]
    assert "Task unseen.query_blocks[" not in ran["node-a"]
    assert "Task unseen.run_blocks[" not in ran["node-b"]
    for node, name in (("node-a", "transport_cards"), ("node-b", "taxi_gps")):
        blocks = next((stack.node_dir(node) / "datasets").glob(f"{name}-*/blocks"))
        assert (blocks / "block-00007.parquet").exists() and (blocks / "block.key").exists()
    served = {p.name for p in (stack.host_dir / "server" / "datasets").glob("*/*")}
    assert served == {"sample.parquet"}
    mounts = _mounts(stack, "api")
    assert str(stack.host_dir / "server") in mounts
    assert not any(m.startswith(str(stack.node_dir("node-a"))) for m in mounts)


def test_postgres_briefly_unreachable_mid_job_loses_nothing(contest: Contest) -> None:
    """The store is killed while a job's blocks are out: requests get a clear 503, progress
    is skipped, and the release waits for the database; the job finishes, charged once."""
    stack, contestant = contest.stack, contest.contestant
    job = contestant.submit("transport_cards_long", EXAMPLE, FARE_OUTPUTS, 0.5, block_seconds=0.4)
    contest.wait_until_running(job["id"])
    stack.compose("kill", "postgres")
    try:
        bearer = {"Authorization": f"Bearer {contestant.token}"}
        answer = httpx.get(f"{stack.url}/v1/jobs/{job['id']}", headers=bearer, timeout=30)
        assert answer.status_code == 503, answer.text
        assert "database" in answer.text.lower()
        time.sleep(3)
    finally:
        stack.compose("start", "postgres")
    done = contestant.wait(job["id"], timeout=300)
    assert done["state"] == "awaiting_review", contest.organizer.job(job["id"])
    assert done["progress"] == {"blocks_done": LONG, "blocks_total": LONG, "fraction": 1.0}
    assert contest.charges(job["id"]) == 1
    assert "database unreachable" in stack.logs("api", tail="all")  # it did hit the job


def test_redis_restarted_mid_job_finishes_the_job(contest: Contest) -> None:
    """The broker (append-only file on) restarts while blocks are out: the job finishes,
    every block counted once, charged once."""
    stack, contestant = contest.stack, contest.contestant
    job = contestant.submit("transport_cards_long", EXAMPLE, FARE_OUTPUTS, 0.5, block_seconds=0.4)
    contest.wait_until_running(job["id"])
    stack.compose("restart", "-t", "2", "redis")
    done = contestant.wait(job["id"], timeout=300)
    assert done["state"] == "awaiting_review", contest.organizer.job(job["id"])
    assert done["progress"] == {"blocks_done": LONG, "blocks_total": LONG, "fraction": 1.0}
    report = contest.organizer.job(job["id"])["report"]
    # Every block ran to its end in the sandbox (a few tiny blocks make the example exit
    # non-zero: that is the data, not the fault); none was lost or failed to start.
    assert report["blocks"] == LONG, report
    assert set(report["run_ends"]) <= {"exited", "nonzero_exit"}, report
    assert contest.charges(job["id"]) == 1
    seen = stack.logs("api", tail="all")  # it did hit the job: the reducer saw it, or a node
    assert "broker unreachable" in seen or "lost a chunk's answer" in seen


def test_a_node_offline_at_submission_holds_the_job_until_it_is_back(contest: Contest) -> None:
    """node-b is down when the job is submitted: the job waits (running, no block done) up to
    the node wait, and finishes once the node is back."""
    stack, contestant = contest.stack, contest.contestant
    stack.compose("stop", "-t", "5", "node-b")
    try:
        plan = Query().group_by("occupied").count("fixes").bound(rows_per_unit=20).to_dict()
        job = contestant.query("taxi_gps", plan, 0.5)
        time.sleep(5)
        waiting = contest.organizer.job(job["id"])
        assert waiting["state"] == "running" and waiting["progress"]["blocks_done"] == 0
    finally:
        stack.compose("start", "node-b")
    done = contestant.wait(job["id"], timeout=300)
    assert done["state"] == "awaiting_review", contest.organizer.job(job["id"])
    assert contest.charges(job["id"]) == 1


def _mounts(stack: ComposeStack, service: str) -> list[str]:
    container = stack.compose("ps", "-q", service).stdout.strip()
    inspected = subprocess.run(["docker", "inspect", container], capture_output=True, text=True,
                               check=True)  # fmt: skip
    return [mount["Source"] for mount in json.loads(inspected.stdout)[0]["Mounts"]]


def test_the_stack_files_name_only_local_images() -> None:
    """No service may need a registry: each image is built here or named by a local tag."""
    compose = (Path(__file__).resolve().parents[1] / "docker-compose.yml").read_text()
    for line in compose.splitlines():
        if line.strip().startswith("image:"):
            assert "unseen-" in line, line


PROBE = """
import os, redis
own = redis.Redis.from_url(os.environ["UNSEEN_BROKER_URL"])
me = os.environ["UNSEEN_NODE"]
other = "node-b" if me == "node-a" else "node-a"
outcome = {"own queue": own.llen(f"unseen.{me}:node.{me}")}


def listen():
    listener = own.pubsub()
    listener.subscribe(f"unseen.{other}:celery-task-meta-x")
    return listener.get_message(timeout=2)


for name, attempt in {
    "read other's queue": lambda: own.lrange(f"unseen.{other}:node.{other}", 0, -1),
    "take other's task": lambda: own.rpop(f"unseen.{other}:node.{other}"),
    "write other's result": lambda: own.set(f"unseen.{other}:celery-task-meta-x", "{}"),
    "listen to other's results": listen,
    "list every key": lambda: own.keys("*"),
    "scan every key": lambda: own.scan(0, count=1000),
    "list every channel": lambda: own.pubsub_channels(),
    "unprefixed key": lambda: own.get("celery-task-meta-x"),
}.items():
    try:
        attempt()
        outcome[name] = "allowed"
    except redis.exceptions.NoPermissionError:
        outcome[name] = "refused"
    except redis.exceptions.ResponseError as exc:
        outcome[name] = "refused" if "NOPERM" in str(exc) else repr(exc)
import socket
try:
    socket.create_connection(("postgres", 5432), timeout=3).close()
    outcome["reach the database"] = "allowed"
except OSError:
    outcome["reach the database"] = "refused"
try:
    redis.Redis(host="redis").ping()
    outcome["no password"] = "allowed"
except redis.exceptions.AuthenticationError:
    outcome["no password"] = "refused"
except redis.exceptions.ResponseError as exc:
    outcome["no password"] = "refused" if "NOAUTH" in str(exc) else repr(exc)
print(json.dumps(outcome))
"""


def test_a_nodes_broker_credentials_reach_only_its_own_tasks(contest: Contest) -> None:
    """Each node has its own Redis user: it may use its own queue, tasks and results, and is
    refused everything of another node's (and every key outside its prefix)."""
    for node in ("node-a", "node-b"):
        ran = contest.stack.compose("exec", "-T", node, "python3", "-c", "import json\n" + PROBE)
        outcome = json.loads(ran.stdout.strip().splitlines()[-1])
        own = outcome.pop("own queue")
        assert isinstance(own, int)
        assert set(outcome.values()) == {"refused"}, (node, outcome)

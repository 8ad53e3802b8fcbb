"""The scale-out shape for query mode, for real: a Redis server, a data node's Celery worker
consuming its own queue, and the API as the trusted reducer. Blocks' partials come back from
the node, are checked, summed and noised once; a node without a worker fails the job before
any noise, with the budget returned."""

from __future__ import annotations

import math
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest

from client.api import UnseenError
from client.plans import Query
from privacy.query import DatasetPolicy, combine_partials, parse_plan
from runner.blocks import load_layout
from runner.node_tasks import query_blocks
from runner.query import CHUNK_BLOCKS, QueryJob, local_partials
from runner.wire import partials_from_wire, partials_to_wire, policy_from_wire, policy_to_wire
from tests.conftest import (
    ROOT,
    Deployment,
    RedisServer,
    SodaData,
    redis_server,
    start_deployment,
)
from tests.test_e2e_jobs import EXAMPLE, FARE_OUTPUTS, budget_on

pytestmark = pytest.mark.docker
PLAN = (
    Query().group_by("line").count("trips").mean("mean_fare", "fare", 0, 20)
    .bound(rows_per_unit=2, groups_per_unit=2).to_dict()
)  # fmt: skip
BLOCKS = 60  # three chunks of 25, 25 and 10
MANY_BLOCKS = 400  # sixteen chunks: a job long enough to kill its worker in the middle


@pytest.fixture(scope="module")
def redis() -> Iterator[RedisServer]:
    with redis_server() as server:
        yield server


@pytest.fixture(scope="module")
def broker(redis: RedisServer) -> str:
    return redis.url


def _runtime() -> dict[str, str]:
    """The runtime the suite's servers are told to use, if any, for its node workers too."""
    runtime = os.environ.get("UNSEEN_RUNTIME")
    return {"UNSEEN_RUNTIME": runtime} if runtime else {}


class NodeWorker:
    """``celery -A runner.node_tasks worker`` on one node's queue, as a data node runs it."""

    def __init__(
        self, broker: str, node: str, data_dir: Path, log: Path, env: dict[str, str] | None = None
    ) -> None:
        self.log = log
        self._process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "runner.node_tasks", "worker",
             "-Q", f"node.{node}", "-c", "2", "-n", f"{node}-{secrets.token_hex(2)}@%h",
             "--loglevel", "INFO", "--without-gossip", "--without-mingle", "--without-heartbeat"],
            cwd=ROOT, stdout=log.open("ab"), stderr=subprocess.STDOUT, start_new_session=True,
            env={"PATH": "/usr/bin:/bin", "UNSEEN_BROKER_URL": broker, "UNSEEN_NODE": node,
                 "UNSEEN_NODE_DATA_DIR": str(data_dir), "UNSEEN_VISIBILITY_SECONDS": "4",
                 "UNSEEN_HEARTBEAT_SECONDS": "1",
                 "UNSEEN_NODE_JOBS_DIR": str(log.parent / f"{log.stem}-jobs"),
                 "UNSEEN_NODE_IDLE_SECONDS": "2", **_runtime(), **(env or {})},
        )  # fmt: skip
        deadline = time.monotonic() + 60
        while "ready." not in log.read_text(errors="replace"):
            if self._process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"celery worker did not start; see {log}")
            time.sleep(0.2)

    def stop(self) -> None:
        if self._process.poll() is None:
            self._process.terminate()
            self._process.wait(30)

    def kill(self) -> None:
        """SIGKILL the worker and its pool processes at once: no goodbye, no acks."""
        os.killpg(self._process.pid, signal.SIGKILL)
        self._process.wait(10)


@dataclass
class Node:
    deployed: Deployment
    broker: str
    label: str
    state: Path  # the node's data: its files and, once registered, their blocks
    worker: NodeWorker
    server: Path  # the API's state, on the same machine here

    def start_worker(self, log: str) -> NodeWorker:
        self.worker = NodeWorker(self.broker, self.label, self.state, self.state.parent / log)
        return self.worker


def _holding(home: Path, soda: SodaData) -> Path:
    """A node's own copy of the data files, as a provider's machine would hold them."""
    shutil.copytree(soda.full, home / "full")
    shutil.copytree(soda.sample, home / "sample")
    return home


def _on(node: Node, soda: SodaData, name: str, as_name: str, blocks: int) -> dict[str, object]:
    """A registration of one of the node's own files (paths on the node), for that node."""
    registration = soda.registration(name, blocks, as_name=as_name)
    for key in ("source_path", "sample_path"):
        relative = Path(str(registration[key])).relative_to(soda.full.parent)
        registration[key] = str(node.state / relative)
    return {**registration, "node": node.label}


@pytest.fixture(scope="module")
def fanned_out(
    broker: str, runner_image: str, soda: SodaData, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Node]:
    label = f"node-{secrets.token_hex(3)}"
    # The API is a node of its own (the hub): datasets on `label` are that node's worker's.
    env = {"UNSEEN_BROKER_URL": broker, "UNSEEN_NODE": f"hub-{label}",
           "UNSEEN_NODE_WAIT_SECONDS": "15", "UNSEEN_NODE_RESEND_SECONDS": "5"}  # fmt: skip
    home = tmp_path_factory.mktemp("fanout")
    server = home / "server"
    deployed = start_deployment(server, soda, env)
    data = _holding(home / "node", soda)
    worker = NodeWorker(broker, label, data, home / "worker.log")
    node = Node(deployed, broker, label, data, worker, server)
    deployed.organizer.register_dataset(**_on(node, soda, "transport_cards", "cards_60", BLOCKS))
    deployed.organizer.register_dataset(
        **_on(node, soda, "transport_cards", "cards_many", MANY_BLOCKS)
    )
    yield node
    node.worker.stop()
    deployed.server.stop()
    leftover = _node_containers(label)  # a SIGKILLed worker's zygotes exit, but stay listed
    if leftover:
        subprocess.run(["docker", "rm", "-f", *leftover], capture_output=True, check=False)


def test_the_nodes_worker_computes_the_blocks_and_the_reducer_noises_once(
    fanned_out: Node,
) -> None:
    deployed, worker = fanned_out.deployed, fanned_out.worker
    job = deployed.contestant.query("cards_60", PLAN, 1.0)
    done = deployed.contestant.wait(job["id"], timeout=300)
    assert done["state"] == "awaiting_review", done
    assert done["progress"] == {"blocks_done": BLOCKS, "blocks_total": BLOCKS, "fraction": 1.0}
    lines = worker.log.read_text().splitlines()
    succeeded = sum("unseen.query_blocks[" in line and "succeeded in" in line for line in lines)
    assert succeeded == math.ceil(BLOCKS / CHUNK_BLOCKS)  # every chunk answered once
    released = deployed.organizer.release(job["id"])
    assert {cell["name"] for cell in released["result"]} == {"trips", "mean_fare"}
    charges = deployed.organizer.audit(action="budget.charged", job=job["id"])
    assert len(charges) == 1


def test_a_worker_killed_mid_job_loses_nothing_and_counts_nothing_twice(
    fanned_out: Node,
) -> None:
    """SIGKILL the node's worker while the job's chunks are out; another worker comes up; the
    chunks it never acknowledged come back after the visibility timeout; the job finishes
    with every block counted once (one answer per chunk) and one budget charge."""
    deployed = fanned_out.deployed
    first = fanned_out.worker
    before = first.log.read_text(errors="replace").count("received")
    job = deployed.contestant.query("cards_many", PLAN, 0.5)
    deadline = time.monotonic() + 60
    while first.log.read_text(errors="replace").count("received") <= before:
        assert time.monotonic() < deadline, "the worker never received a chunk"
        time.sleep(0.005)
    first.kill()
    assert deployed.contestant.job(job["id"])["state"] == "running"
    fanned_out.start_worker("worker-2.log")
    done = deployed.contestant.wait(job["id"], timeout=120)
    assert done["state"] == "awaiting_review", done
    assert done["progress"] == {
        "blocks_done": MANY_BLOCKS,
        "blocks_total": MANY_BLOCKS,
        "fraction": 1.0,
    }
    assert len(deployed.organizer.audit(action="budget.charged", job=job["id"])) == 1
    assert len(deployed.organizer.audit(action="job.started", job=job["id"])) == 1


def test_redis_restarted_mid_job_finishes_the_job_and_charges_once(
    fanned_out: Node, redis: RedisServer
) -> None:
    """The broker restarts empty (no persistence) while a job's chunks are out: the queued
    chunks and the answers not yet read are gone, and the tasks running then fail to store
    their answers. The reducer sends again what is missing once the broker is back; the job
    finishes with every block counted once and one budget charge."""
    deployed = fanned_out.deployed
    before = budget_on(deployed.contestant, "cards_many")
    job = deployed.contestant.query("cards_many", PLAN, 0.5)
    deadline = time.monotonic() + 60
    while deployed.organizer.job(job["id"])["progress"]["blocks_done"] == 0:
        assert time.monotonic() < deadline, "the job never started"
        time.sleep(0.01)
    redis.stop()
    time.sleep(1)
    redis.start()
    done = deployed.contestant.wait(job["id"], timeout=180)
    assert done["state"] == "awaiting_review", deployed.organizer.job(job["id"])
    assert done["progress"] == {
        "blocks_done": MANY_BLOCKS,
        "blocks_total": MANY_BLOCKS,
        "fraction": 1.0,
    }
    after = budget_on(deployed.contestant, "cards_many")
    assert len(deployed.organizer.audit(action="budget.charged", job=job["id"])) == 1
    assert after["spent"] == pytest.approx(before["spent"] + 0.5) and after["reserved"] == 0


def test_a_node_that_cannot_read_its_blocks_fails_the_job_naming_why(
    fanned_out: Node, tmp_path: Path
) -> None:
    """A node's task fails for a reason sending it again will not change (here the worker is
    confined to another directory): the job fails at once with the node's error, not after
    the node wait, and the budget is returned."""
    deployed = fanned_out.deployed
    fanned_out.worker.stop()
    misplaced = NodeWorker(fanned_out.broker, fanned_out.label, tmp_path, tmp_path / "w.log")
    try:
        before = budget_on(deployed.contestant, "cards_60")
        started = time.monotonic()
        job = deployed.contestant.query("cards_60", PLAN, 0.5)
        done = deployed.contestant.wait(job["id"], timeout=120)
        assert done["state"] == "failed" and done["error_class"] == "infrastructure", done
        assert time.monotonic() - started < 10  # not the 15 s node wait
        detail = deployed.organizer.job(job["id"])["error_detail"]
        assert "NodeTaskFailed" in detail and "is not under this node's data" in detail
        after = budget_on(deployed.contestant, "cards_60")
        assert after["spent"] == before["spent"] and after["reserved"] == 0
    finally:
        misplaced.stop()
        fanned_out.start_worker("worker-3.log")


def test_a_node_without_a_worker_fails_the_job_and_returns_the_budget(
    fanned_out: Node,
) -> None:
    fanned_out.worker.stop()  # the node goes away
    try:
        _no_worker_fails_the_job(fanned_out)
    finally:
        fanned_out.start_worker("worker-back.log")


def _no_worker_fails_the_job(fanned_out: Node) -> None:
    deployed = fanned_out.deployed
    before = budget_on(deployed.contestant, "cards_60")
    job = deployed.contestant.query("cards_60", PLAN, 0.5)
    done = deployed.contestant.wait(job["id"], timeout=120)
    assert done["state"] == "failed" and done["error_class"] == "infrastructure"
    detail = deployed.organizer.job(job["id"])["error_detail"]
    assert "NodeUnavailable" in detail and "is its worker running" in detail
    after = budget_on(deployed.contestant, "cards_60")
    assert after["spent"] == before["spent"] and after["reserved"] == 0


def test_a_nodes_partials_equal_the_local_ones(fanned_out: Node) -> None:
    """The task's answer for a chunk (run in this process) equals what the embedded reader
    computes for the same blocks: the fan-out changes where, not what."""
    deployed = fanned_out.deployed
    entry = {d["name"]: d for d in deployed.organizer.datasets()}["cards_60"]
    node = deployed.organizer.create_node(entry["node"])
    held = {d["name"]: d for d in deployed.organizer.with_token(node["token"]).node_datasets()}
    directory = Path(held["cards_60"]["directory"])
    policy = DatasetPolicy(entry["columns"], entry["unit_column"],
                           {k: tuple(v) for k, v in entry["bounds"].items()},
                           entry["key_sets"])  # fmt: skip
    assert policy_from_wire(policy_to_wire(policy)) == policy
    plan = parse_plan(PLAN, policy)
    layout = load_layout(directory)
    wire = query_blocks(str(directory), list(range(layout.blocks)), PLAN, policy_to_wire(policy))
    job = QueryJob(layout, plan, policy.unit_column, 1.0)
    here = combine_partials(local_partials(job))
    assert partials_to_wire(partials_from_wire(wire, plan)) == partials_to_wire(here)


def _node_containers(label: str, *filters: str) -> list[str]:
    extra = [arg for condition in filters for arg in ("--filter", condition)]
    listed = subprocess.run(
        ["docker", "ps", "-aq", "--filter", f"label=unseen.node={label}", *extra],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return listed.stdout.split()


def test_an_aggregate_job_runs_its_blocks_on_the_node(fanned_out: Node) -> None:
    """Sample-and-aggregate on the node: the contestant's code runs in the node's sandbox
    containers, chunk by chunk; the node sends back each block's parsed, clipped values; the
    reducer noises once. The node's containers and code copies go once the job is idle."""
    deployed, worker = fanned_out.deployed, fanned_out.worker
    before = worker.log.read_text(errors="replace").count("unseen.run_blocks")
    job = deployed.contestant.submit("cards_60", EXAMPLE, FARE_OUTPUTS, 1.0)
    done = deployed.contestant.wait(job["id"], timeout=300)
    assert done["state"] == "awaiting_review", deployed.organizer.job(job["id"])
    report = deployed.organizer.job(job["id"])["report"]
    assert report["blocks"] == BLOCKS and report["outcomes"] == {"ok": BLOCKS}, report
    text = worker.log.read_text(errors="replace")
    succeeded = [line for line in text.splitlines()[-2000:] if "unseen.run_blocks" in line
                 and "succeeded in" in line]  # fmt: skip
    assert text.count("unseen.run_blocks") > before and len(succeeded) >= math.ceil(BLOCKS / 10)
    released = deployed.organizer.release(job["id"])["result"]
    assert [v["noise_scale"] for v in released] == pytest.approx([8 / BLOCKS * 3] * 3)
    assert len(deployed.organizer.audit(action="budget.charged", job=job["id"])) == 1
    deadline = time.monotonic() + 30
    while _node_containers(fanned_out.label):
        assert time.monotonic() < deadline, "the node kept the job's containers"
        time.sleep(0.5)
    jobs_dir = worker.log.parent / f"{worker.log.stem}-jobs"
    assert not any(jobs_dir.glob(f"{job['id']}-*")), "the node kept the job's code"


def test_a_node_killed_mid_aggregate_job_counts_every_block_once(fanned_out: Node) -> None:
    deployed = fanned_out.deployed
    first = fanned_out.worker
    job = deployed.contestant.submit("cards_60", EXAMPLE, FARE_OUTPUTS, 0.5)
    deadline = time.monotonic() + 60
    while deployed.organizer.job(job["id"])["progress"]["blocks_done"] < 10:
        assert time.monotonic() < deadline, "the node never answered a chunk"
        time.sleep(0.02)
    first.kill()
    fanned_out.start_worker("worker-agg.log")
    done = deployed.contestant.wait(job["id"], timeout=300)
    assert done["state"] == "awaiting_review", deployed.organizer.job(job["id"])
    report = deployed.organizer.job(job["id"])["report"]
    assert report["blocks"] == BLOCKS and report["outcomes"] == {"ok": BLOCKS}, report
    assert len(deployed.organizer.audit(action="budget.charged", job=job["id"])) == 1
    # The killed worker's sandboxes stopped with it; the new worker removed them at start.
    assert _node_containers(fanned_out.label, "status=exited") == []
    assert "stopped sandbox container(s)" in fanned_out.worker.log.read_text(errors="replace")


def test_a_node_worker_runs_blocks_in_the_isolation_form_it_is_set_to(
    fanned_out: Node, soda: SodaData, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """UNSEEN_ISOLATION=container on a node's worker: a fresh container per block, as on a
    server; each block's result says where it ran, and the organizer's report counts them."""
    deployed, label = fanned_out.deployed, f"boxed-{secrets.token_hex(3)}"
    home = tmp_path_factory.mktemp("boxed")
    data = _holding(home / "data", soda)
    worker = NodeWorker(fanned_out.broker, label, data, home / "worker.log",
                        {"UNSEEN_ISOLATION": "container"})  # fmt: skip
    try:
        node = Node(deployed, fanned_out.broker, label, data, worker, fanned_out.server)
        deployed.organizer.register_dataset(**_on(node, soda, "transport_cards", "boxed", 4))
        # T covers a container's start (about a second, more on a loaded machine)
        job = deployed.contestant.submit("boxed", EXAMPLE, FARE_OUTPUTS, 0.5, block_seconds=10)
        done = deployed.contestant.wait(job["id"], timeout=300)
        assert done["state"] == "awaiting_review", deployed.organizer.job(job["id"])
        report = deployed.organizer.job(job["id"])["report"]
        assert report["outcomes"] == {"ok": 4}, report
        forms = {key.split("/")[1]: count for key, count in report["sandboxes"].items()}
        assert forms == {"container": 4}, report["sandboxes"]
        assert "/container" in worker.log.read_text(errors="replace")  # said at start
    finally:
        worker.stop()


@pytest.fixture(scope="module")
def remote(
    fanned_out: Node, soda: SodaData, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Node]:
    """A second data node, holding files the API server is not told of (as another
    provider's machine would): datasets are registered and partitioned there."""
    label = f"remote-{secrets.token_hex(3)}"
    home = tmp_path_factory.mktemp("remote")
    data = _holding(home / "data", soda)
    worker = NodeWorker(fanned_out.broker, label, data, home / "worker.log")
    node = Node(fanned_out.deployed, fanned_out.broker, label, data, worker, fanned_out.server)
    yield node
    node.worker.stop()


def test_a_dataset_on_another_node_is_partitioned_there_and_jobs_run_there(
    remote: Node, soda: SodaData, fanned_out: Node
) -> None:
    """The organizer names the node; its worker partitions its own file under its own data
    directory (the HMAC key with the blocks) and sends back the layout and the public sample.
    Queries and aggregate jobs on it run on that node; the server holds none of its rows."""
    deployed = remote.deployed
    made = deployed.organizer.register_dataset(**_on(remote, soda, "taxi_gps", "taxi_remote", 20))
    assert made["node"] == remote.label and made["blocks"] == 20
    node_token = deployed.organizer.create_node(remote.label)["token"]
    listed = deployed.organizer.with_token(node_token).node_datasets()
    held = Path({d["name"]: d for d in listed}["taxi_remote"]["directory"])
    assert (
        held.is_relative_to(remote.state / "datasets") and (held / "block-00019.parquet").exists()
    )
    server_copy = next((fanned_out.server / "datasets").glob("taxi_remote-*"))
    assert sorted(p.name for p in server_copy.iterdir()) == ["sample.parquet"]  # no blocks here
    sample = deployed.contestant.download_sample("taxi_remote", remote.state.parent / "s.parquet")
    assert (
        sample.read_bytes()
        == Path(str(_on(remote, soda, "taxi_gps", "x", 2)["sample_path"])).read_bytes()
    )

    entry = {d["name"]: d for d in deployed.organizer.datasets()}["taxi_remote"]
    column = next(iter(entry["bounds"]))
    lo, hi = entry["bounds"][column]
    plan = Query().count("fixes").mean("mean_value", column, lo, hi).to_dict()
    query = deployed.contestant.query("taxi_remote", plan, 0.5)
    done = deployed.contestant.wait(query["id"], timeout=300)
    assert done["state"] == "awaiting_review", deployed.organizer.job(query["id"])
    assert "unseen.query_blocks" in remote.worker.log.read_text(errors="replace")

    code = "import pandas as pd\ndef analyze(df):\n    return {'fixes': float(len(df))}\n"
    outputs = [{"name": "fixes", "lo": 0, "hi": 5000, "default": 0}]
    job = deployed.contestant.submit("taxi_remote", code, outputs, 0.5)
    done = deployed.contestant.wait(job["id"], timeout=300)
    assert done["state"] == "awaiting_review", deployed.organizer.job(job["id"])
    report = deployed.organizer.job(job["id"])["report"]
    assert report["outcomes"] == {"ok": 20}, report
    assert "unseen.run_blocks" in remote.worker.log.read_text(errors="replace")


def test_registering_on_a_node_refuses_clearly_and_keeps_nothing(
    remote: Node, soda: SodaData, fanned_out: Node
) -> None:
    organizer = remote.deployed.organizer
    outside = {**_on(remote, soda, "taxi_gps", "taxi_outside", 4)}
    outside["source_path"] = soda.registration("taxi_gps", 4)["source_path"]  # not the node's
    with pytest.raises(UnseenError) as refused:
        organizer.register_dataset(**outside)
    assert refused.value.status == 422 and refused.value.code == "node_refused"
    assert "is not under this node's data" in str(refused.value)

    wrong = {**_on(remote, soda, "taxi_gps", "taxi_wrong", 4), "unit_column": "no_such"}
    with pytest.raises(UnseenError) as refused:
        organizer.register_dataset(**wrong)
    assert refused.value.code == "unknown_column"
    assert not any((remote.state / "datasets").glob("taxi_wrong-*"))  # never partitioned

    nowhere = {**_on(remote, soda, "taxi_gps", "taxi_nowhere", 4), "node": "no-such-node"}
    started = time.monotonic()
    with pytest.raises(UnseenError) as refused:
        organizer.register_dataset(**nowhere)
    assert refused.value.status == 503 and refused.value.code == "node_unavailable"
    assert "is its worker running" in str(refused.value) and time.monotonic() - started < 60
    names = {d["name"] for d in organizer.datasets()}
    assert not names & {"taxi_outside", "taxi_wrong", "taxi_nowhere"}


def test_a_dataset_on_the_servers_own_node_still_runs_here(
    fanned_out: Node, soda: SodaData
) -> None:
    """With a broker, a dataset registered on the API's own node (no node named) is not sent
    to any queue: its blocks are here, and the jobs on it run here."""
    deployed, worker = fanned_out.deployed, fanned_out.worker
    deployed.organizer.register_dataset(**soda.registration("transport_cards", 6, as_name="here"))
    before = worker.log.read_text(errors="replace").count(" received")
    query = deployed.contestant.query("here", PLAN, 0.5)
    job = deployed.contestant.submit("here", EXAMPLE, FARE_OUTPUTS, 0.5)
    for submitted in (query, job):
        done = deployed.contestant.wait(submitted["id"], timeout=300)
        assert done["state"] == "awaiting_review", deployed.organizer.job(submitted["id"])
    assert worker.log.read_text(errors="replace").count(" received") == before


def test_a_synthetic_sample_of_a_nodes_dataset_is_made_on_that_node(
    remote: Node, soda: SodaData
) -> None:
    """Registered with ``synthesize``, the dataset's public sample is made by the node's
    worker from the node's own blocks: the server receives the synthetic table and the
    organizers' report, never a row, and the population is charged exactly ε once."""
    organizer = remote.deployed.organizer
    body = _on(remote, soda, "transport_cards", "cards_remote_synth", 4)
    body.pop("sample_path")
    body["synthesize"] = {"epsilon": 0.5, "rows": 2_000,
                          "time_bounds": {"ts": ["2026-03-02", "2026-03-09"]}}  # fmt: skip
    made = organizer.register_dataset(**body)
    assert made["node"] == remote.label
    assert "unseen.synthesize_dataset" in remote.worker.log.read_text(errors="replace")
    synthesis = organizer.syntheses("cards_remote_synth")[0]
    assert synthesis["state"] == "done" and synthesis["charged"] and synthesis["rows"] == 2_000
    analysis = synthesis["report"]["analysis"]
    assert analysis["default"] and analysis["full_rows"] == made["rows"]
    population = next(p for p in organizer.populations() if "cards_remote_synth" in p["datasets"])
    assert round(population["samples_spent"], 9) >= 0.5
    assert organizer.audit(action="sample.synthesized")[0]["detail"]["dataset"] == (
        "cards_remote_synth"
    )
    sample = remote.deployed.contestant.download_sample(
        "cards_remote_synth", remote.state.parent / "synthetic.parquet"
    )
    frame = pd.read_parquet(sample)
    assert len(frame) == 2_000 and frame.groupby("card_id").size().max() <= 10
    assert list(frame.columns) == list(
        pd.read_parquet(soda.full / "transport_cards.parquet").columns
    )


def test_a_long_node_task_beats_while_it_runs(remote: Node, soda: SodaData) -> None:
    """The heartbeat thread reports the task's own state (Celery keeps a task's request per
    thread: read in the beating thread, it named no task and the API heard nothing)."""
    from runner.celery_app import make_celery, node_queue
    from runner.synthesize import Declaration, SynthesisSpec
    from runner.wire import declaration_to_wire, synthesis_spec_to_wire

    organizer = remote.deployed.organizer
    organizer.register_dataset(**_on(remote, soda, "transport_cards", "cards_beat", 2))
    entry = {d["name"]: d for d in organizer.datasets()}["cards_beat"]
    directory = next((remote.state / "datasets").glob("cards_beat-*")) / "blocks"
    declared = Declaration(entry["columns"], entry["unit_column"], entry["bounds"],
                           entry["key_sets"])  # fmt: skip
    spec = SynthesisSpec(epsilon=0.5, rows=500,
                         time_bounds={"ts": ("2026-03-02", "2026-03-09")})  # fmt: skip
    app = make_celery(remote.broker, remote.label)
    result = app.send_task(
        "unseen.synthesize_dataset", queue=node_queue(remote.label),
        args=(str(directory), declaration_to_wire(declared), synthesis_spec_to_wire(spec)),
    )  # fmt: skip
    beats, started = set(), time.monotonic()
    while result.state not in ("SUCCESS", "FAILURE") and time.monotonic() - started < 120:
        if result.state == "PROGRESS":
            beats.add(result.info.get("beat"))
        time.sleep(0.1)
    assert result.state == "SUCCESS", result.info
    assert beats - {None}, "no heartbeat was heard while the synthesis ran"

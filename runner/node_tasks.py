"""The tasks a data node's Celery worker runs, next to its own blocks and its own Docker engine.

    UNSEEN_BROKER_URL=redis://... UNSEEN_NODE=<label> \
        celery -A runner.node_tasks worker -Q node.<label>

A node answers with what the trusted reducer needs and nothing more: partial aggregates of its
blocks for a query (bounded per privacy unit, summed over the chunk), or each block's output
parsed strictly and clipped for an aggregate job; never rows, never raw output. The reducer
checks the answers, adds them up and draws the noise once. The worker's settings
(``runner.node_settings``, read once at import): ``UNSEEN_NODE_DATA_DIR``, when set, is the only
tree a task may read from; job code is written under ``UNSEEN_NODE_JOBS_DIR`` (a path the
node's Docker engine can bind-mount); blocks run as ``UNSEEN_ISOLATION`` and
``UNSEEN_RUNTIME`` say, as on a server.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import hashlib
import logging
import os
import re
import shutil
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

from celery import Task
from celery.signals import worker_init, worker_process_shutdown, worker_ready

from privacy.outputs import Combine
from privacy.query import parse_plan
from runner.blocks import load_layout, parquet_columns, partition_dataset
from runner.celery_app import make_celery
from runner.node_settings import load_node_settings
from runner.pipeline import AggregateJob, local_block_results
from runner.query import chunk_partials
from runner.sample import CODE_FILE, write_code
from runner.staging import Staged, clean_leftovers
from runner.synthesize import synthesize_blocks
from runner.wire import (
    block_result_to_wire,
    declaration_from_wire,
    limits_from_wire,
    outputs_from_wire,
    partials_to_wire,
    policy_from_wire,
    synthesis_spec_from_wire,
)
from sandbox.container import SandboxLimits
from sandbox.docker_sandbox import DockerSandbox
from sandbox.policy import check_code

SETTINGS = load_node_settings()
NODE = SETTINGS.node
log = logging.getLogger(__name__)
app = make_celery(SETTINGS.broker_url, NODE)
#: A public sample travels to the API inside a task's answer; samples are small by design.
MAX_SAMPLE_BYTES = 32 * 1024 * 1024
JOB_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
DIRECTORY_NAME = re.compile(r"[A-Za-z0-9_-]{1,100}")  # a dataset's: its name and an id
#: Seconds between a running task's heartbeats (see _heartbeat).
HEARTBEAT_SECONDS = float(os.environ.get("UNSEEN_HEARTBEAT_SECONDS", "5"))
#: A job's sandbox containers are kept between its chunks, and removed once no chunk of it
#: has come for this long (the node does not know which chunk is a job's last).
IDLE_SECONDS = SETTINGS.idle_seconds


def _own_directory(raw: str) -> Path:
    directory = Path(raw).resolve()
    root = SETTINGS.data_dir
    if root is not None and not directory.is_relative_to(root):
        raise PermissionError(f"{directory} is not under this node's data ({root})")
    return directory


@contextmanager
def _heartbeat(task: Task, progress: dict[str, int]) -> Iterator[None]:
    """Report ``progress`` (and a beat count) every HEARTBEAT_SECONDS while the body runs, so
    the reducer knows the worker is alive however long one block takes: liveness must not
    depend on what contestant code does with the data.

    The task's id is read here, in the task's thread: Celery keeps ``task.request`` per
    thread, so the beating thread would otherwise report the state of no task at all."""
    stop = threading.Event()
    task_id = task.request.id

    def beat() -> None:
        count = 0
        while not stop.wait(HEARTBEAT_SECONDS):
            count += 1
            with contextlib.suppress(Exception):  # the broker briefly away: beat next time
                task.update_state(task_id, state="PROGRESS",
                                  meta={**progress, "beat": count})  # fmt: skip

    thread = threading.Thread(target=beat, name="unseen-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def _own_file(raw: str, what: str) -> Path:
    path = Path(raw)
    if not path.is_absolute() or not path.is_file():
        raise FileNotFoundError(f"{what} {raw!r} is not an absolute path to a file on this node")
    _own_directory(str(path.resolve().parent))  # a link inside the data pointing out: refused
    return path.resolve()


def _dataset_files(source_path: str, sample_path: str) -> tuple[Path, Path | None]:
    """A dataset's full file and its public sample: both this node's own, the sample a
    separate file and small enough to travel to the API. No sample ("") when the dataset's
    sample is to be synthesized from the full data."""
    source = _own_file(source_path, "source_path")
    if not sample_path:
        return source, None
    sample = _own_file(sample_path, "sample_path")
    if source == sample:
        raise ValueError("the public sample must be a separate file, never the full data itself")
    if sample.stat().st_size > MAX_SAMPLE_BYTES:
        raise ValueError(f"the sample is over {MAX_SAMPLE_BYTES >> 20} MiB; publish a smaller one")
    return source, sample


def _data_root() -> Path:
    if SETTINGS.data_dir is None:
        raise RuntimeError("this node's worker has no UNSEEN_NODE_DATA_DIR to keep datasets in")
    return SETTINGS.data_dir


@app.task(name="unseen.inspect_dataset")
def inspect_dataset(source_path: str, sample_path: str) -> dict[str, Any]:
    """The columns of a dataset file and of its public sample, before anything is written:
    the API checks the organizer's declaration against them. The source's SHA-256 tells the
    API whether the same bytes (the same people) are registered already."""
    source, sample = _dataset_files(source_path, sample_path)
    columns, _rows = parquet_columns(source)
    sample_columns, sample_rows = parquet_columns(sample) if sample else (columns, 0)
    with source.open("rb") as file:
        sha256 = hashlib.file_digest(file, "sha256").hexdigest()
    return {"columns": columns, "sample_columns": sample_columns, "sample_rows": sample_rows,
            "sha256": sha256}  # fmt: skip


# Registering and synthesizing may outlast the broker's visibility timeout: acknowledged on
# receipt, so Redis never hands one to a second worker while the first still runs (two
# partitions writing one dataset, two syntheses drawing noise). The API waits on their
# heartbeats and, if they stop, fails the request (it never sends one again).
@app.task(name="unseen.prepare_dataset", bind=True, acks_late=False)
def prepare_dataset(
    self: Task, name: str, source_path: str, sample_path: str, unit_column: str, blocks: int
) -> dict[str, Any]:
    """Partition a dataset into keyed-hash blocks here, under this node's data directory (the
    HMAC key stays with the blocks); send back the layout and the public sample's bytes."""
    if not DIRECTORY_NAME.fullmatch(name):
        raise ValueError(f"dataset directory name {name!r} is not a plain name")
    source, sample = _dataset_files(source_path, sample_path)  # again: files may have changed
    progress = {"done": 0}

    def partitioned(done: int, _total: int) -> None:
        progress["done"] = done
        self.update_state(state="PROGRESS", meta=dict(progress))

    # Whole or not at all (runner.staging): a worker killed half-way leaves nothing behind.
    with Staged(_data_root() / "datasets", name) as stage, _heartbeat(self, progress):
        staged = partition_dataset(source, stage.path / "blocks", unit_column, blocks,
                                   progress=partitioned)  # fmt: skip
        directory = stage.publish()
    layout = replace(staged, directory=directory / "blocks")
    return {
        "directory": str(layout.directory), "blocks": layout.blocks, "rows": layout.rows,
        "units": layout.units,
        "sample": base64.b64encode(sample.read_bytes()).decode("ascii") if sample else "",
    }  # fmt: skip


@app.task(name="unseen.synthesize_dataset", bind=True, acks_late=False)
def synthesize_dataset(
    self: Task, directory: str, declared: dict[str, Any], spec: dict[str, Any]
) -> dict[str, Any]:
    """A DP synthetic sample of one of this node's datasets (``runner.synthesize``): the rows
    stay here; only the synthetic table (bounded like a sample) and the organizers' fidelity
    report go back."""
    layout = load_layout(_own_directory(directory))
    declaration, wanted = declaration_from_wire(declared), synthesis_spec_from_wire(spec)
    with _heartbeat(self, {"done": 0}):
        made = synthesize_blocks(layout, declaration, wanted)
    if len(made.parquet) > MAX_SAMPLE_BYTES:
        raise ValueError(f"the synthetic sample is over {MAX_SAMPLE_BYTES >> 20} MiB; ask for "
                         "fewer rows")  # fmt: skip
    return {"parquet": base64.b64encode(made.parquet).decode("ascii"), "rows": made.rows,
            "report": made.report}  # fmt: skip


@app.task(name="unseen.query_blocks")
def query_blocks(
    directory: str, blocks: list[int], plan: dict[str, Any], policy: dict[str, Any]
) -> dict[str, Any]:
    """Bounded partial aggregates of these blocks of one dataset, summed."""
    layout = load_layout(_own_directory(directory))
    parsed_policy = policy_from_wire(policy)
    parsed = parse_plan(plan, parsed_policy)  # validated again here: the node trusts no one
    return partials_to_wire(chunk_partials(layout, blocks, parsed, parsed_policy.unit_column))


def _sandbox(limits: SandboxLimits) -> DockerSandbox:
    """A sandbox of this node's, as its settings ask (the image, isolation and runtime)."""
    return DockerSandbox(NODE, limits, SETTINGS.runner_image, SETTINGS.isolation, SETTINGS.runtime)


class _Sandboxes:
    """This worker process's sandbox, made on first use (after Celery forked it), and the
    jobs whose containers it keeps warm between chunks."""

    def __init__(self) -> None:
        self._sandbox: DockerSandbox | None = None
        self._limits: SandboxLimits | None = None
        self._last_used: dict[Path, float] = {}
        self._busy: dict[Path, int] = {}
        self._lock = threading.Lock()
        self._reaper: threading.Thread | None = None

    def acquire(self, code_path: Path, limits: SandboxLimits) -> DockerSandbox:
        with self._lock:
            if self._sandbox is None or limits != self._limits:
                if self._sandbox is not None:
                    self._finish_all_locked()
                self._sandbox = _sandbox(limits)
                self._limits = limits
            self._busy[code_path] = self._busy.get(code_path, 0) + 1
            if self._reaper is None:
                self._reaper = threading.Thread(target=self._reap, daemon=True)
                self._reaper.start()
            return self._sandbox

    def release(self, code_path: Path) -> None:
        with self._lock:
            self._busy[code_path] = max(0, self._busy.get(code_path, 1) - 1)
            self._last_used[code_path] = time.monotonic()

    def _reap(self) -> None:
        while True:
            time.sleep(max(0.2, min(1.0, IDLE_SECONDS / 2)))
            now = time.monotonic()
            with self._lock:
                idle = [path for path, used in self._last_used.items()
                        if not self._busy.get(path) and now - used > IDLE_SECONDS]  # fmt: skip
                for path in idle:
                    try:
                        self._finish_locked(path)
                    except Exception:  # Docker briefly away: try again at the next sweep
                        log.warning("could not remove the containers of %s yet", path.parent)

    def _finish_locked(self, code_path: Path) -> None:
        if self._sandbox is not None:
            self._sandbox.finish_job(code_path)
        self._last_used.pop(code_path, None)
        self._busy.pop(code_path, None)
        shutil.rmtree(code_path.parent, ignore_errors=True)

    def _finish_all_locked(self) -> None:
        for path in list(self._last_used):
            self._finish_locked(path)

    def finish_all(self) -> None:
        with self._lock:
            self._finish_all_locked()


SANDBOXES = _Sandboxes()


@worker_process_shutdown.connect
def _remove_containers(**_: object) -> None:
    SANDBOXES.finish_all()


@worker_ready.connect
def _reap_stopped_containers(**_: object) -> None:
    """Remove the stopped sandboxes a killed worker of this node left behind (its zygotes exit
    when it dies, but stay listed); running ones may be another live worker's."""
    sandbox = _sandbox(SandboxLimits())
    reaped = sandbox.reap(exited_only=True)
    if reaped:
        log.warning("removed %d stopped sandbox container(s) of node %s", reaped, NODE)
    log.warning("node %s: sandboxes run under %s", NODE, sandbox.describe())


@worker_ready.connect
def _clean_interrupted_registrations(**_: object) -> None:
    """Temporary directories of registrations a killed worker of this node left half-written."""
    if SETTINGS.data_dir is not None:
        clean_leftovers(SETTINGS.data_dir / "datasets")


@worker_init.connect
def _check_configuration(**_: object) -> None:
    """A worker without its node's label would consume a queue no one sends to."""
    if SETTINGS.label is None:
        raise RuntimeError("set UNSEEN_NODE to this data node's label (the -Q node.<label>)")


@functools.lru_cache(maxsize=16)
def _policy_problem(code: str) -> str | None:
    """The policy's first objection to this code, checked once per worker process and job
    rather than once per chunk (parsing it costs milliseconds)."""
    violations = check_code(code)
    return str(violations[0]) if violations else None


# Acknowledged on receipt, not after: an aggregate chunk may outlast the broker's visibility
# timeout, and would be handed out again while it runs; a chunk lost with its worker is sent
# again by the reducer instead (no heartbeat for resend_seconds).
@app.task(name="unseen.run_blocks", bind=True, acks_late=False)
def run_blocks(
    self: Task,
    job_id: str,
    directory: str,
    code: str,
    blocks: list[int],
    outputs: list[dict[str, Any]],
    limits: dict[str, Any],
) -> list[dict[str, Any]]:
    """Run these blocks of an aggregate job in this node's sandbox; each block's output parsed
    strictly and clipped here, its stderr's end kept for the organizer. Progress after every
    block tells the reducer the chunk is alive (a long chunk is not sent again)."""
    if not JOB_ID.fullmatch(job_id):
        raise ValueError(f"job id {job_id!r} is not a plain name")
    problem = _policy_problem(code)  # the API checked it; the node trusts no one
    if problem:
        raise ValueError(f"code refused by the policy: {problem}")
    layout = load_layout(_own_directory(directory))
    specs = outputs_from_wire(outputs)
    sandbox_limits = limits_from_wire(limits)
    # One copy per worker process, removed with the job's containers when the job goes idle
    # (taken as busy before it is written, so the idle sweep cannot remove it under us).
    name = f"{job_id}-{os.getpid()}"
    sandbox = SANDBOXES.acquire(SETTINGS.jobs_dir / name / CODE_FILE, sandbox_limits)
    answers: list[dict[str, Any]] = []
    progress = {"done": 0}
    try:
        code_path = write_code(SETTINGS.jobs_dir, name, code)
        job = AggregateJob(code_path, layout, specs, Combine.SUM, 0.0)
        with _heartbeat(self, progress):
            for result in local_block_results(job, sandbox, 1, blocks, finish=False):
                answers.append(block_result_to_wire(result))
                progress["done"] = len(answers)
                self.update_state(state="PROGRESS", meta=dict(progress))
    finally:
        SANDBOXES.release(SETTINGS.jobs_dir / name / CODE_FILE)
    return answers

"""Test doubles of the server's seams (``runner.nodes``): an in-memory sandbox, and the real app
built around it in this process, served over real HTTP. What they leave out is Docker, so the
tests that use them run in `make unit`; the real sandbox has tests of its own (test_sandbox,
test_zygote, test_hardening) and the real-Docker end-to-end tests run in `make test`."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import uvicorn

from api.app import create_app
from api.launcher import free_port
from api.settings import Settings
from privacy.query import Partials
from runner.nodes import LocalNodes, Nodes
from runner.query import QueryJob, block_chunks, chunk_partials
from runner.schedule import ScheduleRules
from sandbox.container import BlockRun, RunEnd, SandboxLimits

#: A public schedule of next to nothing: a job held for its schedule is over at once.
INSTANT_SCHEDULE = ScheduleRules(
    min_block_seconds=0.05, default_block_seconds=0.1, start_seconds=0.0,
    block_overhead_seconds=0.0, query_seconds=0.1,
)  # fmt: skip


def printed(values: dict[str, float]) -> bytes:
    """What a block's harness prints for an analysis returning ``values``."""
    return json.dumps({"status": "ok", "values": values}).encode()


class FakeSandbox:
    """A sandbox (``runner.nodes.Sandbox``) that runs nothing: each block "prints" the fixed
    values given, or whatever ``run`` returns for it, at once. It records each block run and
    each job finished, for tests that look at what the runner asked of it."""

    image = "unseen-runner:fake"

    def __init__(
        self,
        values: dict[str, float] | None = None,
        run: Callable[[Path, Path], BlockRun] | None = None,
    ) -> None:
        self._values = values or {"n": 1.0}
        self.run = run  # a test may change it between jobs
        self.runs: list[tuple[Path, Path, float | None]] = []
        self.finished: list[Path] = []
        self._lock = threading.Lock()

    def __call__(
        self, code_path: Path, block_path: Path, wall_seconds: float | None = None
    ) -> BlockRun:
        with self._lock:
            self.runs.append((code_path, block_path, wall_seconds))
        if self.run is not None:
            return self.run(code_path, block_path)
        return BlockRun(RunEnd.EXITED, 0, printed(self._values), b"", 0.001, sandbox="fake/memory")

    def finish_job(self, code_path: Path) -> None:
        with self._lock:
            self.finished.append(code_path)

    def image_problem(self) -> str | None:
        return None

    def describe(self) -> str:
        return "fake/memory"

    def reap(self, exited_only: bool = False) -> int:
        return 0


class InThreadNodes(LocalNodes):
    """This server as its only node, its query blocks read in the worker's own thread: no
    query processes to start (a second or two), for tests whose datasets are a few blocks."""

    def partials(
        self, job: QueryJob, progress: Callable[[int, int], None] | None = None
    ) -> Iterator[Partials]:
        done = 0
        for chunk in block_chunks(job.layout.blocks):
            yield chunk_partials(job.layout, chunk, job.plan, job.unit_column)
            done += len(chunk)
            if progress is not None:
                progress(done, job.layout.blocks)


def fake_settings(data_dir: Path, database_url: str | None = None, node: str = "fake") -> Settings:
    """A server's settings for tests, without the environment: SQLite in ``data_dir`` unless
    a database is named, and an instant schedule."""
    data_dir.mkdir(parents=True, exist_ok=True)
    return Settings(
        data_dir=data_dir.resolve(),
        database_url=database_url or f"sqlite:///{data_dir.resolve() / 'unseen.db'}",
        bootstrap_token="fake-bootstrap-token",
        node=node,
        slots=2,
        default_blocks=4,
        limits=SandboxLimits(wall_seconds=5.0),
        schedule=INSTANT_SCHEDULE,
    )


class InProcessServer:
    """The real app (``create_app``) with the given seams, served by uvicorn on a thread of
    this process: real HTTP, real database, no Docker. ``url`` and ``stop()`` as
    ``api.launcher.ServerProcess``. Its nodes are by default ``InThreadNodes`` around
    ``sandbox``."""

    def __init__(
        self, settings: Settings, sandbox: FakeSandbox, nodes: Nodes | None = None
    ) -> None:
        self.settings, self.sandbox = settings, sandbox
        self.bootstrap_token = settings.bootstrap_token
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        nodes = nodes or InThreadNodes(settings.node, sandbox, settings.slots)
        app = create_app(settings, sandbox=sandbox, nodes=nodes)
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="fake-server", daemon=True)

    def start(self, timeout: float = 30.0) -> InProcessServer:
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the in-process server did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(30)

"""Shared fixtures: the real runner image, real generated data, a real server over real HTTP."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import docker
import pandas as pd
import pytest

from api.launcher import ServerProcess, free_port
from client.api import UnseenClient
from sandbox.container import BlockRun, SandboxLimits, run_block
from sandbox.runtime import registered_runtimes
from sandbox.zygote import ZygoteContainer
from tests.fakes import FakeSandbox, InProcessServer, fake_settings

ROOT = Path(__file__).resolve().parents[1]
# The suite's servers and nodes run their sandboxes under runc unless a test says otherwise:
# the runsc cases are the tests that name it (test_hardening, test_sandbox, test_runtime),
# so a machine with runsc registered (auto would pick it) runs the same suite in the same time.
os.environ.setdefault("UNSEEN_RUNTIME", "runc")
#: Blocks per dataset in the end-to-end tests: small, so each job is a few seconds.
TEST_BLOCKS = 6
TINY_BLOCKS = 2
#: A short public schedule for test servers (runner.schedule): every full-data job is held
#: for its whole length, so the suite's jobs stay a few seconds each. A test may override.
FAST_SCHEDULE = {
    "UNSEEN_MIN_BLOCK_SECONDS": "0.1",
    "UNSEEN_DEFAULT_BLOCK_SECONDS": "2",
    "UNSEEN_SCHEDULE_START_SECONDS": "2",
    "UNSEEN_BLOCK_OVERHEAD_SECONDS": "0.2",
    "UNSEEN_QUERY_SECONDS": "1",
}


#: Fixtures that need the Docker engine: a test using any of them (directly or through
#: another fixture) is marked ``docker`` at collection, so `make unit` leaves it out.
DOCKER_FIXTURES = frozenset({"runner_image", "deployment", "docker_client"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if DOCKER_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.docker)


@pytest.fixture(scope="session")
def runner_image() -> str:
    from sandbox.image import build_runner_image

    return build_runner_image()


def _generate(out: Path, size: str, seed: int) -> Path:
    """What `unseen data generate` writes, made in this process (no interpreter to start)."""
    from syndata.soda import write_all

    write_all(out, size, seed)
    return out


@dataclass(frozen=True)
class SodaData:
    full: Path
    sample: Path

    def entries(self, which: Path) -> dict[str, dict[str, object]]:
        manifest = json.loads((which / "manifest.json").read_text())
        return {entry["name"]: entry for entry in manifest["datasets"]}

    def registration(self, name: str, blocks: int, as_name: str | None = None) -> dict[str, object]:
        full = self.entries(self.full)[name]
        sample = self.entries(self.sample)[name]
        return {
            "name": as_name or name,
            "source_path": str(self.full / str(full["file"])),
            "sample_path": str(self.sample / str(sample["file"])),
            "unit_column": full["unit_column"],
            "bounds": full.get("bounds", {}),
            "key_sets": full.get("key_sets", {}),
            "blocks": blocks,
            "team_epsilon": 10.0,
            # One contest-wide cap for every dataset of this file (they share its population)
            # across the whole suite's teams: large, so tests of other things never meet it.
            "population_epsilon": 100_000.0,
        }


@pytest.fixture(scope="session")
def soda(tmp_path_factory: pytest.TempPathFactory) -> SodaData:
    root = tmp_path_factory.mktemp("soda")
    return SodaData(_generate(root / "full", "test", 1), _generate(root / "sample", "test", 2))


@dataclass
class Deployment:
    server: ServerProcess | InProcessServer
    organizer: UnseenClient
    contestant: UnseenClient
    team: dict[str, object]

    def new_contestant(self, team_name: str, user: str) -> UnseenClient:
        """A team of one, admitted to round two with everything that takes."""
        return admitted_member(self.organizer, team_name, user)


#: A one-page "signed licence" for tests: a file that starts like a PDF.
LICENCE_PDF = b"%PDF-1.4\n% signed licence agreement (test)\n%%EOF\n"


def admitted_member(organizer: UnseenClient, team_name: str, user: str) -> UnseenClient:
    """Team, member, licence uploaded and approved, identity verified, team admitted: the
    whole way to round two, through the API as a contest would do it."""
    team = organizer.create_team(team_name)
    member = organizer.with_token(organizer.add_member(team["id"], user)["token"])
    licence = member.upload_licence(team_name, LICENCE_PDF, "licence.pdf")
    organizer.approve_licence(licence["id"])
    organizer.verify_identity(user)
    organizer.admit(team_name)
    return member


def open_contest(organizer: UnseenClient, name: str = "soda-test") -> None:
    """A contest whose round one opened yesterday and round two an hour ago."""
    now = datetime.now(UTC)
    organizer.create_contest(name, "the test suite's contest")
    organizer.set_round(name, 1, now - timedelta(days=1), now + timedelta(days=30))
    organizer.set_round(name, 2, now - timedelta(hours=1), now + timedelta(days=30))


def start_deployment(data_dir: Path, soda: SodaData, env: dict[str, str]) -> Deployment:
    # A node label of its own: a server reaps its node's sandbox containers when it starts, so
    # two servers sharing a label would remove each other's running blocks.
    env = {"UNSEEN_NODE": f"test-{secrets.token_hex(3)}", **FAST_SCHEDULE, **env}
    token = secrets.token_urlsafe(16)
    return deploy(ServerProcess(data_dir, token, env=env).start(), soda)


def start_fake_deployment(
    data_dir: Path,
    soda: SodaData,
    database_url: str | None = None,
    node: str = "fake",
    sandbox: FakeSandbox | None = None,
) -> Deployment:
    """``start_deployment`` without Docker: the real app in this process, its sandbox an
    in-memory fake (tests/fakes.py; by default every block prints ``{"n": 1.0}``), an
    instant schedule."""
    settings = fake_settings(data_dir, database_url, node)
    return deploy(InProcessServer(settings, sandbox or FakeSandbox()).start(), soda)


def deploy(server: ServerProcess | InProcessServer, soda: SodaData) -> Deployment:
    """An organizer, an open contest, an admitted team and two datasets on a fresh server."""
    anonymous = UnseenClient(server.url, server.bootstrap_token)
    organizer = anonymous.with_token(anonymous.create_organizer("olga")["token"])
    open_contest(organizer)
    contestant = admitted_member(organizer, "team-alpha", "alice")
    team = next(t for t in organizer.teams_status() if t["name"] == "team-alpha")
    organizer.register_dataset(**soda.registration("transport_cards", TEST_BLOCKS))
    organizer.register_dataset(
        **soda.registration("transport_cards", TINY_BLOCKS, as_name="cards_tiny")
    )
    return Deployment(server, organizer, contestant, team)


@pytest.fixture(scope="session")
def deployment(
    runner_image: str, soda: SodaData, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Deployment]:
    """One embedded server for the suite; short block wall-clock so timeouts test quickly."""
    env = {"UNSEEN_BLOCK_SECONDS": "8", "UNSEEN_SLOTS": "2", "UNSEEN_BLOCK_MEMORY_MB": "512"}
    deployed = start_deployment(tmp_path_factory.mktemp("server"), soda, env)
    yield deployed
    deployed.server.stop()


# --- the sandbox alone, without a server -------------------------------------------

SANDBOX_NODE = "test-sandbox"


@pytest.fixture(scope="session")
def docker_client() -> docker.DockerClient:
    return docker.from_env()


def leftovers(client: docker.DockerClient, node: str = SANDBOX_NODE) -> list[object]:
    return client.containers.list(
        all=True, ignore_removed=True, filters={"label": f"unseen.node={node}"}
    )


#: The OCI runtimes every sandbox test runs under: runc, and gVisor's runsc (the second wall,
#: scripts/runsc-setup, which `make test` and .ci/run do): a missing runsc fails, never skips.
RUNTIMES = ["runc", "runsc"]
#: The (isolation form, runtime) pairs the hostile tests try: every pair a node can run. The
#: zygote form runs under runc only: Debian 12's gVisor does not isolate mount namespaces, so
#: its zygote refuses to start (sandbox.runtime.ZYGOTE_UNDER_RUNSC, test_runtime.py).
SANDBOX_FORMS = [
    ("container", "runc"),
    ("zygote", "runc"),
    ("container", "runsc"),
]


def require_runtime(client: docker.DockerClient, name: str) -> str:
    if name not in registered_runtimes(client):
        pytest.fail(f"the Docker engine has no runtime {name!r}: run `make runsc`")
    return name


@pytest.fixture(params=RUNTIMES)
def runtime(request: pytest.FixtureRequest, docker_client: docker.DockerClient) -> str:
    """Each sandbox test once per runtime."""
    return require_runtime(docker_client, str(request.param))


class Sandbox:
    """Runs a source string on a three-row block in the real runner image, hardened, in one
    of the two isolation forms: ``container`` (a container per block) or ``zygote`` (a fresh
    process and uid per block inside a slot container, here a fresh slot per run), under one
    OCI runtime (runc or runsc)."""

    def __init__(
        self,
        client: docker.DockerClient,
        image: str,
        work: Path,
        form: str = "container",
        runtime: str = "runc",
    ) -> None:
        self.client, self.image, self.work, self.form = client, image, work, form
        self.runtime = runtime
        work.chmod(0o755)
        self.block = work / "block.parquet"
        pd.DataFrame({"card_id": [1, 1, 2], "fare": [3.0, 4.0, 5.0]}).to_parquet(self.block)
        self.block.chmod(0o644)

    @property
    def scratch(self) -> str:
        """The one writable directory a block's code has in this form."""
        return "/tmp" if self.form == "container" else "/scratch/b0"

    @property
    def scratch_mount(self) -> str:
        return "/tmp" if self.form == "container" else "/scratch"

    def run(self, source: str, limits: SandboxLimits | None = None) -> BlockRun:
        code = self.work / "analysis.py"
        code.write_text(source)
        code.chmod(0o644)
        labels = {"unseen.node": SANDBOX_NODE}
        if self.form == "container":
            return run_block(
                self.client, self.image, code, self.block, limits or SandboxLimits(), labels,
                self.runtime,
            )  # fmt: skip
        slot = ZygoteContainer(
            self.client, self.image, code, limits or SandboxLimits(), labels, self.runtime
        )
        try:
            return slot.run(self.block)
        finally:
            slot.close()


@pytest.fixture
def sandbox(
    docker_client: docker.DockerClient, runner_image: str, tmp_path: Path, runtime: str
) -> Sandbox:
    """A container per block, under each runtime."""
    return Sandbox(docker_client, runner_image, tmp_path, "container", runtime)


@pytest.fixture(params=SANDBOX_FORMS, ids=["-".join(pair) for pair in SANDBOX_FORMS])
def any_sandbox(
    request: pytest.FixtureRequest,
    docker_client: docker.DockerClient,
    runner_image: str,
    tmp_path: Path,
) -> Sandbox:
    """The same hostile test against every isolation form under every runtime it runs on."""
    form, runtime = request.param
    require_runtime(docker_client, runtime)
    return Sandbox(docker_client, runner_image, tmp_path, form, runtime)


@pytest.fixture
def slot_for(runner_image: str, tmp_path: Path) -> Iterator[object]:
    """Zygote containers, under runc (the one runtime that offers the form here)."""
    slots: list[ZygoteContainer] = []

    def make(source: str, limits: SandboxLimits | None = None) -> ZygoteContainer:
        code = tmp_path / f"analysis{len(slots)}.py"
        code.write_text(source)
        code.chmod(0o644)
        slot = ZygoteContainer(
            docker.from_env(), runner_image, code, limits or SandboxLimits(),
            {"unseen.node": "test-zygote"}, "runc",
        )  # fmt: skip
        slots.append(slot)
        return slot

    yield make
    for slot in slots:
        slot.close()


# --- PostgreSQL ---------------------------------------------------------------------------------

POSTGRES_ADMIN = "postgresql://unseen:unseen@127.0.0.1:5432/postgres"
#: A test's database parameter: both stores, the PostgreSQL case marked ``postgres``.
DATABASES = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


@contextmanager
def postgres_database() -> Iterator[str]:
    """A fresh database on the loopback PostgreSQL (scripts/system-setup), dropped afterwards."""
    import psycopg

    name = f"unseen_test_{secrets.token_hex(4)}"
    try:
        admin = psycopg.connect(POSTGRES_ADMIN, autocommit=True)
    except psycopg.OperationalError as exc:
        problem = f"PostgreSQL is not reachable on 127.0.0.1:5432 ({exc})"
        if os.environ.get("UNSEEN_UNIT") == "1":  # `make unit` only; `make test` never skips
            pytest.skip(f"{problem}; skipped by `make unit` (`make test` runs it)")
        pytest.fail(f"{problem}; run scripts/system-setup")
    with admin:
        admin.execute(f'create database "{name}"')
        try:
            yield f"postgresql+psycopg://unseen:unseen@127.0.0.1:5432/{name}"
        finally:
            admin.execute(f'drop database "{name}" with (force)')


class RedisServer:
    """A throwaway redis-server on a free loopback port, without persistence (so a restart
    loses what it held, as a crashed broker would); stop() and start() again on the same port."""

    def __init__(self, directory: Path) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._directory = directory
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> RedisServer:
        import redis

        self._process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self._directory)],
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
        client = redis.Redis(port=self.port)
        for _ in range(200):
            try:
                client.ping()
                break
            except redis.ConnectionError:
                time.sleep(0.05)
        return self

    def stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            self._process.wait(10)
            self._process = None


@contextmanager
def redis_server() -> Iterator[RedisServer]:
    with tempfile.TemporaryDirectory(prefix="unseen-redis-") as directory:
        server = RedisServer(Path(directory)).start()
        try:
            yield server
        finally:
            server.stop()

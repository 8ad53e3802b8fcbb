"""The sandbox as the runner sees it: a callable that runs one block in a fresh container."""

from __future__ import annotations

import logging
import threading
from dataclasses import replace
from pathlib import Path

import docker
from docker.errors import DockerException

from sandbox.container import (
    JOB_LABEL,
    NODE_LABEL,
    BlockRun,
    RunEnd,
    SandboxLimits,
    reap_orphans,
    run_block,
)
from sandbox.image import ImageMissingError, ensure_runner_image, runner_image_tag
from sandbox.runtime import (
    RUNC,
    RUNTIMES,
    RuntimeUnavailableError,
    choose_isolation,
    choose_runtime,
    registered_runtimes,
)
from sandbox.zygote import ZygotePool

log = logging.getLogger(__name__)


class DockerSandbox:
    """Runs blocks in hardened containers, in one of two forms (docs/isolation.md):

    * ``zygote`` (runc's default): a container per worker slot and job; each block a fresh
      process under a fresh uid, streamed its block over a pipe — tens of milliseconds;
    * ``container`` (runsc's default): a fresh container per block — about a second (runc) or
      two (runsc) per block.

    Both run under the node's OCI runtime (``sandbox.runtime``): ``runtime`` is the setting
    (runc, runsc, or None/auto: runsc when the engine has it); ``isolation`` None takes the
    runtime's default. Both are resolved once, on first need.
    """

    def __init__(
        self,
        node: str,
        limits: SandboxLimits,
        image: str | None = None,
        isolation: str | None = None,
        runtime: str | None = None,
    ) -> None:
        # misspelt settings fail here, before any Docker
        choose_isolation(isolation, RUNC)
        choose_runtime(runtime, RUNTIMES)
        self._node = node
        self._limits = limits
        self._local = threading.local()
        self._image = image or runner_image_tag()
        self._requested_isolation = isolation
        self._isolation = isolation or "zygote"  # until the runtime is known
        self._requested_runtime = runtime
        self._runtime: str | None = None
        self._runtime_lock = threading.Lock()
        self._pool: ZygotePool | None = None

    @property
    def image(self) -> str:
        return self._image

    @property
    def isolation(self) -> str:
        """The isolation form (the runtime's default until the runtime is resolved)."""
        return self._isolation

    @property
    def runtime(self) -> str:
        """The runtime every sandbox of this node runs under. Raises RuntimeUnavailableError
        (the setting names one the engine lacks) or DockerException (no engine yet)."""
        with self._runtime_lock:
            if self._runtime is None:
                registered = registered_runtimes(self._client())
                runtime = choose_runtime(self._requested_runtime, registered)
                self._isolation = choose_isolation(self._requested_isolation, runtime)
                self._runtime = runtime
                if self._isolation == "zygote":
                    labels = {NODE_LABEL: self._node}
                    self._pool = ZygotePool(
                        self._client, self._image, self._limits, labels, self._runtime
                    )
            return self._runtime

    def describe(self) -> str:
        """``runtime/isolation``, as organizers see it per job (the setting, while the engine
        cannot be asked). Raises RuntimeUnavailableError: the setting names a runtime the
        engine lacks."""
        try:
            return f"{self.runtime}/{self._isolation}"
        except DockerException:
            return f"{self._requested_runtime or 'auto'}/{self._isolation} (engine unreachable)"

    def _client(self) -> docker.DockerClient:
        client = getattr(self._local, "client", None)
        if client is None:
            client = self._local.client = docker.from_env(timeout=120)
        return client

    def image_problem(self) -> str | None:
        """None when the runner image and the runtime are there, else what to run."""
        try:
            ensure_runner_image(self._client(), self._image)
            self.runtime  # noqa: B018 - resolving it is the check
        except (ImageMissingError, RuntimeUnavailableError) as exc:
            return str(exc)
        except DockerException as exc:
            return f"cannot reach the Docker engine ({exc}); start Docker and retry"
        return None

    def reap(self, exited_only: bool = False) -> int:
        try:
            return reap_orphans(self._client(), self._node, exited_only)
        except DockerException:
            log.warning("could not reach Docker to reap orphaned sandbox containers")
            return 0

    def __call__(
        self, code_path: Path, block_path: Path, wall_seconds: float | None = None
    ) -> BlockRun:
        """Never raises: a runtime that cannot be had is a sandbox error (nothing ran)."""
        try:
            runtime = self.runtime
        except (DockerException, RuntimeUnavailableError) as exc:
            message = f"{type(exc).__name__}: {exc}".encode()
            return BlockRun(RunEnd.SANDBOX_ERROR, None, b"", message, 0.0)
        if self._pool is not None:
            run = self._pool(code_path, block_path, wall_seconds)
        else:
            limits = self._limits
            if wall_seconds is not None:
                limits = replace(limits, wall_seconds=min(wall_seconds, limits.wall_seconds))
            labels = {NODE_LABEL: self._node, JOB_LABEL: code_path.parent.name}
            run = run_block(
                self._client(), self._image, code_path, block_path, limits, labels, runtime
            )
        return replace(run, sandbox=f"{runtime}/{self._isolation}")

    def finish_job(self, code_path: Path) -> None:
        """Remove the job's slot containers (zygote form); nothing to do per block otherwise."""
        if self._pool is not None:
            self._pool.finish_job(code_path)

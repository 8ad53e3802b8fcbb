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
    SandboxLimits,
    reap_orphans,
    run_block,
)
from sandbox.image import ImageMissingError, ensure_runner_image, runner_image_tag
from sandbox.zygote import ZygotePool

log = logging.getLogger(__name__)


ISOLATION_FORMS = ("zygote", "container")


class DockerSandbox:
    """Runs blocks in hardened containers, in one of two forms (docs/isolation.md):

    * ``zygote`` (default): a container per worker slot and job; each block a fresh process
      under a fresh uid, streamed its block over a pipe — tens of milliseconds per block;
    * ``container``: a fresh container per block — about a second per block.
    """

    def __init__(
        self,
        node: str,
        limits: SandboxLimits,
        image: str | None = None,
        isolation: str = "zygote",
    ) -> None:
        if isolation not in ISOLATION_FORMS:
            raise ValueError(f"isolation must be one of {ISOLATION_FORMS}; got {isolation!r}")
        self._node = node
        self._limits = limits
        self._local = threading.local()
        self._image = image or runner_image_tag()
        self._pool = (
            ZygotePool(self._client, self._image, limits, {NODE_LABEL: node})
            if isolation == "zygote"
            else None
        )

    @property
    def image(self) -> str:
        return self._image

    def _client(self) -> docker.DockerClient:
        client = getattr(self._local, "client", None)
        if client is None:
            client = self._local.client = docker.from_env(timeout=120)
        return client

    def image_problem(self) -> str | None:
        """None when the runner image is present, else what to run to build it."""
        try:
            ensure_runner_image(self._client(), self._image)
        except ImageMissingError as exc:
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
        if self._pool is not None:
            return self._pool(code_path, block_path, wall_seconds)
        limits = self._limits
        if wall_seconds is not None:
            limits = replace(limits, wall_seconds=min(wall_seconds, limits.wall_seconds))
        labels = {NODE_LABEL: self._node, JOB_LABEL: code_path.parent.name}
        return run_block(self._client(), self._image, code_path, block_path, limits, labels)

    def finish_job(self, code_path: Path) -> None:
        """Remove the job's slot containers (zygote form); nothing to do per block otherwise."""
        if self._pool is not None:
            self._pool.finish_job(code_path)

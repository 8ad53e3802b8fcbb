"""A data node's worker settings, read once from the environment (``UNSEEN_*``) when the worker
imports its tasks: a misspelt setting stops the worker at start, not its first job.

The server has its own (``api.settings``); the two share the sandbox's names, so a node and
a server given the same ``UNSEEN_ISOLATION``/``UNSEEN_RUNTIME`` run blocks the same way.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from sandbox.docker_sandbox import ISOLATION_FORMS
from sandbox.runtime import RUNTIMES, choose_runtime


@dataclass(frozen=True)
class NodeSettings:
    label: str | None = None  # UNSEEN_NODE: the worker consumes the queue node.<label>
    broker_url: str = "redis://127.0.0.1:6379/0"
    data_dir: Path | None = None  # the only tree a task may read; datasets are kept under it
    jobs_dir: Path = Path(tempfile.gettempdir()) / "unseen-node-jobs"  # job code (bind-mounted)
    runner_image: str | None = None  # None: the content-hashed tag of images/runner
    isolation: str = "zygote"  # or "container": a fresh container per block
    runtime: str | None = None  # runc, runsc; None (auto): runsc when the engine has it
    idle_seconds: float = 10.0  # a job's warm sandboxes are removed after this long unused

    @property
    def node(self) -> str:
        """The label sandboxes are tagged with ("local" before one is set)."""
        return self.label or "local"


def load_node_settings(environ: Mapping[str, str] = os.environ) -> NodeSettings:
    isolation = environ.get("UNSEEN_ISOLATION") or "zygote"
    if isolation not in ISOLATION_FORMS:
        raise ValueError(f"UNSEEN_ISOLATION must be one of {ISOLATION_FORMS}; got {isolation!r}")
    runtime = environ.get("UNSEEN_RUNTIME") or None
    choose_runtime(runtime, RUNTIMES)  # a misspelt runtime fails here, before any Docker
    data_dir = environ.get("UNSEEN_NODE_DATA_DIR")
    jobs_dir = environ.get("UNSEEN_NODE_JOBS_DIR")
    return NodeSettings(
        label=environ.get("UNSEEN_NODE") or None,
        broker_url=environ.get("UNSEEN_BROKER_URL") or NodeSettings.broker_url,
        data_dir=Path(data_dir).resolve() if data_dir else None,
        jobs_dir=Path(jobs_dir) if jobs_dir else NodeSettings.jobs_dir,
        runner_image=environ.get("UNSEEN_RUNNER_IMAGE") or None,
        isolation=isolation,
        runtime=runtime,
        idle_seconds=float(environ.get("UNSEEN_NODE_IDLE_SECONDS") or NodeSettings.idle_seconds),
    )

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

from sandbox.runtime import RUNC, RUNTIMES, choose_isolation, choose_runtime


@dataclass(frozen=True)
class NodeSettings:
    label: str | None = None  # UNSEEN_NODE: the worker consumes the queue node.<label>
    broker_url: str = "redis://127.0.0.1:6379/0"
    data_dir: Path | None = None  # the only tree a task may read; datasets are kept under it
    jobs_dir: Path = Path(tempfile.gettempdir()) / "unseen-node-jobs"  # job code (bind-mounted)
    runner_image: str | None = None  # None: the content-hashed tag of images/runner
    isolation: str | None = None  # zygote, container; None: the runtime's default
    runtime: str | None = None  # runc, runsc; None (auto): runsc when the engine has it
    idle_seconds: float = 10.0  # a job's warm sandboxes are removed after this long unused

    @property
    def node(self) -> str:
        """The label sandboxes are tagged with ("local" before one is set)."""
        return self.label or "local"


def load_node_settings(environ: Mapping[str, str] = os.environ) -> NodeSettings:
    # misspelt settings fail here, before any Docker
    isolation = environ.get("UNSEEN_ISOLATION") or None
    choose_isolation(isolation, RUNC)
    runtime = environ.get("UNSEEN_RUNTIME") or None
    choose_runtime(runtime, RUNTIMES)
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

"""The server's two seams to its data: the sandbox of this node, and the transport to every node.

A job's blocks are computed where the dataset is: here, in this node's sandbox, or — when the
server has a broker — on the data node holding it, by that node's Celery worker
(``runner.celery_fanout``). :class:`Nodes` is that choice as one interface, so the job runner
(``runner.jobs``), the routes that ask a node something, and the tests that fake both, see the
same thing in either deployment shape.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Protocol

from privacy.query import Partials
from runner.node_errors import NodeUnavailable
from runner.pipeline import AggregateJob, BlockResult, BlockRunner, local_block_results
from runner.query import QueryJob, local_partials
from sandbox.container import SandboxLimits


class Sandbox(BlockRunner, Protocol):
    """What a server needs of its node's sandbox besides running blocks (``BlockRunner``):
    ``sandbox.docker_sandbox.DockerSandbox``, or a test's fake."""

    @property
    def image(self) -> str:
        """The runner image's tag, told to clients that run samples locally."""

    def image_problem(self) -> str | None:
        """None when blocks can run, else what to do about it."""

    def describe(self) -> str:
        """``runtime/isolation``, logged at start and kept per block for organizers."""

    def reap(self, exited_only: bool = False) -> int:
        """Remove this node's leftover sandboxes (a previous process's); how many."""


class Nodes(Protocol):
    """Where a job's blocks are computed, and how to ask a node for anything else."""

    def reaches(self, node: str) -> bool:
        """Whether this server can reach ``node``: its own always, others only by a broker."""

    def partials(
        self, job: QueryJob, progress: Callable[[int, int], None] | None = None
    ) -> Iterable[Partials]:
        """A query's bounded partial aggregates, chunk by chunk, from the node holding it."""

    def block_results(self, job: AggregateJob) -> Iterable[BlockResult]:
        """An aggregate job's per-block results (parsed, clipped), from the node holding it."""

    def call(self, node: str, task: str, *args: Any) -> Any:
        """One task on another node, waited for (registering or synthesizing a dataset);
        NodeUnavailable when it cannot be reached, NodeTaskFailed for its own error."""


class LocalNodes:
    """The one-machine shape: this server is its only node; blocks run in its sandbox,
    ``slots`` at a time, and query blocks in its query processes."""

    def __init__(self, own: str, run_block: BlockRunner, slots: int) -> None:
        self.own = own
        self._run_block = run_block
        self._slots = slots

    def reaches(self, node: str) -> bool:
        return node == self.own

    def partials(
        self, job: QueryJob, progress: Callable[[int, int], None] | None = None
    ) -> Iterable[Partials]:
        return local_partials(job, progress)

    def block_results(self, job: AggregateJob) -> Iterable[BlockResult]:
        return local_block_results(job, self._run_block, self._slots)

    def call(self, node: str, task: str, *args: Any) -> Any:
        raise NodeUnavailable(f"node {node!r}: this server has no broker to reach other nodes")


def connect_nodes(
    own: str,
    run_block: BlockRunner,
    slots: int,
    broker_url: str | None = None,
    wait_seconds: float = 300.0,
    resend_seconds: float = 60.0,
    limits: SandboxLimits | None = None,
) -> Nodes:
    """The server's transport: local alone, or with a broker the nodes' Celery workers too
    (Celery is imported only then)."""
    here = LocalNodes(own, run_block, slots)
    if broker_url is None:
        return here
    from runner.celery_fanout import CeleryNodes

    return CeleryNodes(here, broker_url, wait_seconds, resend_seconds, limits)

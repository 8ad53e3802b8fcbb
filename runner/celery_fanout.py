"""The trusted reducer's side of the scale-out shape: a query job's blocks go out in chunks to
the queue of the node holding the dataset; partials come back, are checked against the plan
and handed to ``run_query``, which adds them up and draws the noise once.

Exactly one answer per chunk is used, whatever the broker redelivers and however often a
chunk was sent. A node that answers no chunk within ``wait_seconds`` fails the job before any
noise is drawn (budget returned), with a reason naming the node.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Callable, Iterator

from celery import Celery
from celery.result import AsyncResult
from kombu.exceptions import OperationalError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from privacy.query import Partials
from runner.celery_app import node_queue, policy_to_wire
from runner.query import CHUNK_BLOCKS, QueryJob, block_chunks

log = logging.getLogger(__name__)
#: What a broker (or result store) that is restarting or briefly away raises.
BROKER_AWAY = (OperationalError, RedisConnectionError, RedisTimeoutError, ConnectionError)


#: Attempts at one chunk that may fail for a transient reason (the node lost its broker
#: connection while storing the answer) before the job fails with the node's error.
MAX_ATTEMPTS = 5


class NodeUnavailable(RuntimeError):
    """The node holding the dataset did not answer in time."""


class NodeTaskFailed(RuntimeError):
    """A node's task failed for a reason that running it again will not change."""


def _transient(error: BaseException | None) -> bool:
    """Whether a task's own failure was its worker losing the broker (worth sending again),
    rather than something about the blocks or the plan. Celery rebuilds a remote exception
    by name, so the name is what is compared."""
    if error is None or isinstance(error, BROKER_AWAY):
        return True
    name = type(error).__name__
    return name in {"ConnectionError", "TimeoutError", "OperationalError", "WorkerLostError"}


class CeleryBlocks:
    def __init__(
        self,
        app: Celery,
        wait_seconds: float = 300.0,
        resend_seconds: float = 60.0,
        chunk: int = CHUNK_BLOCKS,
    ) -> None:
        self._app = app
        self._wait = wait_seconds
        self._resend = resend_seconds
        self._chunk = chunk

    def partials(
        self, job: QueryJob, progress: Callable[[int, int], None] | None = None
    ) -> Iterator[Partials]:
        """Each chunk's partials as they come back. A chunk unanswered for ``resend_seconds``
        is sent again (a worker may have died holding it, or while taking it off the queue,
        which Redis cannot give back, or the broker restarted empty); the first answer wins,
        later ones are ignored. A broker briefly away is waited for, up to ``wait_seconds``
        without an answer."""
        if job.raw_plan is None or job.policy is None:
            raise ValueError("a fanned-out query needs its raw plan and the dataset's policy")
        total = job.layout.blocks
        chunks = block_chunks(total, self._chunk)
        queue = node_queue(job.node)
        directory, plan, policy = (
            str(job.layout.directory),
            dict(job.raw_plan),
            policy_to_wire(job.policy),
        )

        def send(index: int) -> None:
            sent[index] = time.monotonic()
            attempts[index].append(self._app.send_task(
                "unseen.query_blocks", args=(directory, chunks[index], plan, policy), queue=queue
            ))  # fmt: skip

        attempts: dict[int, list[AsyncResult]] = {index: [] for index in range(len(chunks))}
        failures = dict.fromkeys(attempts, 0)
        sent = dict.fromkeys(attempts, -math.inf)  # never sent: due now
        done, heard, away = 0, time.monotonic(), False
        try:
            while attempts:
                answered = False
                try:
                    for index in list(attempts):
                        ready = next((r for r in attempts[index] if r.ready()), None)
                        if ready is not None and not ready.successful():
                            # The task's own failure, not the broker's: never mistake one
                            # for the other, or a lost answer would be waited for forever.
                            self._failed(job, index, attempts, failures, ready)
                            ready, sent[index] = None, -math.inf  # due again now
                        if ready is None:
                            if time.monotonic() - sent[index] > self._resend:
                                send(index)
                            continue
                        wire = ready.get(timeout=10)
                        for other in attempts.pop(index):
                            if other is not ready:
                                other.revoke()
                        yield Partials.from_wire(wire, job.plan)
                        done += len(chunks[index])
                        answered, heard = True, time.monotonic()
                        if progress is not None:
                            progress(done, total)
                except BROKER_AWAY as exc:  # a broker restart: what it held is re-sent when due
                    if not away:
                        log.warning("broker unreachable while blocks are out (%r); retrying", exc)
                    away = True
                else:
                    away = False
                if not answered:
                    if time.monotonic() - heard > self._wait:
                        raise NodeUnavailable(
                            f"node {job.node!r} answered {done} of {total} blocks and then "
                            f"nothing for {self._wait:g} s: is its worker running "
                            f"(celery -A runner.node_tasks worker -Q {queue}), and the broker?"
                        )
                    time.sleep(0.05)
        finally:
            for pending in attempts.values():
                for result in pending:
                    with contextlib.suppress(*BROKER_AWAY):
                        result.revoke()

    @staticmethod
    def _failed(
        job: QueryJob,
        index: int,
        attempts: dict[int, list[AsyncResult]],
        failures: dict[int, int],
        result: AsyncResult,
    ) -> None:
        """Drop a failed attempt at a chunk, so it is sent again; or fail the job when the
        failure is the task's own (a missing block, a refused plan) or keeps coming back."""
        error = result.result if isinstance(result.result, BaseException) else None
        attempts[index].remove(result)
        failures[index] += 1
        if not _transient(error) or failures[index] >= MAX_ATTEMPTS:
            raise NodeTaskFailed(
                f"node {job.node!r} failed a chunk of blocks {failures[index]} time(s): "
                f"{type(error).__name__ if error else 'unknown error'}: {error}"
            )
        log.warning("node %r lost a chunk's answer (%r); sending it again", job.node, error)

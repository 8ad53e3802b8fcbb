"""The trusted reducer's side of the scale-out shape: a job's blocks go out in chunks to the
queue of the node holding the dataset. For a query, partial aggregates come back, are checked
against the plan and handed to ``run_query``; for an aggregate job, each block's parsed and
clipped values come back, are checked and handed to ``run_aggregate``. Either adds them up and
draws the noise once.

Exactly one answer per chunk is used, whatever the broker redelivers and however often a
chunk was sent. A node that answers no chunk within ``wait_seconds`` fails the job before any
noise is drawn (budget returned), with a reason naming the node.
"""

from __future__ import annotations

import contextlib
import logging
import math
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace
from typing import Any

from celery import Celery
from celery.result import AsyncResult
from celery.states import READY_STATES
from kombu.exceptions import OperationalError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from privacy.query import Partials
from runner.celery_app import NodeApps, node_queue
from runner.node_errors import NodeTaskFailed, NodeUnavailable
from runner.nodes import LocalNodes
from runner.pipeline import AggregateJob, BlockResult
from runner.query import CHUNK_BLOCKS, QueryJob, block_chunks
from runner.wire import (
    block_result_from_wire,
    limits_to_wire,
    outputs_to_wire,
    partials_from_wire,
    policy_to_wire,
)
from sandbox.container import SandboxLimits

log = logging.getLogger(__name__)
#: What a broker (or result store) that is restarting or briefly away raises.
BROKER_AWAY = (OperationalError, RedisConnectionError, RedisTimeoutError, ConnectionError)


#: Blocks per aggregate task: each block runs contestant code (tens of milliseconds to the
#: wall-clock limit), so chunks are smaller than a query's and report progress per block.
AGGREGATE_CHUNK_BLOCKS = 10
#: Attempts at one chunk that may fail for a transient reason (the node lost its broker
#: connection while storing the answer) before the job fails with the node's error.
MAX_ATTEMPTS = 5


#: Copies of one chunk out at once, at most: a chunk waiting behind others in a busy node's
#: queue shows no sign of life either, and must not be sent again and again.
MAX_OUTSTANDING = 3
#: Pause between two looks at the outstanding chunks, when the last look brought no answer.
POLL_SECONDS = 0.05


def _away(exc: BaseException) -> bool:
    """Whether an error is the broker or result store being away, however Celery wrapped it
    (e.g. a RuntimeError "retry limit exceeded" around a refused connection)."""
    seen: set[int] = set()
    error: BaseException | None = exc
    while error is not None and id(error) not in seen:
        if isinstance(error, BROKER_AWAY):
            return True
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return False


def _discard(app: Celery, results: list[AsyncResult]) -> None:
    """Revoke copies no longer needed and delete the answers already read (un-noised values
    need not wait in Redis for their expiry), off the job's path: revoking retries its
    publish for as long as the broker is away, and must never hold the job up."""
    if not results:
        return

    def run() -> None:
        with contextlib.suppress(Exception):
            app.control.revoke([result.id for result in results])
        for result in results:
            with contextlib.suppress(Exception):
                result.forget()

    threading.Thread(target=run, name="unseen-discard", daemon=True).start()


def _states(app: Celery, attempts: list[AsyncResult]) -> dict[str, tuple[str, object]]:
    """Every outstanding attempt's state and progress in one round trip to the result store
    (not one per chunk per look: with a hundred chunks out that was most of the reducer's
    work). A result not stored yet is absent: pending."""
    if not attempts:
        return {}
    backend = app.backend
    raw = backend.mget([backend.get_key_for_task(attempt.id) for attempt in attempts])
    states: dict[str, tuple[str, object]] = {}
    for attempt, value in zip(attempts, raw, strict=True):
        if value is not None:
            meta = backend.decode_result(value)
            states[attempt.id] = (str(meta.get("status")), meta.get("result"))
    return states


def _transient(error: BaseException | None) -> bool:
    """Whether a task's own failure was its worker losing the broker (worth sending again),
    rather than something about the blocks or the plan. Celery rebuilds a remote exception
    by name, so the name is what is compared."""
    if error is None or isinstance(error, BROKER_AWAY):
        return True
    name = type(error).__name__
    return name in {"ConnectionError", "TimeoutError", "OperationalError", "WorkerLostError"}


class CeleryBlocks:
    """Sends a job's blocks, in chunks, to the queue of the node holding its dataset."""

    def __init__(
        self,
        apps: Callable[[str], Celery],
        wait_seconds: float = 300.0,
        resend_seconds: float = 60.0,
        chunk: int = CHUNK_BLOCKS,
        limits: SandboxLimits | None = None,
        aggregate_chunk: int = AGGREGATE_CHUNK_BLOCKS,
    ) -> None:
        self._apps = apps  # one per node: each node's traffic under its own keys
        self._wait = wait_seconds
        self._resend = resend_seconds
        self._chunk = chunk
        self._limits = limits or SandboxLimits()
        self._aggregate_chunk = aggregate_chunk

    def partials(
        self, job: QueryJob, progress: Callable[[int, int], None] | None = None
    ) -> Iterator[Partials]:
        """Each chunk's partial aggregates as they come back, checked against the plan."""
        if job.raw_plan is None or job.policy is None:
            raise ValueError("a fanned-out query needs its raw plan and the dataset's policy")
        args = (str(job.layout.directory), dict(job.raw_plan), policy_to_wire(job.policy))
        done = 0
        for chunk, wire in self._fan_out(
            job.node, job.layout.blocks, block_chunks(job.layout.blocks, self._chunk),
            "unseen.query_blocks", lambda blocks: (args[0], blocks, args[1], args[2]),
        ):  # fmt: skip
            yield partials_from_wire(wire, job.plan)
            done += len(chunk)
            if progress is not None:
                progress(done, job.layout.blocks)
        if done != job.layout.blocks:  # never release a query over part of the data
            raise RuntimeError(f"{done} of {job.layout.blocks} blocks came back; not released")

    def block_results(self, job: AggregateJob) -> Iterator[BlockResult]:
        """Each block's parsed, clipped result as its chunk comes back, checked: exactly the
        blocks asked for, each once, with exactly the declared values."""
        code = job.code_path.read_text(encoding="utf-8")
        outputs = outputs_to_wire(job.outputs)
        limits = self._limits
        if job.block_seconds:  # the job's public T, within the node's own limit
            limits = replace(limits, wall_seconds=min(job.block_seconds, limits.wall_seconds))
        wire_limits = limits_to_wire(limits)
        directory = str(job.layout.directory)
        for chunk, wire in self._fan_out(
            job.node, job.layout.blocks, block_chunks(job.layout.blocks, self._aggregate_chunk),
            "unseen.run_blocks",
            lambda blocks: (job.job_id, directory, code, blocks, outputs, wire_limits),
        ):  # fmt: skip
            expected = frozenset(chunk)
            if not isinstance(wire, list) or len(wire) != len(chunk):
                raise ValueError(f"node {job.node!r} answered a chunk of {len(chunk)} blocks "
                                 "with the wrong number of results")  # fmt: skip
            results = [block_result_from_wire(item, job.outputs, expected) for item in wire]
            if {result.index for result in results} != expected:
                raise ValueError(f"node {job.node!r} answered some blocks twice")
            yield from results

    def _fan_out(
        self,
        node: str,
        total: int,
        chunks: list[list[int]],
        task: str,
        args: Callable[[list[int]], tuple[Any, ...]],
    ) -> Iterator[tuple[list[int], Any]]:
        """Send every chunk to the node's queue; yield (chunk, answer) once per chunk.

        A chunk with no sign of life for ``resend_seconds`` (no answer, no progress) is sent
        again: a worker may have died holding it, or while taking it off the queue, which
        Redis cannot give back, or the broker restarted empty. The first answer wins; later
        ones are ignored. A broker briefly away is waited for, up to ``wait_seconds`` without
        any sign of life from the node."""
        queue, app = node_queue(node), self._apps(node)

        def send(index: int) -> None:
            attempts[index].append(app.send_task(task, args=args(chunks[index]), queue=queue))
            sent[index] = time.monotonic()

        attempts: dict[int, list[AsyncResult]] = {index: [] for index in range(len(chunks))}
        failures = dict.fromkeys(attempts, 0)
        sent = dict.fromkeys(attempts, -math.inf)  # never sent: due now
        beats: dict[str, object] = {}  # task id -> the last progress it reported
        done, heard, away = 0, time.monotonic(), False
        try:
            while attempts:
                alive = answered = False
                try:
                    states = _states(app, [a for pending in attempts.values() for a in pending])
                    for index in list(attempts):
                        ready = None
                        for attempt in attempts[index]:
                            state, info = states.get(attempt.id, ("PENDING", None))
                            if state in READY_STATES:
                                ready = attempt
                                break
                            if state == "PROGRESS" and info != beats.get(attempt.id):
                                beats[attempt.id] = info  # a block done, or a heartbeat
                                alive, sent[index] = True, time.monotonic()
                        if ready is not None and not ready.successful():
                            # The task's own failure, not the broker's: never mistake one
                            # for the other, or a lost answer would be waited for forever.
                            self._failed(node, index, attempts, failures, ready)
                            ready, sent[index] = None, -math.inf  # due again now
                        if ready is None:
                            overdue = time.monotonic() - sent[index] > self._resend
                            if overdue and len(attempts[index]) < MAX_OUTSTANDING:
                                send(index)
                            continue
                        wire = ready.get(timeout=10)
                        spent = attempts.pop(index)
                        done += len(chunks[index])
                        alive = answered = True
                        _discard(app, spent)  # the copies still out, and this answer
                        yield chunks[index], wire
                except Exception as exc:  # a broker restart: what it held is re-sent when due
                    if not _away(exc):
                        raise
                    if not away:
                        log.warning("broker unreachable while blocks are out (%r); retrying", exc)
                    away = True
                else:
                    away = False
                if alive:
                    heard = time.monotonic()
                elif time.monotonic() - heard > self._wait:
                    raise NodeUnavailable(
                        f"node {node!r} answered {done} of {total} blocks and then "
                        f"nothing for {self._wait:g} s: is its worker running "
                        f"(celery -A runner.node_tasks worker -Q {queue}), and the broker?"
                    )
                if not answered:  # progress alone is no reason to poll again at once
                    time.sleep(POLL_SECONDS)
        finally:
            if not away:
                _discard(app, [a for pending in attempts.values() for a in pending])

    @staticmethod
    def _failed(
        node: str,
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
                f"node {node!r} failed a chunk of blocks {failures[index]} time(s): "
                f"{type(error).__name__ if error else 'unknown error'}: {error}"
            )
        log.warning("node %r lost a chunk's answer (%r); sending it again", node, error)


class RemoteNodes:
    """One task on one node, waited for: what the API needs from a node outside a job (a
    dataset's columns, its partitioning). No sign of life (an answer or progress) for
    ``wait_seconds`` is NodeUnavailable; the node's own error is NodeTaskFailed."""

    def __init__(self, apps: Callable[[str], Celery], wait_seconds: float = 300.0) -> None:
        self._apps = apps
        self._wait = wait_seconds

    def call(self, node: str, task: str, *args: Any) -> Any:
        try:
            return self._call(node, task, args)
        except (NodeUnavailable, NodeTaskFailed):
            raise
        except Exception as exc:
            if _away(exc):
                raise NodeUnavailable(
                    f"the broker is unreachable ({exc}); is Redis running?"
                ) from exc
            raise

    def _call(self, node: str, task: str, args: tuple[Any, ...]) -> Any:
        app = self._apps(node)
        result = app.send_task(task, args=args, queue=node_queue(node))
        heard, beat = time.monotonic(), None
        try:
            while True:
                state = result.state
                if state in READY_STATES:
                    answer = result.get(timeout=10, propagate=False)
                    if state != "SUCCESS":
                        # Only the error's name and text cross over: whatever class a node
                        # names is never raised here as itself.
                        raise NodeTaskFailed(f"{type(answer).__name__}: {answer}")
                    return answer
                if state == "PROGRESS" and result.info != beat:
                    heard, beat = time.monotonic(), result.info
                if time.monotonic() - heard > self._wait:
                    raise NodeUnavailable(
                        f"node {node!r} did not answer for {self._wait:g} s: is its worker "
                        f"running (celery -A runner.node_tasks worker -Q {node_queue(node)}), "
                        "and the broker?"
                    )
                time.sleep(POLL_SECONDS)
        finally:
            _discard(app, [result])


class CeleryNodes:
    """The scale-out shape (``runner.nodes.Nodes``): a dataset on another node has its blocks
    computed there, sent in chunks to that node's queue; this server's own datasets are still
    computed here (``local``)."""

    def __init__(
        self,
        local: LocalNodes,
        broker_url: str,
        wait_seconds: float = 300.0,
        resend_seconds: float = 60.0,
        limits: SandboxLimits | None = None,
    ) -> None:
        apps = NodeApps(broker_url)
        self._local = local
        self._blocks = CeleryBlocks(apps, wait_seconds, resend_seconds, limits=limits)
        self._remote = RemoteNodes(apps, wait_seconds)

    def reaches(self, node: str) -> bool:
        return True  # through the broker; whether a worker answers is seen when one is asked

    def partials(
        self, job: QueryJob, progress: Callable[[int, int], None] | None = None
    ) -> Iterable[Partials]:
        if job.node == self._local.own:  # registered on this server: its blocks are here
            return self._local.partials(job, progress)
        return self._blocks.partials(job, progress)

    def block_results(self, job: AggregateJob) -> Iterable[BlockResult]:
        if job.node == self._local.own:
            return self._local.block_results(job)
        return self._blocks.block_results(job)

    def call(self, node: str, task: str, *args: Any) -> Any:
        return self._remote.call(node, task, *args)

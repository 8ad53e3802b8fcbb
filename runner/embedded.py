"""The embedded worker: a background thread that runs queued jobs in this process.

Every server runs its jobs here, with or without a broker: submissions put a job id on an
in-memory queue and this thread runs it through :func:`runner.jobs.execute_job`, the trusted
reducer. Only the blocks may go elsewhere: to data nodes' Celery workers (``runner.nodes``).
The database stays the source of truth, so a restart loses nothing: queued jobs are picked up
again and jobs caught mid-run are failed, charged (``api.job_lifecycle.recover_interrupted``).

When the API runs in several processes, only one of them runs this worker; jobs submitted to
the others reach it through ``queued``, which the worker polls (every ``poll_seconds``) for
queued jobs it has not seen. Claiming a job is atomic in the store, so a job seen twice still
runs once.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Iterable
from typing import Protocol

from runner.jobs import JobStore, execute_job
from runner.nodes import Nodes

log = logging.getLogger(__name__)
_STOP = object()


class JobSubmitter(Protocol):
    def submit(self, job_id: str) -> None: ...

    def stop(self, timeout: float = 5.0) -> None: ...


class PolledElsewhere:
    """What an API process without the worker uses: the worker's poll finds its jobs."""

    def submit(self, job_id: str) -> None:
        pass

    def stop(self, timeout: float = 5.0) -> None:
        pass


class EmbeddedWorker:
    def __init__(
        self,
        store: JobStore,
        nodes: Nodes,
        queued: Callable[[], list[str]] | None = None,
        poll_seconds: float = 0.25,
    ) -> None:
        self._store = store
        self._nodes = nodes
        self._queued = queued
        self._poll_seconds = poll_seconds
        self._queue: queue.Queue[object] = queue.Queue()
        self._seen: set[str] = set()  # on the queue or running
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="unseen-worker", daemon=True)
        self._poller = threading.Thread(target=self._poll, name="unseen-poller", daemon=True)

    def start(self, pending: Iterable[str] = ()) -> None:
        for job_id in pending:
            self.submit(job_id)
        self._thread.start()
        if self._queued is not None:
            self._poller.start()

    def submit(self, job_id: str) -> None:
        with self._lock:
            if job_id in self._seen:
                return
            self._seen.add(job_id)
        self._queue.put(job_id)

    def stop(self, timeout: float = 5.0) -> None:
        self._stopping.set()
        self._queue.put(_STOP)
        self._thread.join(timeout)

    def _poll(self) -> None:
        assert self._queued is not None
        failing = False
        while not self._stopping.wait(self._poll_seconds):
            try:
                for job_id in self._queued():
                    self.submit(job_id)
            except Exception:  # the database may be briefly away: try again next time
                if not failing:  # once per outage, not four times a second
                    log.exception("worker: polling for queued jobs failed; retrying")
                failing = True
            else:
                if failing:
                    log.warning("worker: polling for queued jobs works again")
                failing = False

    def _loop(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            try:
                execute_job(str(item), self._store, self._nodes, hold=self._stopping.wait)
            except Exception:  # keep the worker alive; execute_job already recorded the failure
                log.exception("worker: job %s crashed", item)
            finally:
                with self._lock:
                    self._seen.discard(str(item))

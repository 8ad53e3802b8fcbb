"""The embedded worker: a background thread that runs queued jobs in this process.

The one-machine default needs no broker: submissions put a job id on an in-memory queue and
this thread runs it through :func:`runner.tasks.execute_job` — the same task code Celery runs.
The database stays the source of truth, so a restart loses nothing: queued jobs are picked up
again and jobs caught mid-run are failed with their budget returned.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Iterable

from runner.pipeline import BlockRunner
from runner.tasks import JobStore, execute_job

log = logging.getLogger(__name__)
_STOP = object()


class EmbeddedWorker:
    def __init__(self, store: JobStore, run_block: BlockRunner, slots: int) -> None:
        self._store = store
        self._run_block = run_block
        self._slots = slots
        self._queue: queue.Queue[object] = queue.Queue()
        self._thread = threading.Thread(target=self._loop, name="unseen-worker", daemon=True)

    def start(self, pending: Iterable[str] = ()) -> None:
        for job_id in pending:
            self._queue.put(job_id)
        self._thread.start()

    def submit(self, job_id: str) -> None:
        self._queue.put(job_id)

    def stop(self, timeout: float = 5.0) -> None:
        self._queue.put(_STOP)
        self._thread.join(timeout)

    def _loop(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            try:
                execute_job(str(item), self._store, self._run_block, self._slots)
            except Exception:  # keep the worker alive; execute_job already recorded the failure
                log.exception("worker: job %s crashed", item)

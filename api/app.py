"""The FastAPI application: routes, the database, and the embedded worker wired together.

The API may run in several processes (``unseen server run --processes N``): each serves
requests; the one holding ``<data-dir>/worker.lock`` also runs the jobs and is the only one that
reaps this node's leftover sandbox containers and recovers interrupted jobs at start.
"""

from __future__ import annotations

import fcntl
import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TextIO

from fastapi import FastAPI

from api import job_lifecycle
from api.body_limit import BodySizeLimit
from api.context import AppContext
from api.dataset_files import clean_datasets_dir
from api.db import Database
from api.errors import MAX_BODY_BYTES, TOO_LARGE, install_error_handlers
from api.routes import (
    accounts,
    audit,
    budget,
    contests,
    datasets,
    jobs,
    licences,
    passwords,
    queries,
    review,
    synthesis,
    tokens,
)
from api.routes import nodes as node_routes
from api.settings import Settings, load_settings
from api.store import SqlJobStore
from api.web import pages, synthesis_pages
from runner.embedded import EmbeddedWorker, JobSubmitter, PolledElsewhere
from runner.nodes import Nodes, Sandbox, connect_nodes
from runner.query import stop_query_processes
from sandbox.docker_sandbox import DockerSandbox

log = logging.getLogger(__name__)


WORKER_LOCK = "worker.lock"


def worker_lock(data_dir: Path) -> TextIO | None:
    """The lock that makes this process the one running jobs (held until closed), or None when
    another API process of the same server holds it."""
    handle = open(data_dir / WORKER_LOCK, "a")  # noqa: SIM115 - held for the app's lifetime
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        return None
    return handle


def default_sandbox(settings: Settings) -> Sandbox:
    """This node's Docker sandbox, as the settings ask for it."""
    return DockerSandbox(
        settings.node, settings.limits, settings.runner_image, settings.isolation,
        settings.runtime,
    )  # fmt: skip


def default_nodes(settings: Settings, sandbox: Sandbox) -> Nodes:
    """Blocks run in ``sandbox`` here; with a broker, other nodes' blocks on their workers."""
    return connect_nodes(
        settings.node, sandbox, settings.slots, settings.broker_url, settings.node_wait_seconds,
        settings.node_resend_seconds, settings.limits,
    )  # fmt: skip


def create_app(
    settings: Settings | None = None, sandbox: Sandbox | None = None, nodes: Nodes | None = None
) -> FastAPI:
    """The app; ``sandbox`` and ``nodes`` replace the real ones (Docker, and the broker when
    the settings name one), e.g. by a test's fakes. They are made when the app starts."""
    settings = settings or load_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        settings.datasets_dir.mkdir(parents=True, exist_ok=True)
        settings.jobs_dir.mkdir(parents=True, exist_ok=True)
        db = Database(settings.database_url)
        box = sandbox or default_sandbox(settings)
        # Refuses to start (RuntimeUnavailableError) when the setting names a runtime the
        # engine lacks: never a weaker wall than asked for.
        log.warning("sandboxes run under %s (runtime/isolation)", box.describe())
        lock = worker_lock(settings.data_dir)
        transport = nodes or default_nodes(settings, box)
        worker: JobSubmitter
        if lock is None:  # another API process of this server runs the jobs
            worker = PolledElsewhere()
        else:
            reaped = box.reap()
            if reaped:
                log.warning("removed %d orphaned sandbox container(s)", reaped)
            clean_datasets_dir(settings.datasets_dir, db)
            store = SqlJobStore(db, settings.jobs_dir)
            worker = EmbeddedWorker(store, transport, queued=store.queued)
            with db.transaction() as session:
                pending = job_lifecycle.recover_interrupted(session)
            worker.start(pending)
        app.state.context = AppContext(settings, db, worker, box, transport)
        # What start-up made lives as long as the process: out of the collector's sight, so a
        # full collection under load walks only what requests made (shorter pauses, lower p99).
        gc.collect()
        gc.freeze()
        try:
            yield
        finally:
            worker.stop()
            stop_query_processes()
            db.dispose()
            if lock is not None:
                lock.close()

    app = FastAPI(
        title="unseen",
        version="0.1.0",
        summary="Use-but-not-see compute on sensitive open data: only DP outputs come back.",
        lifespan=lifespan,
        # No max_body_size: FastAPI's own limit answers in plain text, not the API's shape;
        # BodySizeLimit is the one limit, on declared and chunked bodies alike.
    )
    app.add_middleware(BodySizeLimit, max_bytes=MAX_BODY_BYTES, message=TOO_LARGE)
    app.state.settings = settings
    install_error_handlers(app)
    for module in (accounts, tokens, passwords, contests, licences, datasets, jobs, queries,
                   review, budget, audit, node_routes, synthesis):  # fmt: skip
        app.include_router(module.router)

    app.include_router(pages.router)
    app.include_router(synthesis_pages.router)
    app.include_router(pages.fallback)  # last: the /ui addresses no page above answers
    app.add_exception_handler(pages.Redirect, pages.redirect_to_login)

    @app.get("/healthz", tags=["health"])
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app

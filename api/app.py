"""The FastAPI application: routes, the database, and the embedded worker wired together.

The API may run in several processes (``unseen server run --processes N``): each serves
requests; the one holding ``<data-dir>/worker.lock`` also runs the jobs and is the only one that
reaps this node's leftover sandbox containers and recovers interrupted jobs at start.
"""

from __future__ import annotations

import fcntl
import gc
import logging
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from fastapi import FastAPI

from api import job_lifecycle
from api.body_limit import BodySizeLimit
from api.context import AppContext
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
    nodes,
    queries,
    review,
    synthesis,
    tokens,
)
from api.settings import Settings, load_settings
from api.store import SqlJobStore
from api.web import pages, synthesis_pages
from privacy.query import Partials
from runner.embedded import EmbeddedWorker, JobSubmitter, PolledElsewhere
from runner.pipeline import (
    AggregateJob,
    BlockResult,
    BlockRunner,
    BlockSource,
    local_block_results,
)
from sandbox.docker_sandbox import DockerSandbox

if TYPE_CHECKING:  # Celery is imported only by servers that have a broker
    from runner.celery_fanout import RemoteNodes
from runner.query import PartialsSource, QueryJob, local_partials, stop_query_processes

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


@dataclass(frozen=True)
class NodeLinks:
    """How this server reaches data nodes: where query partials and aggregate blocks come
    from (computed here, or — with a broker — by the nodes' Celery workers), and one-off
    calls to a node (registering a dataset it holds)."""

    partials: PartialsSource = local_partials
    blocks: BlockSource | None = None
    nodes: RemoteNodes | None = None


def node_links(settings: Settings, run_block: BlockRunner) -> NodeLinks:
    if settings.broker_url is None:
        return NodeLinks()
    from runner.celery_app import NodeApps
    from runner.celery_fanout import CeleryBlocks, RemoteNodes

    apps = NodeApps(settings.broker_url)
    fan_out = CeleryBlocks(
        apps, settings.node_wait_seconds, settings.node_resend_seconds, limits=settings.limits
    )
    own = settings.node

    def partials(
        job: QueryJob, progress: Callable[[int, int], None] | None = None
    ) -> Iterable[Partials]:
        if job.node == own:  # registered on this server: its blocks are here
            return local_partials(job, progress)
        return fan_out.partials(job, progress)

    def blocks(job: AggregateJob) -> Iterable[BlockResult]:
        if job.node == own:
            return local_block_results(job, run_block, settings.slots)
        return fan_out.block_results(job)

    return NodeLinks(partials, blocks, RemoteNodes(apps, settings.node_wait_seconds))


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or load_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        settings.datasets_dir.mkdir(parents=True, exist_ok=True)
        settings.jobs_dir.mkdir(parents=True, exist_ok=True)
        db = Database(settings.database_url)
        sandbox = DockerSandbox(
            settings.node, settings.limits, settings.runner_image, settings.isolation,
            settings.runtime,
        )  # fmt: skip
        # Refuses to start (RuntimeUnavailableError) when the setting names a runtime the
        # engine lacks: never a weaker wall than asked for.
        log.warning("sandboxes run under %s (runtime/isolation)", sandbox.describe())
        lock = worker_lock(settings.data_dir)
        links = node_links(settings, sandbox)
        worker: JobSubmitter
        if lock is None:  # another API process of this server runs the jobs
            worker = PolledElsewhere()
        else:
            reaped = sandbox.reap()
            if reaped:
                log.warning("removed %d orphaned sandbox container(s)", reaped)
            store = SqlJobStore(db, settings.jobs_dir)
            worker = EmbeddedWorker(
                store, sandbox, settings.slots, queued=store.queued,
                query_source=links.partials, block_source=links.blocks,
            )  # fmt: skip
            with db.transaction() as session:
                pending = job_lifecycle.recover_interrupted(session)
            worker.start(pending)
        app.state.context = AppContext(
            settings, db, worker, sandbox.image_problem, sandbox, sandbox.image, links.nodes
        )
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
        max_body_size=4 * MAX_BODY_BYTES,  # a backstop: BodySizeLimit answers first
    )
    app.add_middleware(BodySizeLimit, max_bytes=MAX_BODY_BYTES, message=TOO_LARGE)
    app.state.settings = settings
    install_error_handlers(app)
    for module in (accounts, tokens, contests, licences, datasets, jobs, queries, review, budget,
                   audit, nodes, synthesis):  # fmt: skip
        app.include_router(module.router)

    app.include_router(pages.router)
    app.include_router(synthesis_pages.router)
    app.add_exception_handler(pages.Redirect, pages.redirect_to_login)

    @app.get("/healthz", tags=["health"])
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app

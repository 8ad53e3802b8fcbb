"""The FastAPI application: routes, the database, and the embedded worker wired together."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from api import crud
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
    queries,
    review,
    tokens,
)
from api.settings import Settings, load_settings
from api.store import SqlJobStore
from api.web import pages
from runner.docker_sandbox import DockerSandbox
from runner.embedded import EmbeddedWorker

log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or load_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        settings.datasets_dir.mkdir(parents=True, exist_ok=True)
        settings.jobs_dir.mkdir(parents=True, exist_ok=True)
        db = Database(settings.database_url)
        sandbox = DockerSandbox(
            settings.node, settings.limits, settings.runner_image, settings.isolation
        )
        reaped = sandbox.reap()
        if reaped:
            log.warning("removed %d orphaned sandbox container(s)", reaped)
        worker = EmbeddedWorker(SqlJobStore(db, settings.jobs_dir), sandbox, settings.slots)
        with db.transaction() as session:
            pending = crud.recover_interrupted(session)
        app.state.context = AppContext(settings, db, worker, sandbox.image_problem, sandbox)
        worker.start(pending)
        try:
            yield
        finally:
            worker.stop()
            db.dispose()

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
                   audit):  # fmt: skip
        app.include_router(module.router)

    app.include_router(pages.router)
    app.add_exception_handler(pages.Redirect, pages.redirect_to_login)

    @app.get("/healthz", tags=["health"])
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app

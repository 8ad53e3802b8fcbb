"""What routes need from the running app, as one typed dependency."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated

from fastapi import Depends, Request

from api.db import Database
from api.settings import Settings
from runner.embedded import JobSubmitter
from runner.pipeline import BlockRunner

if TYPE_CHECKING:  # Celery is imported only by servers that have a broker
    from runner.celery_fanout import RemoteNodes


@dataclass
class AppContext:
    settings: Settings
    db: Database
    worker: JobSubmitter  # the embedded worker, or a stand-in in API-only processes
    image_ready: Callable[[], str | None]  # None when the runner image is ready, else the fix
    run_block: BlockRunner  # the sandbox, for synchronous runs on public samples
    runner_image: str  # the sandboxes' image tag, told to clients that run samples locally
    nodes: RemoteNodes | None = None  # data nodes reached through the broker, if there is one


async def _context(request: Request) -> AppContext:  # async: no thread hand-off
    return request.app.state.context


Context = Annotated[AppContext, Depends(_context)]

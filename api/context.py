"""What routes need from the running app, as one typed dependency."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from api.db import Database
from api.settings import Settings
from runner.embedded import EmbeddedWorker
from runner.pipeline import BlockRunner


@dataclass
class AppContext:
    settings: Settings
    db: Database
    worker: EmbeddedWorker
    image_ready: Callable[[], str | None]  # None when the runner image is ready, else the fix
    run_block: BlockRunner  # the sandbox, for synchronous runs on public samples


def _context(request: Request) -> AppContext:
    return request.app.state.context


Context = Annotated[AppContext, Depends(_context)]

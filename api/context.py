"""What routes need from the running app, as one typed dependency."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from api.db import Database
from api.settings import Settings
from runner.embedded import EmbeddedWorker


@dataclass
class AppContext:
    settings: Settings
    db: Database
    worker: EmbeddedWorker
    image_ready: object  # Callable[[], str | None]: None when ready, else the fix to show


def _context(request: Request) -> AppContext:
    return request.app.state.context


Context = Annotated[AppContext, Depends(_context)]

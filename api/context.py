"""What routes need from the running app, as one typed dependency."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from api.db import Database
from api.settings import Settings
from runner.embedded import JobSubmitter
from runner.nodes import Nodes, Sandbox


@dataclass
class AppContext:
    settings: Settings
    db: Database
    worker: JobSubmitter  # the embedded worker, or a stand-in in API-only processes
    sandbox: Sandbox  # this node's, for synchronous runs on public samples
    nodes: Nodes  # where a dataset's blocks are computed; asks other nodes (with a broker)


async def _context(request: Request) -> AppContext:  # async: no thread hand-off
    return request.app.state.context


Context = Annotated[AppContext, Depends(_context)]

"""The tasks a data node's Celery worker runs, next to its own blocks.

    UNSEEN_BROKER_URL=redis://... celery -A runner.node_tasks worker -Q node.<label>

A node answers with partial aggregates of its blocks (bounded per privacy unit, summed over the
chunk), never rows; the trusted reducer checks them against the plan, adds them up and draws
the noise once. ``UNSEEN_NODE_DATA_DIR``, when set, is the only tree a task may read from.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from privacy.query import parse_plan
from runner.blocks import load_layout
from runner.celery_app import make_celery, policy_from_wire
from runner.query import chunk_partials

app = make_celery(os.environ.get("UNSEEN_BROKER_URL", "redis://127.0.0.1:6379/0"))


def _own_directory(raw: str) -> Path:
    directory = Path(raw).resolve()
    root = os.environ.get("UNSEEN_NODE_DATA_DIR")
    if root and not directory.is_relative_to(Path(root).resolve()):
        raise PermissionError(f"{directory} is not under this node's data ({root})")
    return directory


@app.task(name="unseen.query_blocks")
def query_blocks(
    directory: str, blocks: list[int], plan: dict[str, Any], policy: dict[str, Any]
) -> dict[str, Any]:
    """Bounded partial aggregates of these blocks of one dataset, summed."""
    layout = load_layout(_own_directory(directory))
    parsed_policy = policy_from_wire(policy)
    parsed = parse_plan(plan, parsed_policy)  # validated again here: the node trusts no one
    return chunk_partials(layout, blocks, parsed, parsed_policy.unit_column).to_wire()

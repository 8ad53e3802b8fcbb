"""Celery wiring of the scale-out shape: Redis as broker and result store, one queue per data
node (``node.<label>``), so a node's worker receives only tasks on the datasets it holds.

Running a block task twice is harmless (query chunks are pure reads; aggregate chunks run
sandboxed code whose answers the reducer takes once), and the reducer keeps exactly one answer
per chunk of blocks: a worker lost mid-job costs time, never a block counted twice. Query
chunks are acknowledged late (after they finish) and given back to the queue when their
worker dies; aggregate chunks, which may outlast the visibility timeout, are acknowledged on
receipt and sent again by the reducer when their heartbeat stops.
"""

from __future__ import annotations

import os

from celery import Celery

#: Seconds a task handed to a worker may go unacknowledged before Redis hands it to another
#: (a worker killed mid-task never acknowledges). Longer than any query chunk takes.
VISIBILITY_SECONDS = float(os.environ.get("UNSEEN_VISIBILITY_SECONDS", "120"))


def node_queue(node: str) -> str:
    return f"node.{node}"


def node_keyprefix(node: str) -> str:
    """Every Redis key and channel of one node's tasks and results starts with this, so the
    broker's access list can give each node its own keys and nothing else (docker-compose.yml:
    a node's credentials cannot read, take or answer another node's tasks)."""
    return f"unseen.{node}:"


def make_celery(broker_url: str, node: str | None = None) -> Celery:
    """The Celery app of one node's traffic (its keys under :func:`node_keyprefix`), used by
    that node's worker and, to reach it, by the reducer; ``node=None``: no prefix."""
    prefix = {} if node is None else {"global_keyprefix": node_keyprefix(node)}
    app = Celery("unseen", broker=broker_url, backend=broker_url)
    app.conf.update(
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        result_expires=3600,
        broker_connection_retry_on_startup=True,
        broker_transport_options={
            "visibility_timeout": VISIBILITY_SECONDS,
            # Sweep for abandoned tasks a few times per timeout (kombu's default sweep comes
            # every 100 s whatever the timeout).
            "unacked_restore_interval": max(1, int(VISIBILITY_SECONDS / 4)),
            "unacked_restore_throttle": 1,
            **prefix,
        },
        result_backend_transport_options=prefix,
        worker_hijack_root_logger=False,
    )
    return app


class NodeApps:
    """The reducer's Celery app per data node, made on first use and kept."""

    def __init__(self, broker_url: str) -> None:
        self._broker_url = broker_url
        self._apps: dict[str, Celery] = {}

    def __call__(self, node: str) -> Celery:
        app = self._apps.get(node)
        if app is None:
            app = self._apps[node] = make_celery(self._broker_url, node)
        return app

"""What can go wrong with a data node, importable without Celery (the API catches these)."""

from __future__ import annotations


class NodeUnavailable(RuntimeError):
    """The node holding the dataset (or the broker) did not answer in time."""


class NodeTaskFailed(RuntimeError):
    """A node's task failed for a reason that running it again will not change."""

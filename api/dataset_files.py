"""At a server's start: what interrupted dataset registrations left on disk goes (issue 16).

A registration writes under a temporary name and renames the directory whole
(``runner.staging``); a process killed before the rename leaves a temporary directory, one
killed between the rename and the catalog's commit a directory no dataset row names. Both are
removed here; a registration another live process of the server is running is left alone.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from sqlalchemy import select

from api.db import Database
from api.models import Dataset
from runner.staging import PARTIAL, busy, clean_leftovers

log = logging.getLogger(__name__)


def directory_name(name: str, dataset_id: str) -> str:
    """A dataset's directory under the data directory's ``datasets/``."""
    return f"{name}-{dataset_id[:8]}"


def clean_datasets_dir(root: Path, db: Database) -> list[str]:
    """Remove every leftover of an unfinished registration under ``root``; their names."""
    removed = clean_leftovers(root)
    with db.read() as session:
        known = {directory_name(name, id_) for name, id_ in session.execute(
            select(Dataset.name, Dataset.id))}  # fmt: skip
    for entry in sorted(root.iterdir()) if root.is_dir() else []:
        if entry.name.startswith(PARTIAL) or not entry.is_dir() or entry.name in known:
            continue
        if busy(root, entry.name):
            continue
        shutil.rmtree(entry, ignore_errors=True)
        log.warning("removed %s: no dataset of the catalog is stored there", entry)
        removed.append(entry.name)
    return sorted(set(removed))

"""A dataset's directory appears whole or not at all: it is written under a temporary name in the
same directory (same filesystem), and renamed into place once complete.

While a registration runs, its process holds an exclusive ``flock`` on a lock file next to the
temporary directory, until the registration is recorded (or undone). The kernel drops the lock
when the process dies however it dies (SIGKILL included), so ``clean_leftovers`` — at a
server's or a node's start — removes exactly the leftovers of registrations whose process is
gone, never one another live process of the same server is writing.
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
from pathlib import Path
from types import TracebackType
from typing import IO

log = logging.getLogger(__name__)

PARTIAL = ".partial-"
LOCK = ".lock"


class Staged:
    """``with Staged(root, name) as stage:`` write under ``stage.path``, then ``publish()``
    (the rename) and record it; on an exception, whatever was written is removed, the published
    directory too."""

    def __init__(self, root: Path, name: str) -> None:
        self.root, self.name = root, name
        self.final = root / name
        self.path = root / f"{PARTIAL}{name}"
        self._lock_path = root / f"{PARTIAL}{name}{LOCK}"
        self._lock: IO[str] | None = None
        self._published = False

    def __enter__(self) -> Staged:
        self.root.mkdir(parents=True, exist_ok=True)
        self._lock = open(self._lock_path, "a")
        fcntl.flock(self._lock, fcntl.LOCK_EX)
        if self.final.exists():
            raise FileExistsError(f"{self.final} exists; register under another name")
        shutil.rmtree(self.path, ignore_errors=True)
        self.path.mkdir()
        return self

    def publish(self) -> Path:
        """Rename the complete directory into place (atomic); the final path."""
        os.rename(self.path, self.final)
        _sync_directory(self.root)
        self._published = True
        return self.final

    def __exit__(
        self, kind: type[BaseException] | None, _e: BaseException | None, _t: TracebackType | None
    ) -> None:
        try:
            if kind is not None or not self._published:
                shutil.rmtree(self.path, ignore_errors=True)
                if self._published:
                    shutil.rmtree(self.final, ignore_errors=True)
            self._lock_path.unlink(missing_ok=True)
        finally:
            if self._lock is not None:
                self._lock.close()


def clean_leftovers(root: Path) -> list[str]:
    """Remove what dead registrations left under ``root``: their temporary directories, and
    the names of their directories that may have been published before the process died
    (for the caller to drop unless its records hold them)."""
    if not root.is_dir():
        return []
    unfinished = []
    for lock_path in sorted(root.glob(f"{PARTIAL}*{LOCK}")):
        name = lock_path.name[len(PARTIAL) : -len(LOCK)]
        with open(lock_path, "a") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # a live registration in another process
            shutil.rmtree(root / f"{PARTIAL}{name}", ignore_errors=True)
            lock_path.unlink(missing_ok=True)
        unfinished.append(name)
        log.warning("removed the leftovers of an interrupted registration of %s", name)
    for stray in root.glob(f"{PARTIAL}*"):  # a temporary directory without its lock file
        if stray.is_dir() and not (root / f"{stray.name}{LOCK}").exists():
            shutil.rmtree(stray, ignore_errors=True)
    return unfinished


def busy(root: Path, name: str) -> bool:
    """Whether a live registration holds ``name`` now."""
    lock_path = root / f"{PARTIAL}{name}{LOCK}"
    if not lock_path.exists():
        return False
    with open(lock_path, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
    return False


def _sync_directory(directory: Path) -> None:
    """Make the rename durable: a crash after it returns keeps it."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)

"""A full disk on the data node: clear 507 answers, nothing half-written, nothing lost, and
everything works again once space is freed. The server's state lives on a small real tmpfs."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from client.api import UnseenError
from tests.conftest import SodaData, start_deployment

pytestmark = pytest.mark.docker

QUICK = "def analyze(df):\n    return {'n': float(len(df))}\n"
OUTPUTS = [{"name": "n", "lo": 0, "hi": 100000}]


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "disk"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(directory: Path) -> Path:
    """Take every free byte of the file system under ``directory``."""
    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for chunk in (1 << 20, 4096, 1):
            with contextlib.suppress(OSError):
                while True:
                    os.write(fd, b"\0" * chunk)
    finally:
        os.close(fd)
    assert shutil.disk_usage(directory).free < 4096
    return filler


def test_full_disk_is_refused_clearly_and_recovers(
    runner_image: str, soda: SodaData, small_disk: Path
) -> None:
    d = start_deployment(small_disk / "state", soda, {"UNSEEN_NODE": "disk-full"})
    try:
        done = d.contestant.submit("cards_tiny", QUICK, OUTPUTS, 0.5)
        assert d.contestant.wait(done["id"], timeout=300)["state"] == "awaiting_review"
        datasets_before = sorted(p.name for p in (small_disk / "state" / "datasets").iterdir())
        filler = fill(small_disk)

        with pytest.raises(UnseenError) as refused:
            d.organizer.register_dataset(**soda.registration("taxi_gps", 4))
        assert refused.value.status == 507
        assert "free space" in refused.value.message
        after = sorted(p.name for p in (small_disk / "state" / "datasets").iterdir())
        assert after == datasets_before  # the half-written blocks were removed

        with pytest.raises(UnseenError) as refused:  # SQLite cannot write: nothing changes
            d.contestant.submit("cards_tiny", QUICK, OUTPUTS, 0.5)
        assert refused.value.status == 507
        assert refused.value.code == "insufficient_storage"
        assert d.contestant.me()["name"] == "alice"  # still serving reads

        filler.unlink()
        budget = next(b for b in d.contestant.budget() if "cards_tiny" in b["datasets"])
        assert budget["reserved"] == pytest.approx(0.0)
        d.organizer.register_dataset(**soda.registration("taxi_gps", 4))
        again = d.contestant.submit("cards_tiny", QUICK, OUTPUTS, 0.5)
        assert d.contestant.wait(again["id"], timeout=300)["state"] == "awaiting_review"
        assert d.contestant.job(done["id"])["state"] == "awaiting_review"  # nothing lost
    finally:
        d.server.stop()

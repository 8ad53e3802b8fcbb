"""A dataset registration killed half-way leaves nothing on disk (issue 16, "Accounts").

Registrations write under a temporary name and rename the directory whole (``runner.staging``);
a server cleans what dead ones left when it starts. Here: the staging rules with real processes
holding the lock and killed with SIGKILL, and (slow) a real server killed while it partitions a
large dataset, then started again: nothing left, and the name registers again."""

from __future__ import annotations

import contextlib
import secrets
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest

from api.dataset_files import clean_datasets_dir
from api.db import Database
from api.launcher import ServerProcess
from client.api import UnseenClient
from runner.staging import Staged, busy, clean_leftovers
from tests.conftest import ROOT, open_contest

HOLD = """
import sys, time
from pathlib import Path
from runner.staging import Staged
with Staged(Path(sys.argv[1]), sys.argv[2]) as stage:
    (stage.path / "blocks").mkdir()
    (stage.path / "blocks" / "block-00000.parquet").write_bytes(b"half")
    if sys.argv[3] == "publish":
        stage.publish()
    print("ready", flush=True)
    time.sleep(600)
"""


def holder(root: Path, name: str, publish: bool = False) -> subprocess.Popen[str]:
    """A real process in the middle of a registration, until killed."""
    process = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(root), name, "publish" if publish else "stage"],
        stdout=subprocess.PIPE, text=True, cwd=ROOT,
    )  # fmt: skip
    assert process.stdout is not None and process.stdout.readline().strip() == "ready"
    return process


def killed(process: subprocess.Popen[str]) -> None:
    process.send_signal(signal.SIGKILL)
    process.wait(10)


def test_a_complete_directory_appears_whole_and_a_failed_one_not_at_all(tmp_path: Path) -> None:
    with Staged(tmp_path, "good-1234abcd") as stage:
        (stage.path / "data").write_text("complete")
        assert not stage.final.exists()
        stage.publish()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["good-1234abcd"]
    with pytest.raises(RuntimeError), Staged(tmp_path, "bad-1234abcd") as stage:
        (stage.path / "data").write_text("half")
        stage.publish()
        raise RuntimeError("the catalog refused it")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["good-1234abcd"]


def test_only_dead_registrations_are_cleaned(tmp_path: Path) -> None:
    live = holder(tmp_path, "live-00000001")
    dead = holder(tmp_path, "dead-00000002")
    try:
        killed(dead)
        assert busy(tmp_path, "live-00000001") and not busy(tmp_path, "dead-00000002")
        assert clean_leftovers(tmp_path) == ["dead-00000002"]
        left = sorted(p.name for p in tmp_path.iterdir())
        assert left == [".partial-live-00000001", ".partial-live-00000001.lock"]
    finally:
        killed(live)
    assert clean_leftovers(tmp_path) == ["live-00000001"]
    assert list(tmp_path.iterdir()) == []


def test_a_published_directory_no_dataset_row_names_goes_at_start(tmp_path: Path) -> None:
    """Killed between the rename and the catalog's commit: the directory is whole but no
    dataset is stored there; a directory the catalog names stays."""
    root = tmp_path / "datasets"
    db = Database(f"sqlite:///{tmp_path / 'unseen.db'}")
    try:
        (root / "kept-elsewhere").mkdir(parents=True)  # an old version's orphan: no lock
        killed(holder(root, "orphan-00000003", publish=True))
        assert (root / "orphan-00000003" / "blocks").is_dir()
        live = holder(root, "inflight-00000004", publish=True)
        try:
            removed = clean_datasets_dir(root, db)
            assert removed == ["kept-elsewhere", "orphan-00000003"]
            assert (root / "inflight-00000004").is_dir()  # a live registration is left alone
        finally:
            killed(live)
    finally:
        db.dispose()


def _big_dataset(directory: Path) -> tuple[Path, Path]:
    """A dataset large enough that partitioning it takes seconds: time to kill the server."""
    rng = np.random.default_rng(7)
    rows = 3_000_000
    frame = pd.DataFrame({
        "card_id": rng.integers(0, 2_000_000, rows),
        "fare": rng.uniform(0, 10, rows),
    })  # fmt: skip
    source, sample = directory / "big.parquet", directory / "big-sample.parquet"
    frame.to_parquet(source)
    frame.head(100).to_parquet(sample)
    return source, sample


@pytest.mark.slow
@pytest.mark.docker
def test_a_server_killed_while_registering_leaves_nothing_and_the_name_registers_again(
    tmp_path: Path,
) -> None:
    source, sample = _big_dataset(tmp_path)
    token = secrets.token_urlsafe(16)
    data_dir = tmp_path / "server"
    env = {"UNSEEN_NODE": f"test-{secrets.token_hex(3)}"}
    server = ServerProcess(data_dir, token, env=env).start()
    anonymous = UnseenClient(server.url, token)
    organizer = anonymous.with_token(anonymous.create_organizer("olga")["token"])
    open_contest(organizer)
    body = {"name": "big", "source_path": str(source), "sample_path": str(sample),
            "unit_column": "card_id", "bounds": {"fare": [0, 10]}, "blocks": 64,
            "team_epsilon": 1.0, "population_epsilon": 10.0}  # fmt: skip
    headers = {"Authorization": f"Bearer {organizer.token}"}

    def register() -> None:
        with contextlib.suppress(httpx.HTTPError):  # the server dies under it
            httpx.post(f"{server.url}/v1/datasets", json=body, headers=headers, timeout=120)

    sender = threading.Thread(target=register)
    sender.start()
    datasets = data_dir / "datasets"
    deadline = time.monotonic() + 60
    while not any(p.is_dir() for p in datasets.iterdir()):
        assert time.monotonic() < deadline, "the registration never started writing"
        time.sleep(0.01)
    time.sleep(0.5)  # into the partitioning
    server.stop(kill=True)  # SIGKILL, half-way
    sender.join(30)
    written = sorted(p.name for p in datasets.iterdir())
    assert written and all(name.startswith(".partial-big-") for name in written), written
    assert organizer.token is not None

    server = ServerProcess(data_dir, token, env=env).start()
    try:
        assert list(datasets.iterdir()) == []  # cleaned at start
        again = UnseenClient(server.url, organizer.token).register_dataset(**body)
        assert again["name"] == "big" and again["blocks"] == 64
        (kept,) = list(datasets.iterdir())  # one whole directory, under its final name
        assert kept.name.startswith("big-") and len(list((kept / "blocks").glob("*.parquet"))) == 64
    finally:
        server.stop()

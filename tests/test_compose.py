"""docker-compose.yml: the server in a container runs a job end to end in host sandboxes."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from api.launcher import free_port
from client.api import UnseenClient
from tests.conftest import ROOT, SodaData, admitted_member, open_contest
from tests.test_e2e_jobs import EXAMPLE, FARE_OUTPUTS

pytestmark = pytest.mark.docker


@pytest.fixture(scope="module")
def server_image(runner_image: str) -> str:
    from sandbox.image import build_server_image

    return build_server_image()


@pytest.fixture
def stack(server_image: str, soda: SodaData, tmp_path: Path) -> Iterator[tuple[str, str, Path]]:
    host_dir = tmp_path / "host"
    shutil.copytree(soda.full, host_dir / "full")
    shutil.copytree(soda.sample, host_dir / "sample")
    token, port = secrets.token_urlsafe(16), free_port()
    env = {
        **os.environ,
        "UNSEEN_HOST_DIR": str(host_dir),
        "UNSEEN_BOOTSTRAP_TOKEN": token,
        "UNSEEN_PORT": str(port),
        "UNSEEN_SERVER_IMAGE": server_image,
        "UNSEEN_NODE": "compose-test",
    }
    compose = ["docker-compose", "-p", f"unseentest{port}", "-f", str(ROOT / "docker-compose.yml")]
    subprocess.run([*compose, "up", "-d"], env=env, check=True, capture_output=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.5)
        else:
            logs = subprocess.run([*compose, "logs"], env=env, capture_output=True, text=True)
            pytest.fail(f"compose server never answered:\n{logs.stdout[-3000:]}")
        yield url, token, host_dir
    finally:
        subprocess.run([*compose, "down", "-v"], env=env, check=False, capture_output=True)


def test_compose_stack_runs_a_job_end_to_end(stack: tuple[str, str, Path], soda: SodaData) -> None:
    url, token, host_dir = stack
    with UnseenClient(url, token) as anonymous:
        organizer = anonymous.with_token(anonymous.create_organizer("olga")["token"])
    open_contest(organizer)
    contestant = admitted_member(organizer, "team-compose", "cora")
    registration = soda.registration("transport_cards", 4)
    registration["source_path"] = str(host_dir / "full" / "transport_cards.parquet")
    registration["sample_path"] = str(host_dir / "sample" / "transport_cards.parquet")
    organizer.register_dataset(**registration)

    job = contestant.submit("transport_cards", EXAMPLE, FARE_OUTPUTS, 1.0)
    done = contestant.wait(job["id"], timeout=300)
    assert done["state"] == "awaiting_review", organizer.job(job["id"])
    assert organizer.job(job["id"])["report"]["blocks_defaulted"] == 0
    organizer.release(job["id"])
    released = contestant.job(job["id"])["result"]
    assert [v["noise_scale"] for v in released] == pytest.approx([8 / 4 * 3] * 3)
    # The server's state is on the host, at the same path: blocks were bind-mounted from there.
    assert any(
        (host_dir / "server" / "datasets").glob("transport_cards-*/blocks/block-00003.parquet")
    )

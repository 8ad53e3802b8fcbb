"""`unseen run --sample FILE.py` against the real embedded server, as a contestant types it."""

from __future__ import annotations

import json
import os
import runpy
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pandas as pd
import pytest

from sandbox.image import runner_image_tag
from tests.conftest import ROOT, Deployment, SodaData

pytestmark = pytest.mark.docker
EXAMPLE = ROOT / "examples" / "mean_fare_by_period.py"


@pytest.fixture(scope="module")
def token(deployment: Deployment) -> str:
    return str(deployment.new_contestant("team-cli", "carol").token)


def unseen(
    *args: str, url: str, token: str | None, path: str | None = None, columns: int = 200
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "UNSEEN_URL": url, "COLUMNS": str(columns), "NO_COLOR": "1"}
    if path is not None:
        env["PATH"] = path
    env.pop("UNSEEN_TOKEN", None)
    if token:
        env["UNSEEN_TOKEN"] = token
    return subprocess.run(
        [sys.executable, "-m", "client.cli", *args],
        capture_output=True, text=True, env=env, cwd=ROOT, timeout=300,
    )  # fmt: skip


def test_sample_run_prints_the_exact_values_and_spends_nothing(
    deployment: Deployment, token: str, soda: SodaData
) -> None:
    contestant = deployment.organizer.with_token(token)
    before = contestant.budget()
    done = unseen(
        "run", "--sample", str(EXAMPLE), "--dataset", "transport_cards", "--json",
        url=deployment.server.url, token=token,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    run = json.loads(done.stdout)
    assert run["where"] == "local"  # Docker and the runner image are here
    expected = runpy.run_path(str(EXAMPLE))["analyze"](
        pd.read_parquet(soda.sample / "transport_cards.parquet")
    )
    assert run["values"] == pytest.approx(expected)
    assert run["outcome"] == "ok" and run["end"] == "exited"
    assert contestant.budget() == before


def test_a_crash_shows_the_traceback_and_exits_1(
    deployment: Deployment, token: str, tmp_path: Path
) -> None:
    code = tmp_path / "crash.py"
    code.write_text(
        "def analyze(df):\n    print('rows', len(df))\n    return {'x': 1 / 0}\n"
        "OUTPUTS = [{'name': 'x', 'lo': 0, 'hi': 1}]\n"
    )
    done = unseen(
        "run", "--sample", str(code), "-d", "transport_cards",
        url=deployment.server.url, token=token,
    )  # fmt: skip
    assert done.returncode == 1
    assert "ZeroDivisionError" in done.stdout and "rows" in done.stdout
    assert "Traceback" in done.stdout  # the block's own traceback, shown for the sample


def test_refused_code_exits_3_with_one_line_naming_the_fix(
    deployment: Deployment, token: str, tmp_path: Path
) -> None:
    code = tmp_path / "bad.py"
    code.write_text("import os\ndef analyze(df):\n    return {}\n")
    done = unseen(
        "run", "--sample", str(code), "-d", "transport_cards", "-o", "x:0:1",
        url=deployment.server.url, token=token,
    )  # fmt: skip
    assert done.returncode == 3
    assert "line 1" in done.stderr and "'os'" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(
    ("args", "code", "says"),
    [
        (["-d", "nope"], 1, "nope"),
        (["-d", "transport_cards", "-o", "x:zero:1"], 2, "must be numbers"),
    ],
)
def test_bad_requests_are_one_clear_line(
    deployment: Deployment, token: str, args: list[str], code: int, says: str
) -> None:
    done = unseen("run", "--sample", str(EXAMPLE), *args, url=deployment.server.url, token=token)
    assert done.returncode == code
    assert says in done.stderr and "Traceback" not in done.stderr


def test_without_sample_or_token_or_server(deployment: Deployment, token: str) -> None:
    url = deployment.server.url
    no_sample = unseen("run", str(EXAMPLE), "-d", "transport_cards", url=url, token=token)
    assert no_sample.returncode == 2 and "--sample" in no_sample.stderr
    no_token = unseen("run", "--sample", str(EXAMPLE), "-d", "transport_cards", url=url, token=None)
    assert no_token.returncode == 1 and "not logged in" in no_token.stderr
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        down = f"http://127.0.0.1:{probe.getsockname()[1]}"
    gone = unseen("run", "--sample", str(EXAMPLE), "-d", "transport_cards", url=down, token=token)
    assert gone.returncode == 1 and "cannot reach the server" in gone.stderr
    assert "Traceback" not in gone.stderr


def crash_file(tmp_path: Path) -> Path:
    code = tmp_path / "crash.py"
    code.write_text(
        "def analyze(df):\n    print('rows', len(df))\n    return {'x': 1 / 0}\n"
        "OUTPUTS = [{'name': 'x', 'lo': 0, 'hi': 1}]\n"
    )
    return code


def test_here_and_on_the_server_give_the_same_run(deployment: Deployment, token: str) -> None:
    """auto runs in local Docker, in the image the server names, and leaves no job on the
    server; --where server runs there; both return the same values."""
    contestant = deployment.organizer.with_token(token)
    jobs_before = len(contestant.jobs())
    args = ("run", "--sample", str(EXAMPLE), "-d", "transport_cards", "--json")
    here = unseen(*args, url=deployment.server.url, token=token)
    assert here.returncode == 0, here.stderr
    local = json.loads(here.stdout)
    images = subprocess.run(
        ["docker", "image", "inspect", local["image"]], capture_output=True, check=False
    )
    assert local["where"] == "local" and images.returncode == 0
    assert local["image"].startswith("unseen-runner:")
    assert len(contestant.jobs()) == jobs_before  # nothing ran on the server
    there = unseen(*args, "--where", "server", url=deployment.server.url, token=token)
    assert there.returncode == 0, there.stderr
    remote = json.loads(there.stdout)
    assert remote["where"] == "server" and remote["job"]
    assert remote["values"] == pytest.approx(local["values"])
    assert len(contestant.jobs()) == jobs_before + 1


def test_without_docker_auto_runs_on_the_server_and_local_says_why(
    deployment: Deployment, token: str, tmp_path: Path
) -> None:
    no_docker = str(tmp_path / "empty-bin")  # a PATH with no docker on it
    args = ("run", "--sample", str(crash_file(tmp_path)), "-d", "transport_cards")
    auto = unseen(*args, url=deployment.server.url, token=token, path=no_docker)
    assert auto.returncode == 1  # the code crashes, on the server this time
    assert "running on the server: docker is not installed here" in auto.stderr
    assert "on the server" in auto.stdout and "ZeroDivisionError" in auto.stdout
    local = unseen(*args, "--where", "local", url=deployment.server.url, token=token,
                   path=no_docker)  # fmt: skip
    assert local.returncode == 1
    assert "cannot run here: docker is not installed here" in local.stderr
    assert "--where server" in local.stderr and "Traceback" not in local.stderr
    wrong = unseen(*args, "--where", "moon", url=deployment.server.url, token=token)
    assert wrong.returncode == 2 and "--where must be one of" in wrong.stderr


def test_a_local_crash_shows_the_traceback(
    deployment: Deployment, token: str, tmp_path: Path
) -> None:
    done = unseen(
        "run", "--sample", str(crash_file(tmp_path)), "-d", "transport_cards", "--json",
        url=deployment.server.url, token=token,
    )  # fmt: skip
    assert done.returncode == 1
    run = json.loads(done.stdout)
    assert run["where"] == "local" and run["end"] == "nonzero_exit"
    assert run["outcome"] == "defaulted" and "traceback" in run["reason"]
    assert "ZeroDivisionError" in run["stderr"] and "rows" in run["stderr"]


def test_the_sample_download_names_the_runner_image(deployment: Deployment, token: str) -> None:
    response = httpx.get(
        f"{deployment.server.url}/v1/datasets/transport_cards/sample",
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status_code == 200
    assert response.headers["x-unseen-runner-image"] == runner_image_tag()

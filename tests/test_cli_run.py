"""`unseen run --sample FILE.py` against the real embedded server, as a contestant types it."""

from __future__ import annotations

import json
import os
import runpy
import socket
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import ROOT, Deployment, SodaData

pytestmark = pytest.mark.docker
EXAMPLE = ROOT / "examples" / "mean_fare_by_period.py"


@pytest.fixture(scope="module")
def token(deployment: Deployment) -> str:
    return str(deployment.new_contestant("team-cli", "carol").token)


def unseen(*args: str, url: str, token: str | None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "UNSEEN_URL": url, "COLUMNS": "200", "NO_COLOR": "1"}
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
    assert no_token.returncode == 1 and "refused" in no_token.stderr
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        down = f"http://127.0.0.1:{probe.getsockname()[1]}"
    gone = unseen("run", "--sample", str(EXAMPLE), "-d", "transport_cards", url=down, token=token)
    assert gone.returncode == 1 and "cannot reach the server" in gone.stderr
    assert "Traceback" not in gone.stderr

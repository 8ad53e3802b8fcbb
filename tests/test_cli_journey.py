"""The contestant's journey with the CLI alone, against a real server: log in (token kept 0600),
browse, download a sample, submit, watch, read the result as a table, CSV and JSON, check the
budget, log out; and the failure paths: bad token, server down, unknown dataset."""

from __future__ import annotations

import csv
import io
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from api.launcher import free_port
from tests.conftest import ROOT, TEST_BLOCKS, Deployment

pytestmark = pytest.mark.docker
PASSWORD = "terminal-journey 42"
QUICK = "def analyze(df):\n    return {'n': float(len(df))}\n"


def cli(
    *args: str, home: Path, stdin: str = "", extra: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("UNSEEN_")}
    env.update({"XDG_CONFIG_HOME": str(home / "config"), "HOME": str(home), "COLUMNS": "200",
                "NO_COLOR": "1", **(extra or {})})  # fmt: skip
    command = [sys.executable, "-m", "client.cli", *args]
    return subprocess.run(command, input=stdin, capture_output=True, text=True, env=env,
                          cwd=ROOT, timeout=300)  # fmt: skip


@pytest.fixture(scope="module")
def journey(deployment: Deployment, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A logged-in terminal: an admitted contestant with a password, config in a fresh home."""
    member = deployment.new_contestant("team-terminal", "tara")
    member.set_password(PASSWORD)
    home = tmp_path_factory.mktemp("home")
    done = cli("login", deployment.server.url, "--name", "tara", "--password-stdin",
               home=home, stdin=PASSWORD + "\n")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "logged in" in done.stdout and "tara" in done.stdout
    return home


def test_login_keeps_the_token_readable_by_its_owner_only(journey: Path) -> None:
    saved = journey / "config" / "unseen" / "config.json"
    assert stat.S_IMODE(saved.stat().st_mode) == 0o600
    assert stat.S_IMODE(saved.parent.stat().st_mode) == 0o700
    assert json.loads(saved.read_text())["user"] == "tara"


def test_the_whole_contestant_journey(
    journey: Path, deployment: Deployment, tmp_path: Path
) -> None:
    listed = cli("datasets", "--json", home=journey)
    assert listed.returncode == 0, listed.stderr
    assert "cards_tiny" in {d["name"] for d in json.loads(listed.stdout)}
    table = cli("datasets", home=journey)
    assert "rounds open now: 1, 2" in table.stdout and "card_id" in table.stdout

    out = tmp_path / "sample.parquet"
    assert cli("sample", "cards_tiny", "-o", str(out), home=journey).returncode == 0
    assert out.read_bytes()[:4] == b"PAR1"

    analysis = tmp_path / "count.py"
    analysis.write_text(QUICK)
    submitted = cli("submit", str(analysis), "-d", "cards_tiny", "-e", "0.2",
                    "--output", "n:0:100000", home=journey)  # fmt: skip
    assert submitted.returncode == 0, submitted.stderr
    assert "state: awaiting_review" in submitted.stderr
    job = submitted.stdout.split("submitted job ")[1].split()[0]
    assert cli("result", job, home=journey).returncode == 1  # not released yet
    deployment.organizer.release(job)

    watched = cli("watch", job, home=journey)
    assert watched.returncode == 0 and "released" in watched.stderr
    rows = list(csv.DictReader(io.StringIO(cli("result", job, "--csv", home=journey).stdout)))
    assert [r["output"] for r in rows] == ["n"] and float(rows[0]["epsilon"]) == 0.2
    as_json = json.loads(cli("result", job, "--json", home=journey).stdout)
    assert as_json["state"] == "released" and as_json["result"][0]["noise_scale"] > 0
    assert "noise scale" in cli("result", job, home=journey).stdout
    jobs = json.loads(cli("jobs", "--json", home=journey).stdout)
    assert job in {j["id"] for j in jobs}
    budget = json.loads(cli("budget", "--json", home=journey).stdout)
    assert next(b for b in budget if "cards_tiny" in b["datasets"])["spent"] == 0.2


def test_failures_are_one_line_with_exit_codes(journey: Path, deployment: Deployment) -> None:
    bad = cli("jobs", home=journey, extra={"UNSEEN_TOKEN": "uns_not-a-token"})
    assert bad.returncode == 1 and "unknown or revoked token" in bad.stderr
    down = cli("jobs", "--url", f"http://127.0.0.1:{free_port()}", home=journey)
    assert down.returncode == 1 and "cannot reach the server" in down.stderr
    unknown = cli("sample", "nope", "-o", "/tmp/x.parquet", home=journey)
    assert unknown.returncode == 1 and "no dataset 'nope'" in unknown.stderr
    for result in (bad, down, unknown):
        assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_logout_revokes_the_token(deployment: Deployment, tmp_path: Path) -> None:
    member = deployment.new_contestant("team-terminal-2", "theo")
    home = tmp_path / "home"
    assert cli("login", deployment.server.url, "--token", str(member.token),
               home=home).returncode == 0  # fmt: skip
    assert cli("jobs", home=home).returncode == 0
    assert cli("logout", home=home).returncode == 0
    assert not (home / "config" / "unseen" / "config.json").exists()
    again = cli("jobs", "--token", str(member.token), "--url", deployment.server.url, home=home)
    assert again.returncode == 1 and "revoked" in again.stderr


def test_watch_on_a_terminal_draws_a_live_progress_bar(
    journey: Path, deployment: Deployment, tmp_path: Path
) -> None:
    """Under a pseudo-terminal (util-linux `script`) rich draws its bar; it must show blocks
    done out of blocks total and the state changes, then the final state."""
    slow = tmp_path / "slow.py"
    slow.write_text("import time\ndef analyze(df):\n    time.sleep(0.5)\n"
                    "    return {'n': float(len(df))}\n")  # fmt: skip
    submitted = cli("submit", str(slow), "-d", "transport_cards", "-e", "0.1", "--output",
                    "n:0:100000", "--no-wait", "--json", home=journey)  # fmt: skip
    job = json.loads(submitted.stdout)["id"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("UNSEEN_")}
    env.update({"XDG_CONFIG_HOME": str(journey / "config"), "HOME": str(journey),
                "COLUMNS": "100", "TERM": "xterm-256color"})  # fmt: skip
    command = f"{sys.executable} -m client.cli watch {job}"
    shown = subprocess.run(["script", "-qefc", command, "/dev/null"], capture_output=True,
                           text=True, env=env, cwd=ROOT, timeout=300)  # fmt: skip
    assert shown.returncode == 0, shown.stdout[-2000:]
    screen = shown.stdout
    assert "\x1b[" in screen  # drawn live, with terminal control sequences
    assert "━" in screen and f"/{TEST_BLOCKS}" in screen  # the bar; blocks done of all
    assert "state: running" in screen or "state: queued" in screen
    assert "awaiting_review" in screen

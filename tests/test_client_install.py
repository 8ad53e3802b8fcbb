"""A contestant needs neither Docker nor the server: the project installed without extras
gives a working `unseen` that imports no server code and talks to a real server over HTTP, says
what to install when asked for a server-side command, and was built without writing into the
checkout."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ROOT, Deployment

pytestmark = pytest.mark.docker


def untracked_entries() -> set[str]:
    """Everything git does not track in the checkout, ignored files included (build/ and
    *.egg-info/ are ignored, so a plain `git status` would not show them)."""
    listed = subprocess.run(
        ["git", "status", "--porcelain", "--ignored", "--untracked-files=normal"],
        capture_output=True, text=True, cwd=ROOT, check=True,
    )  # fmt: skip
    return {line[3:] for line in listed.stdout.splitlines() if line[:2] in {"??", "!!"}}


@pytest.fixture(scope="module")
def client_venv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """`pip install .` without extras, into a fresh venv; the checkout must come out of it
    as it went in."""
    venv = tmp_path_factory.mktemp("client") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    before = untracked_entries()
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q"]
    installed = subprocess.run([*pip, "-c", str(ROOT / "constraints.txt"), str(ROOT)],
                               capture_output=True, text=True, timeout=600)  # fmt: skip
    assert installed.returncode == 0, installed.stderr[-2000:]
    written = {entry for entry in untracked_entries() - before
               if "__pycache__" not in entry and not entry.startswith("var/")}  # fmt: skip
    assert not written, f"`pip install .` wrote into the checkout: {sorted(written)}"
    yield venv


def run_unseen(
    venv: Path, args: list[str], env: dict[str, str], cwd: Path
) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(venv / "bin" / "unseen"), *args], env=env, capture_output=True,
                          text=True, cwd=cwd, timeout=120)  # fmt: skip


def test_a_client_only_install_lists_the_catalog_over_http(
    deployment: Deployment, client_venv: Path, tmp_path: Path
) -> None:
    python = str(client_venv / "bin" / "python")
    server_side = subprocess.run(
        [python, "-c", "import fastapi"], capture_output=True, text=True, cwd=tmp_path
    )
    assert server_side.returncode != 0  # no server dependencies came along
    env = {"UNSEEN_URL": deployment.server.url, "UNSEEN_TOKEN": str(deployment.contestant.token),
           "HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}  # fmt: skip
    listed = run_unseen(client_venv, ["datasets", "--json"], env, tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert "cards_tiny" in {d["name"] for d in json.loads(listed.stdout)}
    helped = run_unseen(client_venv, ["--help"], env, tmp_path)
    assert "submit" in helped.stdout and "Traceback" not in helped.stderr
    assert "unseen[server]" in helped.stdout  # the server-side groups say what they need


@pytest.mark.parametrize(
    ("args", "missing"),
    [
        (["server", "run", "--port", "8123"], "fastapi"),
        (["server"], "fastapi"),
        (["images", "build"], "docker"),
        (["data", "generate", "--out", "x"], "numpy"),
    ],
    ids=lambda value: " ".join(value) if isinstance(value, list) else value,
)
def test_a_server_side_command_in_a_client_only_install_says_what_to_install(
    client_venv: Path, tmp_path: Path, args: list[str], missing: str
) -> None:
    env = {"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}
    ran = run_unseen(client_venv, args, env, tmp_path)
    assert ran.returncode == 2, (ran.stdout, ran.stderr)
    assert "Traceback" not in ran.stderr
    assert f"({missing} is not installed here)" in ran.stderr
    assert "pip install 'unseen[server]'" in ran.stderr
    assert not (tmp_path / "x").exists()

"""A contestant needs neither Docker nor the server: the project installed without extras
gives a working `unseen` that imports no server code and talks to a real server over HTTP."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, Deployment

pytestmark = pytest.mark.docker


def test_a_client_only_install_lists_the_catalog_over_http(
    deployment: Deployment, tmp_path: Path
) -> None:
    venv = tmp_path / "client-venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q"]
    installed = subprocess.run([*pip, "-c", str(ROOT / "constraints.txt"), str(ROOT)],
                               capture_output=True, text=True, timeout=600)  # fmt: skip
    assert installed.returncode == 0, installed.stderr[-2000:]
    python = str(venv / "bin" / "python")
    server_side = subprocess.run(
        [python, "-c", "import fastapi"], capture_output=True, text=True, cwd=tmp_path
    )
    assert server_side.returncode != 0  # no server dependencies came along
    env = {"UNSEEN_URL": deployment.server.url, "UNSEEN_TOKEN": str(deployment.contestant.token),
           "HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}  # fmt: skip
    listed = subprocess.run([str(venv / "bin" / "unseen"), "datasets", "--json"], env=env,
                            capture_output=True, text=True, cwd=tmp_path, timeout=120)  # fmt: skip
    assert listed.returncode == 0, listed.stderr
    assert "cards_tiny" in {d["name"] for d in json.loads(listed.stdout)}
    helped = subprocess.run([str(venv / "bin" / "unseen"), "--help"], env=env,
                            capture_output=True, text=True, cwd=tmp_path, timeout=120)  # fmt: skip
    assert "submit" in helped.stdout and "Traceback" not in helped.stderr

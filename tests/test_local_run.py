"""The CLI's local sample run (client.local_run) in real Docker, in the real runner image:
the same hardening as a full-data block, a wall-clock limit, and the server's parsing rules."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from client.local_run import docker_problem, parse_result, run_locally
from sandbox.image import runner_image_tag

OUTPUTS = [{"name": "x", "lo": 0, "hi": 1}]


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sample") / "sample.parquet"
    pd.DataFrame({"fare": [1.0, 2.0, 4.5]}).to_parquet(path)
    return path


@pytest.fixture(scope="module")
def image(runner_image: str) -> str:
    return runner_image  # built (or found) once per session by conftest


@pytest.mark.docker
def test_runs_hardened_like_a_block(image: str, sample: Path) -> None:
    """No network, unprivileged uid, read-only root, the sample mounted read-only."""
    code = """
import os, socket
def analyze(df):
    try:
        socket.create_connection(("1.1.1.1", 53), timeout=2)
        net = 1.0
    except OSError:
        net = 0.0
    try:
        open("/etc/owned", "w")
        root_writable = 1.0
    except OSError:
        root_writable = 0.0
    try:
        open("/data/block.parquet", "ab")
        data_writable = 1.0
    except OSError:
        data_writable = 0.0
    return {"uid": os.getuid(), "net": net, "root": root_writable, "data": data_writable,
            "total": float(df["fare"].sum())}
"""
    outputs = [{"name": n, "lo": 0, "hi": 1} for n in ("uid", "net", "root", "data", "total")]
    run = run_locally(image, code, sample, outputs)
    assert run["outcome"] == "ok", run
    assert run["values"] == {"uid": 65534.0, "net": 0.0, "root": 0.0, "data": 0.0, "total": 7.5}
    assert run["end"] == "exited" and run["exit_code"] == 0


@pytest.mark.docker
def test_a_run_past_the_wall_clock_is_killed_and_removed(image: str, sample: Path) -> None:
    code = "def analyze(df):\n    while True:\n        pass\n"
    run = run_locally(image, code, sample, OUTPUTS, wall_seconds=4)
    assert run["end"] == "timeout" and run["outcome"] == "defaulted"
    assert "wall-clock limit" in run["reason"]
    left = subprocess.run(
        ["docker", "ps", "-aq", "--filter", "label=unseen.local-run=1"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert left.stdout.strip() == ""


@pytest.mark.docker
def test_docker_problem_names_a_missing_image(image: str) -> None:
    assert docker_problem(image) is None
    missing = "unseen-runner:000000000000"
    problem = docker_problem(missing)
    assert problem is not None and missing in problem and "docker save" in problem


def test_docker_problem_without_docker(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    assert docker_problem(runner_image_tag()) == "docker is not installed here"


@pytest.mark.parametrize(
    ("line", "outcome", "says"),
    [
        ({"status": "ok", "values": {"x": 0.5}}, "ok", ""),
        ({"status": "ok", "values": {"x": 0.5, "y": 1}}, "defaulted", "undeclared"),
        ({"status": "ok", "values": {"x": "NaN"}}, "partial", "finite number: x"),
        ({"status": "ok", "values": {"x": True}}, "partial", "finite number: x"),
        ({"status": "ok", "values": {}}, "partial", "finite number: x"),
        ({"status": "ok", "values": [1]}, "defaulted", "dict"),
        ({"status": "error", "error": "ZeroDivisionError"}, "defaulted", "traceback"),
    ],
)
def test_results_are_read_by_the_servers_rules(line: dict, outcome: str, says: str) -> None:
    values, got, reason = parse_result(json.dumps(line).encode(), OUTPUTS)
    assert got == outcome and says in reason
    if outcome == "ok":
        assert values == {"x": 0.5}


def test_unreadable_or_missing_results() -> None:
    assert parse_result(b"", OUTPUTS)[1:] == ("defaulted", "no output")
    not_json = parse_result(b"not json\n", OUTPUTS)
    assert not_json[1:] == ("defaulted", "the result line is not strict JSON")
    assert parse_result(b'{"status": "ok", "values": {"x": NaN}}', OUTPUTS)[1] == "partial"

"""`unseen` starts quickly because a command imports only what it uses: the server-side groups
(`data`, `images`, `server`) keep pandas, numpy and the Docker SDK out of every other command's
start. Checked by what is imported, not by the clock (bench/cli_startup.py times it)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from syndata import cli as data_cli
from syndata.soda import DATASETS, SIZES
from tests.conftest import ROOT

#: Modules a contestant's command never needs; each costs 0.05-0.3 s to import.
HEAVY = ("pandas", "numpy", "pyarrow", "docker", "fastapi", "sqlalchemy", "uvicorn", "jinja2",
         "sklearn", "diffprivlib", "jax", "celery")  # fmt: skip


def imported_by(args: list[str], home: Path) -> set[str]:
    """Top-level modules imported by ``unseen ARGS`` (from `python -X importtime`)."""
    ran = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "client.cli", *args],
        capture_output=True, text=True, cwd=ROOT, timeout=60,
        env={"HOME": str(home), "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    lines = [line for line in ran.stderr.splitlines() if line.startswith("import time:")]
    assert lines, ran.stderr[-2000:]  # the run must have reported its imports
    return {line.rsplit("|", 1)[1].strip().split(".")[0] for line in lines}


@pytest.mark.parametrize(
    "args",
    [
        ["--help"],
        ["jobs"],
        ["submit", "--help"],
        ["server", "--help"],
        ["data", "--help"],
        ["images", "--help"],
        ["query", "--help"],
    ],
    ids=" ".join,
)
def test_a_command_imports_none_of_the_server_side_libraries(
    args: list[str], tmp_path: Path
) -> None:
    imported = imported_by(args, tmp_path)
    assert "client" in imported and "typer" in imported  # the probe sees real imports
    assert not imported & set(HEAVY), sorted(imported & set(HEAVY))


def test_the_probe_sees_a_heavy_import_when_one_happens(tmp_path: Path) -> None:
    """`data generate` needs pandas: the same probe must notice it (else the test above could
    pass by seeing nothing)."""
    imported = imported_by(
        ["data", "generate", "--size", "test", "--only", "bus_events", "--out", str(tmp_path)],
        tmp_path,
    )
    assert {"pandas", "numpy"} <= imported


def test_the_data_groups_spelled_out_names_are_the_generators() -> None:
    assert tuple(SIZES) == data_cli.SIZE_NAMES
    assert tuple(DATASETS) == data_cli.DATASET_NAMES

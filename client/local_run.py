"""``unseen run --sample`` on this machine: the server's runner image, the downloaded sample.

The server names the image its sandboxes use in the sample download's
``X-Unseen-Runner-Image`` header. When Docker is here and holds that image, the code runs in it
with the same harness and the same hardening flags as a full-data block (no network, read-only
root, unprivileged uid, no capabilities, memory/pids/CPU limits, a wall-clock limit), so what
works here works there. Only the ``docker`` command is used: the client needs neither the
server's code nor the Docker SDK. The result line is read by the server's own reader,
``privacy/block_line.py`` (pure, standard library only). Nothing is sent to the server but the
sample download.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from privacy.block_line import MAX_RESULT_BYTES, LineReading, Refusal, read_line

RUNNER_IMAGE_HEADER = "X-Unseen-Runner-Image"
CODE_MOUNT = "/job/analysis.py"  # where the image's harness reads the code and the data
DATA_MOUNT = "/data/block.parquet"
WALL_SECONDS = 120.0
STREAM_BYTES = 1024 * 1024  # local logs are the contestant's own: far more than a block's


def docker_problem(image: str) -> str | None:
    """Why the code cannot run here in ``image`` (None: it can)."""
    docker = shutil.which("docker")
    if docker is None:
        return "docker is not installed here"
    try:
        found = subprocess.run(
            [docker, "image", "inspect", "--format", "{{.Id}}", image],
            capture_output=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"docker did not answer ({exc})"
    if found.returncode != 0:
        detail = found.stderr.decode("utf-8", "replace").strip().splitlines()
        if detail and "No such image" not in detail[-1]:
            return f"docker: {detail[-1]}"
        return f"the runner image {image} is not here (ask the organizers for a `docker save`)"
    return None


def hardened_run_command(docker: str, image: str, name: str, code: Path, data: Path) -> list[str]:
    """``docker run`` with the flags a full-data block gets (see sandbox/container.py)."""
    scratch = "rw,noexec,nosuid,nodev,size=32m"
    return [
        docker, "run", "--rm", "--name", name, "--network", "none", "--read-only",
        "--user", "65534:65534", "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
        "--ipc", "none", "--pids-limit", "64", "--memory", "768m", "--memory-swap", "768m",
        "--cpus", "1", "--tmpfs", f"/tmp:{scratch}", "--tmpfs", f"/out:{scratch}",
        "--ulimit", "fsize=33554432", "--ulimit", "nofile=256", "--ulimit", "core=0",
        "--hostname", "sandbox", "--label", "unseen.local-run=1",
        "-v", f"{code}:{CODE_MOUNT}:ro", "-v", f"{data}:{DATA_MOUNT}:ro",
        image,
    ]  # fmt: skip


def run_locally(
    image: str,
    source: str,
    sample: Path,
    outputs: list[dict[str, Any]],
    wall_seconds: float = WALL_SECONDS,
) -> dict[str, Any]:
    """Run the code on the sample in a fresh container; the same fields as a server sample run.

    The caller checked :func:`docker_problem` first.
    """
    docker = shutil.which("docker") or "docker"
    name = f"unseen-local-{secrets.token_hex(6)}"
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="unseen-run-") as workdir:
        directory = Path(workdir)
        os.chmod(directory, 0o755)  # the container's uid reads the files, it owns nothing
        code, data = directory / "analysis.py", directory / "sample.parquet"
        code.write_text(source, encoding="utf-8")
        shutil.copyfile(sample, data)
        for path in (code, data):
            os.chmod(path, 0o644)
        command = hardened_run_command(docker, image, name, code, data)
        try:
            done = subprocess.run(command, capture_output=True, timeout=wall_seconds, check=False)
            end = "exited" if done.returncode == 0 else "nonzero_exit"
            exit_code: int | None = done.returncode
            stdout, stderr = done.stdout, done.stderr
        except subprocess.TimeoutExpired as expired:
            subprocess.run([docker, "rm", "-f", name], capture_output=True, check=False)
            end, exit_code = "timeout", None
            stdout, stderr = expired.stdout or b"", expired.stderr or b""
    if exit_code == 137:
        end = "out_of_memory_or_killed"
    values, outcome, reason = parse_result(stdout, outputs)
    if end == "timeout":
        reason = f"no result within {wall_seconds:g} s (the wall-clock limit of a block run)"
    return {
        "values": values,
        "outcome": outcome,
        "reason": reason,
        "end": end,
        "exit_code": exit_code,
        "stdout": stdout[-STREAM_BYTES:].decode("utf-8", "replace"),
        "stderr": stderr[-STREAM_BYTES:].decode("utf-8", "replace"),
        "seconds": round(time.monotonic() - started, 3),
    }


def parse_result(stdout: bytes, outputs: list[dict[str, Any]]) -> tuple[dict[str, float], str, str]:
    """The harness's last line read by the server's rules (the same reader,
    :mod:`privacy.block_line`), for the contestant to see: which values would parse (``ok``),
    which would take their defaults (``partial``), or why the whole block would
    (``defaulted``). Values are as returned: no clipping here."""
    reading = read_line(stdout, [str(output["name"]) for output in outputs])
    if reading.refusal is not None:
        return {}, "defaulted", why_refused(reading)
    if reading.bad:
        return (
            reading.values,
            "partial",
            f"missing or not a finite number: {', '.join(reading.bad)}",
        )
    return reading.values, "ok", ""


def why_refused(reading: LineReading) -> str:
    """Why the whole block would take its defaults, said so that the contestant can fix it."""
    match reading.refusal:
        case Refusal.TOO_LONG:
            return (
                f"the result line is over {MAX_RESULT_BYTES // 1024} kB: "
                "analyze must return only the declared outputs"
            )
        case Refusal.NOT_JSON:
            return "the result line is not strict JSON"
        case Refusal.NOT_OK:
            return "analyze raised (see the traceback in stderr)"
        case Refusal.NOT_OBJECT:
            return "analyze must return a dict of {name: number}"
        case Refusal.UNDECLARED:
            return f"undeclared output name(s): {', '.join(reading.undeclared)}"
    return "no output"

"""Run untrusted code on one block inside a hardened, single-use Docker container.

The container is the security boundary (with trusted aggregation on the host side). Every run
gets: no network, a read-only root, the code and *only this block's* file mounted read-only,
size-capped tmpfs scratch, an unprivileged uid, no capabilities, no-new-privileges, Docker's
default seccomp profile, pids/memory(+swap)/CPU limits, a file-size ulimit, no Docker log, a
wall-clock limit enforced here, and removal afterwards. Nothing comes back but capped bytes of
stdout (the result line) and stderr (organizer-only logs) plus how the run ended.
"""

from __future__ import annotations

import contextlib
import threading
import time
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

import docker
import requests
from docker.errors import DockerException
from docker.types import LogConfig, Ulimit

from sandbox.runtime import RUNC, RUNSC

SANDBOX_LABEL = "unseen.sandbox"
NODE_LABEL = "unseen.node"
JOB_LABEL = "unseen.job"
UNPRIVILEGED_USER = "65534:65534"  # nobody:nogroup, owns nothing in the image
CODE_MOUNT = "/job/analysis.py"
DATA_MOUNT = "/data/block.parquet"
MiB = 1024 * 1024
RUNSC_BASE_PIDS = 64  # gVisor's own host threads (sentry, gofer), with room
RUNSC_PIDS_PER_PROCESS = 6  # host threads per process of the code under ptrace, with room


@dataclass(frozen=True)
class SandboxLimits:
    """Resource limits of one block run; defaults fit a 2-core, small-block worker."""

    memory_bytes: int = 768 * MiB
    pids: int = 64
    cpus: float = 1.0
    wall_seconds: float = 60.0
    tmpfs_bytes: int = 32 * MiB
    file_size_bytes: int = 32 * MiB
    open_files: int = 256
    stdout_bytes: int = 256 * 1024
    stderr_bytes: int = 64 * 1024


class RunEnd(StrEnum):
    """How a block run ended: a coarse class, safe to count, never shown per block to teams."""

    EXITED = "exited"
    NONZERO = "nonzero_exit"
    TIMEOUT = "timeout"
    OOM = "out_of_memory"
    LOST = "lost"  # the engine failed us after the code started: treated as a failed block
    SANDBOX_ERROR = "sandbox_error"  # could not start: infrastructure, never data-dependent


@dataclass(frozen=True)
class BlockRun:
    end: RunEnd
    exit_code: int | None
    stdout: bytes = field(repr=False)
    stderr: bytes = field(repr=False)
    seconds: float
    sandbox: str = ""  # the runtime and isolation form that ran it, e.g. "runsc/zygote"


def host_pids_limit(pids: int, runtime: str) -> int:
    """The engine's pids limit that gives the code ``pids`` processes under ``runtime``.

    Under runc the code's processes are the host's. Under runsc the host's pids cgroup counts
    gVisor's own threads too: measured here, about 42 for the sandbox and 5 per process the
    code runs (ptrace platform), so the cap is scaled to match. Past it the whole sandbox
    stops (fail closed: the block takes its defaults)."""
    if runtime == RUNSC:
        return RUNSC_BASE_PIDS + RUNSC_PIDS_PER_PROCESS * pids
    return pids


def hardened_config(
    image: str,
    code_path: Path,
    block_path: Path,
    limits: SandboxLimits,
    labels: dict[str, str],
    runtime: str = RUNC,
) -> dict[str, object]:
    """Keyword arguments for ``containers.create``: one place that states every hardening.
    ``runtime`` is the engine's runtime (``sandbox.runtime``): the same hardening under each."""
    # /tmp and /out are mode 1777 in the image; Docker copies that mode onto each tmpfs.
    tmpfs_opts = f"rw,noexec,nosuid,nodev,size={limits.tmpfs_bytes}"
    return {
        "image": image,
        "runtime": runtime,
        "detach": True,
        "network_mode": "none",
        "read_only": True,
        "user": UNPRIVILEGED_USER,
        "cap_drop": ["ALL"],
        "security_opt": ["no-new-privileges"],
        "ipc_mode": "none",  # no /dev/shm at all: one writable place fewer
        "pids_limit": host_pids_limit(limits.pids, runtime),
        "mem_limit": limits.memory_bytes,
        "memswap_limit": limits.memory_bytes,
        "nano_cpus": int(limits.cpus * 1e9),
        "tmpfs": {"/tmp": tmpfs_opts, "/out": tmpfs_opts},
        "volumes": {
            str(code_path.resolve()): {"bind": CODE_MOUNT, "mode": "ro"},
            str(block_path.resolve()): {"bind": DATA_MOUNT, "mode": "ro"},
        },
        "ulimits": [
            Ulimit(name="fsize", soft=limits.file_size_bytes, hard=limits.file_size_bytes),
            Ulimit(name="nofile", soft=limits.open_files, hard=limits.open_files),
            Ulimit(name="core", soft=0, hard=0),
        ],
        "log_config": LogConfig(type="none"),
        "environment": {},
        "hostname": "sandbox",
        "labels": {SANDBOX_LABEL: "1", **labels},
    }


def run_block(
    client: docker.DockerClient,
    image: str,
    code_path: Path,
    block_path: Path,
    limits: SandboxLimits,
    labels: dict[str, str] | None = None,
    runtime: str = RUNC,
) -> BlockRun:
    """Run the harness on one block in a fresh container and always remove it afterwards.

    Never raises. Only a failure *before the code starts* (create, attach, start) is
    ``SANDBOX_ERROR``, which may fail the whole job: that cannot depend on the data. Anything
    after the start — whatever the code does to its streams, its processes or the engine's
    answers — ends the block (``TIMEOUT``, ``OOM``, ``NONZERO`` or ``LOST``) and so only
    replaces that block's output by its defaults; otherwise code could fail the job, visibly
    and without noise, on a condition of the data.
    """
    started = time.monotonic()
    container = None
    try:
        container = client.containers.create(
            **hardened_config(image, code_path, block_path, limits, labels or {}, runtime)
        )
        # Attach before start so no byte is missed; read both streams ourselves into bounded
        # tails (Docker keeps no log of its own: the log driver is "none").
        stream = container.attach(stdout=True, stderr=True, stream=True, demux=True)
        container.start()
    except (DockerException, requests.exceptions.RequestException) as exc:
        if container is not None:
            _remove_quietly(container)
        message = f"{type(exc).__name__}: {exc}".encode()[: limits.stderr_bytes]
        return BlockRun(RunEnd.SANDBOX_ERROR, None, b"", message, time.monotonic() - started)

    stdout, stderr = _Tail(limits.stdout_bytes), _Tail(limits.stderr_bytes)
    expired = threading.Event()

    def expire() -> None:
        expired.set()
        _kill_quietly(container)

    deadline = threading.Timer(max(0.0, limits.wall_seconds - (time.monotonic() - started)), expire)
    deadline.start()
    try:
        for out_chunk, err_chunk in stream:
            stdout.add(out_chunk)
            stderr.add(err_chunk)
        # The streams can close while processes live on: the deadline still stands until exit.
        status = container.wait(timeout=limits.wall_seconds + 30)
        container.reload()
        state = container.attrs.get("State", {})
        exit_code = status.get("StatusCode")
        if expired.is_set():
            end = RunEnd.TIMEOUT
        elif state.get("OOMKilled"):
            end = RunEnd.OOM
        elif exit_code == 0:
            end = RunEnd.EXITED
        else:
            end = RunEnd.NONZERO
    except (DockerException, requests.exceptions.RequestException) as exc:
        end, exit_code = (RunEnd.TIMEOUT if expired.is_set() else RunEnd.LOST), None
        stderr.add(f"\n[unseen] block lost after start: {type(exc).__name__}: {exc}".encode())
    finally:
        deadline.cancel()
        _remove_quietly(container)
    return BlockRun(end, exit_code, stdout.value(), stderr.value(), time.monotonic() - started)


class _Tail:
    """The last ``limit`` bytes of a stream: a flood costs reading time, never memory."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._data = bytearray()

    def add(self, chunk: bytes | None) -> None:
        if chunk:
            self._data += chunk[-self._limit :]
            if len(self._data) > 2 * self._limit:
                del self._data[: len(self._data) - self._limit]

    def value(self) -> bytes:
        return bytes(self._data[-self._limit :])


def _kill_quietly(container: docker.models.containers.Container) -> None:
    with contextlib.suppress(DockerException):
        container.kill()


def _remove_quietly(container: docker.models.containers.Container) -> None:
    # A container that cannot be removed now is left for reap_orphans at the next worker start.
    with contextlib.suppress(DockerException):
        container.remove(force=True)


def reap_orphans(client: docker.DockerClient, node: str, exited_only: bool = False) -> int:
    """Remove sandbox containers a crashed worker of this node left behind; returns how many.
    ``exited_only``: only those that stopped, where other live workers share the node."""
    filters: dict[str, object] = {"label": [f"{SANDBOX_LABEL}=1", f"{NODE_LABEL}={node}"]}
    if exited_only:
        filters["status"] = ["exited", "dead"]
    removed = 0
    for container in client.containers.list(all=True, ignore_removed=True, filters=filters):
        _remove_quietly(container)
        removed += 1
    return removed

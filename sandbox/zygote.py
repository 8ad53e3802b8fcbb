"""The fast isolation form: one hardened container per worker slot and job, a zygote inside it
forking a fresh process under a fresh uid per block (see images/runner/zygote.py and
docs/isolation.md).

The container holds no data: each block's bytes are streamed to the zygote over stdin and it
answers with one frame per block. Its PID 1 is root *inside* the container with only
CAP_SETUID, CAP_SETGID, CAP_CHOWN and CAP_SETPCAP (to hand each block a fresh uid and scratch
directory with an empty capability bounding set; what a block left is killed and removed by a
cleaner running as the block's own uid, so no CAP_KILL) and CAP_SYS_ADMIN (to give each block
its own pid, mount and IPC namespaces and /proc, images/runner/confine.py: no counter of the
container outlives a block); contestant code runs under that uid with no capability at all,
under a seccomp filter of the zygote's that takes back the calls Docker's profile allows for
CAP_SYS_ADMIN. Everything else is the
container-per-block hardening. If the zygote ever finds anything of a finished block left
(process, file, IPC object) it exits, and the slot is replaced: fail closed.
"""

from __future__ import annotations

import contextlib
import json
import select
import socket
import struct
import threading
import time
from collections.abc import Callable
from pathlib import Path

import docker
from docker.errors import DockerException

from privacy.block_line import frame_bytes
from sandbox.container import (
    CODE_MOUNT,
    SANDBOX_LABEL,
    BlockRun,
    RunEnd,
    SandboxLimits,
    hardened_config,
)
from sandbox.policy import ALLOWED_MODULES
from sandbox.runtime import RUNC

ZYGOTE_CAPS = ["SETUID", "SETGID", "CHOWN", "SETPCAP", "SYS_ADMIN"]
READY_SECONDS = 60.0


class ZygoteError(RuntimeError):
    """The zygote could not be started or stopped answering."""


def zygote_config(
    image: str,
    code_path: Path,
    limits: SandboxLimits,
    labels: dict[str, str],
    runtime: str = RUNC,
) -> dict[str, object]:
    """The block container's hardening, changed only where the zygote needs it."""
    config = hardened_config(image, code_path, code_path, limits, labels, runtime)
    config.update(
        user="0:0",
        cap_add=ZYGOTE_CAPS,
        entrypoint=["python3", "-I", "-B", "/opt/unseen/zygote.py"],
        stdin_open=True,
        # Not detached: docker-py then asks for StdinOnce, so the zygote's stdin closes when
        # its one attached client goes, and it exits, even when that client was SIGKILLed.
        detach=False,
        volumes={str(code_path.resolve()): {"bind": CODE_MOUNT, "mode": "ro"}},  # no data
        tmpfs={
            # 0711 stated: runc copies the image directory's mode onto the tmpfs, gVisor does
            # not (it made /scratch 1777, a place any block could write besides its own).
            "/scratch": f"rw,noexec,nosuid,nodev,mode=0711,size={limits.tmpfs_bytes}",
            # Blocks of one container must share no writable place. Under runc /tmp is the
            # read-only root's; gVisor mounts a writable tmpfs (1777) at /tmp when the
            # container has none, so one is mounted here, empty and read-only, under both.
            "/tmp": "ro,noexec,nosuid,nodev,mode=0755,size=4k",
        },
        environment={
            "UNSEEN_FSIZE": str(limits.file_size_bytes),
            # what the zygote may import ahead for the blocks: the policy's analysis libraries
            "UNSEEN_PRELOAD": ",".join(sorted(ALLOWED_MODULES)),
        },
    )
    return config


class ZygoteContainer:
    """One container, one job's blocks, one block at a time.

    Per block the zygote answers first, then cleans up and says ``clean``; the next block is
    sent only after that (or, if it failed closed instead, to a fresh container), so nothing
    a block did can reach a later block, not even by making its container fail.
    """

    def __init__(
        self,
        client: docker.DockerClient,
        image: str,
        code_path: Path,
        limits: SandboxLimits,
        labels: dict[str, str],
        runtime: str = RUNC,
    ) -> None:
        self._client, self._image, self._code = client, image, code_path
        self._limits, self._labels, self._runtime = limits, labels, runtime
        self._container: docker.models.containers.Container | None = None
        self._sock: socket.socket | None = None
        self._attached: object | None = None
        self._raw = bytearray()  # Docker's multiplexed stream, not yet demuxed
        self._stdout = bytearray()  # the zygote's frames
        self._cleaning = False  # answered a block, "clean" not yet read
        self._ready = False
        self.zygote_log = bytearray()

    @property
    def container_id(self) -> str | None:
        """The slot's current container (a new one after the old one failed closed)."""
        return None if self._container is None else self._container.id

    def launch(self) -> None:
        """Create and start the container; the zygote warms up while the caller goes on."""
        config = zygote_config(self._image, self._code, self._limits, self._labels, self._runtime)
        self._container = self._client.containers.create(**config)
        attached = self._container.attach_socket(
            params={"stdin": 1, "stdout": 1, "stderr": 1, "stream": 1}
        )
        # Keep the object docker-py returned: it holds the HTTP response, whose collection by
        # the garbage collector could close the socket under us.
        self._attached = attached
        self._sock = getattr(attached, "_sock", attached)
        self._container.start()
        self._ready = False

    def start(self) -> None:
        """Launch (unless launched) and wait until the zygote is ready for a block."""
        if self._container is None:
            self.launch()
        if self._ready:
            return
        ready = self._frame(READY_SECONDS)
        if not ready or not ready.get("ready"):
            self.close()
            raise ZygoteError(f"zygote did not start: {bytes(self.zygote_log[-2000:])!r}")
        self._ready = True

    def _pump(self, deadline: float) -> bool:
        """Read what the socket has into the demuxed buffers; False at EOF or deadline."""
        assert self._sock is not None
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        try:
            ready, _, _ = select.select([self._sock], [], [], left)
            if not ready:
                return False
            chunk = self._sock.recv(1 << 20)
        except (OSError, ValueError):  # a closed socket (fileno -1): the channel is gone
            return False
        if not chunk:
            return False
        self._raw += chunk
        while len(self._raw) >= 8:
            stream, size = self._raw[0], struct.unpack(">I", self._raw[4:8])[0]
            if len(self._raw) < 8 + size:
                break
            payload = self._raw[8 : 8 + size]
            del self._raw[: 8 + size]
            if stream == 1:
                self._stdout += payload
            else:
                self.zygote_log = (self.zygote_log + payload)[-65536:]
        return True

    def _frame(self, timeout: float) -> dict[str, object] | None:
        deadline = time.monotonic() + timeout
        while True:
            if len(self._stdout) >= 4:
                (size,) = struct.unpack(">I", self._stdout[:4])
                if len(self._stdout) >= 4 + size:
                    payload = bytes(self._stdout[4 : 4 + size])
                    del self._stdout[: 4 + size]
                    return json.loads(payload)
            if not self._pump(deadline):
                return None

    def _await_clean(self) -> None:
        """Wait for the previous block's clean-up; a container that failed it is replaced."""
        if not self._cleaning:
            return
        self._cleaning = False
        try:
            said = self._frame(self._limits.wall_seconds + 30)
        except OSError:
            said = None
        if not said or not said.get("clean"):
            self.close()  # failed closed (or died): this block goes to a fresh container

    def run(self, block_path: Path, wall_seconds: float | None = None) -> BlockRun:
        """One block, killed after ``wall_seconds`` (at most the container's own limit)."""
        wall = self._limits.wall_seconds
        if wall_seconds is not None:
            wall = min(wall, wall_seconds)
        started = time.monotonic()
        self._await_clean()
        try:
            self.start()
        except ZygoteError:  # nothing of the block was sent yet: one fresh container more
            self.close()
            self.start()
        assert self._sock is not None
        data = block_path.read_bytes()
        header = json.dumps({"size": len(data), "wall": wall}).encode()
        try:
            self._sock.sendall(struct.pack(">I", len(header)) + header + data)
            answer = self._frame(wall + 30)
        except OSError:
            answer = None
        if answer is None or "fatal" in answer:
            # The zygote died while the block ran (memory exhaustion can take the container
            # down): this block is lost and takes its defaults; the container is replaced.
            detail = (answer or {}).get("fatal", "zygote stopped answering")
            self.close()
            return BlockRun(
                RunEnd.LOST, None, b"", str(detail).encode(), time.monotonic() - started
            )
        self._cleaning = True
        return BlockRun(
            RunEnd(str(answer["end"])),
            answer.get("exit_code"),  # type: ignore[arg-type]
            frame_bytes(str(answer["stdout"]))[-self._limits.stdout_bytes :],
            frame_bytes(str(answer["stderr"]))[-self._limits.stderr_bytes :],
            time.monotonic() - started,
        )

    def close(self) -> None:
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.close()
            self._sock = None
        self._attached = None
        if self._container is not None:
            with contextlib.suppress(DockerException):
                self._container.remove(force=True)
            self._container = None
        self._raw.clear()
        self._stdout.clear()
        self._cleaning = self._ready = False


class ZygoteSlot:
    """Two containers used in turn: one cleans up after its block while the other runs one.

    A block's process exit, its clean-up and the fork of the next block's process all happen
    after the zygote answered, so with a pair they are off the path of the next block. Blocks
    never run at the same time in one slot; each container still runs one block at a time.
    """

    def __init__(
        self,
        client: docker.DockerClient,
        image: str,
        code_path: Path,
        limits: SandboxLimits,
        labels: dict[str, str],
        runtime: str = RUNC,
    ) -> None:
        self._pair = [
            ZygoteContainer(client, image, code_path, limits, labels, runtime) for _ in "ab"
        ]
        self._turn = 0

    def run(self, block_path: Path, wall_seconds: float | None = None) -> BlockRun:
        if self._turn == 0 and all(c.container_id is None for c in self._pair):
            with contextlib.suppress(DockerException):
                self._pair[1].launch()  # both warm up at once
        container = self._pair[self._turn]
        self._turn = 1 - self._turn
        return container.run(block_path, wall_seconds)

    def close(self) -> None:
        for container in self._pair:
            container.close()


class ZygotePool:
    """A ``BlockRunner``: one ZygoteSlot per worker thread and job; ``finish_job`` removes them.

    Blocks that run at the same time run in different containers (one per thread); blocks of
    different jobs never share a container.
    """

    def __init__(
        self,
        client_factory: Callable[[], docker.DockerClient],
        image: str,
        limits: SandboxLimits,
        labels: dict[str, str],
        runtime: str = RUNC,
    ) -> None:
        self._client_factory = client_factory
        self._image, self._limits, self._labels = image, limits, labels
        self._runtime = runtime
        self._slots: dict[tuple[Path, int], ZygoteSlot] = {}
        self._lock = threading.Lock()

    def __call__(
        self, code_path: Path, block_path: Path, wall_seconds: float | None = None
    ) -> BlockRun:
        key = (code_path, threading.get_ident())
        with self._lock:
            slot = self._slots.get(key)
        if slot is None:
            client = self._client_factory()
            labels = {SANDBOX_LABEL: "1", **self._labels, "unseen.job": code_path.parent.name}
            slot = ZygoteSlot(client, self._image, code_path, self._limits, labels, self._runtime)
            with self._lock:
                self._slots[key] = slot
        try:
            return slot.run(block_path, wall_seconds)
        except (ZygoteError, DockerException) as exc:
            slot.close()
            return BlockRun(RunEnd.SANDBOX_ERROR, None, b"", str(exc).encode(), 0.0)

    def finish_job(self, code_path: Path) -> None:
        with self._lock:
            slots = [k for k in self._slots if k[0] == code_path]
            closing = [self._slots.pop(k) for k in slots]
        for slot in closing:
            slot.close()

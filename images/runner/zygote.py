"""In-container zygote: run many blocks in one container, each in a fresh process under a fresh uid.

Trusted code, PID 1 of a hardened container that holds *no data*: the host streams one block at
a time over stdin. The zygote has imported pandas, numpy and pyarrow, and passes each block's
bytes on unparsed: it never reads data or runs contestant code itself. Per block it

1. makes ``/scratch/b<n>`` (0700) for a uid ``n`` never used before in this container;
2. forks; the child drops to ``n`` (all capabilities go with uid 0), gets an empty environment,
   rlimits, its scratch as TMPDIR and cwd, reads the block from a pipe, compiles
   ``/job/analysis.py`` fresh and calls ``analyze``; its stdout/stderr go to a pipe, its result
   to another — the container's own stdout carries only zygote frames;
3. after the block (or at its deadline) has the janitor (janitor.py, a small root process
   with a cleaner forked in advance) kill every process of ``n`` and remove its SysV IPC
   objects, message queues and files; then checks ``/proc``, IPC and the writable mounts: if
   anything of ``n`` is left, it exits (fail closed) and the host replaces the container.

Before the first block it warms pandas up on made-up rows and freezes its heap (``warm_up``),
so each block's process starts with the lazy imports done and few copy-on-write faults.

Frames both ways: 4-byte big-endian length, then JSON (host → zygote: a header, then raw bytes).
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import io
import json
import numbers
import os
import resource
import select
import signal
import struct
import subprocess
import sys
import threading
import time
import traceback

import numpy
import pandas as pd
import pyarrow
import pyarrow.parquet  # warm imports, shared copy-on-write by every block

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # -I leaves the script dir out
from janitor import read_text, sysv_objects

CODE_PATH = "/job/analysis.py"
SCRATCH = "/scratch"
FIRST_UID = 20_000
STREAM_LIMIT = 256 * 1024
JANITOR_PATH = "/opt/unseen/janitor.py"
PR_CAPBSET_DROP = 24


def read_exact(fd: int, size: int) -> bytes:
    chunks, left = [], size
    while left:
        chunk = os.read(fd, min(left, 1 << 20))
        if not chunk:
            raise EOFError("host closed the channel")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def send(fd: int, message: dict[str, object]) -> None:
    payload = json.dumps(message).encode()
    os.write(fd, struct.pack(">I", len(payload)) + payload)


def read_block(raw: bytes) -> pd.DataFrame:
    """The block as ``pandas.read_parquet`` gives it (same dtypes, tested), on one thread.

    The container has one CPU's quota, and a freshly forked process would first have to start
    Arrow's thread pools again: measurably slower than decoding on the calling thread.
    """
    table = pyarrow.parquet.read_table(io.BytesIO(raw), use_threads=False)
    return table.to_pandas(use_threads=False)


def to_jsonable(values: object) -> object:
    if not isinstance(values, dict):
        return repr(values)[:200]
    return {
        str(k): float(v)
        if isinstance(v, numbers.Real) and not isinstance(v, bool)
        else repr(v)[:200]
        for k, v in values.items()
    }


def child(uid: int, scratch: str, data_fd: int, result_fd: int, log_fd: int, limits: dict) -> None:
    """The block's process. Never returns."""
    code = 1
    try:
        with open("/proc/self/oom_score_adj", "w") as adj:
            adj.write("1000")  # under memory pressure the block dies, not the zygote
        os.setsid()
        os.dup2(log_fd, 1)
        os.dup2(log_fd, 2)
        close_fds_except({0, 1, 2, data_fd, result_fd})  # the janitor's pipes above all
        libc = _libc()
        for capability in range(64):  # empty the bounding set: nothing can ever be regained
            libc.prctl(PR_CAPBSET_DROP, capability, 0, 0, 0)
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)  # from uid 0 to non-zero: the kernel clears every capability
        for name, value in (
            ("RLIMIT_FSIZE", limits["fsize"]),
            ("RLIMIT_NOFILE", 256),
            ("RLIMIT_CORE", 0),
        ):
            resource.setrlimit(getattr(resource, name), (value, value))
        os.chdir(scratch)
        os.environ.clear()
        os.environ.update(
            {"TMPDIR": scratch, "HOME": scratch, "LANG": "C.UTF-8", "PATH": "/usr/bin:/bin"}
        )
        sys.stdout = os.fdopen(1, "w", buffering=1)
        sys.stderr = os.fdopen(2, "w", buffering=1)
        result = os.fdopen(result_fd, "w")
        with os.fdopen(data_fd, "rb") as data:
            frame = read_block(data.read())
        with open(CODE_PATH, encoding="utf-8") as handle:
            source = handle.read()
        namespace: dict[str, object] = {"__name__": "analysis"}
        try:
            exec(compile(source, "analysis.py", "exec"), namespace)
            analyze = namespace.get("analyze")
            if not callable(analyze):
                raise NameError("analysis.py defines no function analyze(df)")
            line = json.dumps({"status": "ok", "values": to_jsonable(analyze(frame))})
            code = 0
        except BaseException as exc:
            traceback.print_exc()
            line = json.dumps({"status": "error", "error": type(exc).__name__})
        result.write(line + "\n")
        result.flush()
    finally:
        os._exit(code)


def close_fds_except(keep: set[int]) -> None:
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd not in keep:
            with contextlib.suppress(OSError):
                os.close(fd)


class Janitor:
    """The small root process that cleans up after each block (see janitor.py)."""

    def __init__(self) -> None:
        self._process = subprocess.Popen(
            [sys.executable, "-I", "-B", JANITOR_PATH],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            bufsize=1,
        )

    def clean(self, uid: int, scratch: str) -> int:
        """Kill every process of ``uid`` and remove its things; the cleaner's exit code."""
        assert self._process.stdin is not None and self._process.stdout is not None
        try:
            self._process.stdin.write(json.dumps({"uid": uid, "scratch": scratch}) + "\n")
            self._process.stdin.flush()
            line = self._process.stdout.readline()
        except OSError:
            return -1
        return int(json.loads(line)["code"]) if line else -1


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def oom_kills() -> int:
    """The container's OOM-kill count (cgroup v1 or v2); -1 where the kernel does not say."""
    for path in ("/sys/fs/cgroup/memory/memory.oom_control", "/sys/fs/cgroup/memory.events"):
        try:
            for line in read_text(path).splitlines():
                if line.startswith("oom_kill "):
                    return int(line.split()[1])
        except OSError:
            continue
    return -1


def reap() -> None:
    """Collect every exited child, orphans of killed blocks included (PID 1 inherits them)."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def leftovers(uid: int) -> list[str]:
    """Anything of ``uid`` still alive or on disk: must be empty before the next block."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            status = read_text(f"/proc/{pid}/status")
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("Uid:") and str(uid) in line.split()[1:]:
                found.append(f"process {pid}")
    for name in os.listdir(SCRATCH):
        if os.lstat(os.path.join(SCRATCH, name)).st_uid == uid:
            found.append(f"file /scratch/{name}")
    found += [f"sysv {table} {ident}" for table, ident in sysv_objects(uid)]
    if os.path.isdir("/dev/mqueue"):
        for name in os.listdir("/dev/mqueue"):
            if os.lstat(os.path.join("/dev/mqueue", name)).st_uid == uid:
                found.append(f"mqueue {name}")
    return found


def run_block(
    janitor: Janitor, number: int, block: bytes, wall: float, limits: dict
) -> dict[str, object]:
    uid = FIRST_UID + number
    scratch = os.path.join(SCRATCH, f"b{number}")
    os.mkdir(scratch, 0o700)
    os.chown(scratch, uid, uid)
    data_r, data_w = os.pipe()
    result_r, result_w = os.pipe()
    log_r, log_w = os.pipe()
    started = time.monotonic()
    pid = os.fork()
    if pid == 0:
        for fd in (0, data_w, result_r, log_r):
            os.close(fd)
        child(uid, scratch, data_r, result_w, log_w, limits)
    for fd in (data_r, result_w, log_w):
        os.close(fd)

    def feed() -> None:
        view = memoryview(block)
        try:
            while view:
                view = view[os.write(data_w, view) :]
        except OSError:
            pass  # the child died or closed its end: it has its answer
        finally:
            os.close(data_w)

    threading.Thread(target=feed, daemon=True).start()
    out, err = bytearray(), bytearray()
    streams = {result_r: out, log_r: err}

    try:
        exited = os.pidfd_open(pid)  # readable once the child exits: no polling delay
    except (AttributeError, OSError):
        exited = None

    def read_ready(timeout: float) -> bool:
        watch = list(streams) + ([exited] if exited is not None and timeout else [])
        ready = select.select(watch, [], [], timeout)[0]
        for fd in ready:
            if fd == exited:
                continue
            chunk = os.read(fd, 65536)
            if not chunk:
                del streams[fd]
                continue
            buffer = streams[fd]
            buffer += chunk
            if len(buffer) > 2 * STREAM_LIMIT:
                del buffer[: len(buffer) - STREAM_LIMIT]
        return bool(ready)

    deadline = started + wall
    oom_before = oom_kills()
    timed_out, status = False, None
    # The block ends when its process exits (a daemon it left may hold the pipes open for
    # ever) or at the deadline (its process may close the pipes and live on).
    while status is None:
        done, code = os.waitpid(pid, os.WNOHANG)
        if done:
            status = code
            break
        left = deadline - time.monotonic()
        if left <= 0:
            timed_out = True
            break
        if streams or exited is not None:
            read_ready(min(left, 0.05))
        else:
            time.sleep(min(left, 0.002))
    if exited is not None:
        os.close(exited)
    drain_until = time.monotonic() + 0.2  # what the process wrote just before it exited
    while streams and time.monotonic() < drain_until and read_ready(0):
        pass
    for fd in (result_r, log_r):
        os.close(fd)
    # As the block's uid, the janitor's cleaner kills every process of it (however many a fork
    # bomb made) and removes its files and IPC objects; then nothing of the uid may be left.
    cleaned = janitor.clean(uid, scratch)
    if status is None:
        _, status = os.waitpid(pid, 0)
    with contextlib.suppress(OSError):  # not empty: the check below reports it
        os.rmdir(scratch)
    for _ in range(50):  # killed processes turn into zombies of PID 1 shortly after the kill
        reap()
        left = leftovers(uid)
        if not left:
            break
        time.sleep(0.02)
    if cleaned != 0:
        left.append(f"cleaner exited {cleaned}")
    if left:
        send(1, {"fatal": f"block {number} left {left[:5]}"})
        os._exit(3)  # fail closed: the host replaces this container
    exit_code = os.waitstatus_to_exitcode(status)
    if timed_out:
        end = "timeout"
    elif exit_code == 0:
        end = "exited"
    elif oom_kills() > oom_before:
        end = "out_of_memory"
    else:
        end = "nonzero_exit"
    return {
        "end": end,
        "exit_code": exit_code,
        "stdout": bytes(out[-STREAM_LIMIT:]).decode("utf-8", "replace"),
        "stderr": bytes(err[-STREAM_LIMIT:]).decode("utf-8", "replace"),
        "seconds": time.monotonic() - started,
    }


def warm_up() -> None:
    """Run the common pandas paths once on made-up rows (never data) before any block.

    Lazy imports and first-call set-up then happen once here instead of in every block's
    process, and ``gc.freeze`` keeps the children's collections off the inherited objects, so
    fewer copy-on-write faults. Arrow's system allocator: a forked child's first allocations
    fault far less than with its default mimalloc arenas.
    """
    pyarrow.set_memory_pool(pyarrow.system_memory_pool())
    pyarrow.set_cpu_count(1)  # the container's CPU quota is one core
    pyarrow.set_io_thread_count(1)
    rows = 64
    frame = pd.DataFrame(
        {
            "unit": numpy.arange(rows, dtype="int64"),
            "ts": pd.date_range("2020-01-01", periods=rows, freq="37min"),
            "key": [f"k{i % 5}" for i in range(rows)],
            "small": numpy.arange(rows, dtype="int16"),
            "value": numpy.linspace(0.0, 1.0, rows),
            "flag": numpy.arange(rows) % 2 == 0,
        }
    )
    buffer = io.BytesIO()
    frame.to_parquet(buffer)
    frame = read_block(buffer.getvalue())
    pd.read_parquet(io.BytesIO(buffer.getvalue()))
    frame.groupby(frame["ts"].dt.hour)["value"].agg(["mean", "sum", "count"])
    frame.groupby("key")["value"].mean()
    frame[frame["flag"] & frame["key"].isin(["k1"])]["value"].quantile(0.9)
    frame["value"].describe()
    json.dumps(to_jsonable({"a": numpy.float64(1.0)}))
    gc.collect()
    gc.freeze()


def main() -> None:
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    janitor = Janitor()  # before the warm-up: a small process to fork from
    warm_up()
    limits = {"fsize": int(os.environ.get("UNSEEN_FSIZE", str(32 * 1024 * 1024)))}
    send(1, {"ready": True})
    number = 0
    while True:
        try:
            (size,) = struct.unpack(">I", read_exact(0, 4))
        except EOFError:
            return
        header = json.loads(read_exact(0, size))
        block = read_exact(0, int(header["size"]))
        send(1, run_block(janitor, number, block, float(header["wall"]), limits))
        number += 1


if __name__ == "__main__":
    main()

"""In-container zygote: run many blocks in one container, each in a fresh process under a fresh uid.

Trusted code, PID 1 of a hardened container that holds *no data*: the host streams one block at
a time over stdin. The zygote has imported pandas, numpy and pyarrow, and passes each block's
bytes on unparsed: it never reads data or runs contestant code itself. Per block it

1. makes ``/scratch/b<n>`` (0700) for a uid ``n`` never used before in this container;
2. forks; the child drops to ``n`` (all capabilities go with uid 0), gets an empty environment,
   rlimits, its scratch as TMPDIR and cwd, reads the block from a pipe, compiles
   ``/job/analysis.py`` fresh and calls ``analyze``; its stdout/stderr go to a pipe, its result
   to another — the container's own stdout carries only zygote frames;
3. after the block (or at its deadline) kills every other process in the container
   (CAP_KILL), then forks a cleaner as ``n`` that removes its SysV IPC objects, message queues
   and files; then checks ``/proc``, IPC and the writable mounts: if anything of ``n`` is
   left, it exits (fail closed) and the host replaces the container.

Frames both ways: 4-byte big-endian length, then JSON (host → zygote: a header, then raw bytes).
"""

from __future__ import annotations

import contextlib
import ctypes
import io
import json
import numbers
import os
import resource
import select
import signal
import struct
import sys
import threading
import time
import traceback

import numpy  # noqa: F401  warm imports, shared copy-on-write by every block
import pandas as pd
import pyarrow.parquet  # noqa: F401

CODE_PATH = "/job/analysis.py"
SCRATCH = "/scratch"
FIRST_UID = 20_000
STREAM_LIMIT = 256 * 1024
IPC_RMID = 0
PR_CAPBSET_DROP = 24


def read_text(path: str) -> str:
    with open(path) as handle:
        return handle.read()


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
            frame = pd.read_parquet(io.BytesIO(data.read()))
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


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def cleaner(uid: int, scratch: str) -> None:
    """Forked as the block's uid: remove everything that uid could have left. Never returns."""
    try:
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)
        with contextlib.suppress(ProcessLookupError):
            os.kill(-1, signal.SIGKILL)  # every process of this uid but this one
        libc = _libc()
        calls = {"msg": libc.msgctl, "sem": libc.semctl, "shm": libc.shmctl}
        for table, ident in sysv_objects(uid):
            if table == "sem":
                calls[table](ident, 0, IPC_RMID)
            else:
                calls[table](ident, IPC_RMID, None)
        if os.path.isdir("/dev/mqueue"):
            for name in os.listdir("/dev/mqueue"):
                path = os.path.join("/dev/mqueue", name)
                if os.stat(path).st_uid == uid:
                    os.unlink(path)
        for root, dirs, files in os.walk(scratch, topdown=False):
            for name in files:
                os.unlink(os.path.join(root, name))
            for name in dirs:
                path = os.path.join(root, name)
                if os.path.islink(path):
                    os.unlink(path)
                else:
                    os.rmdir(path)
    except BaseException:
        traceback.print_exc()
        os._exit(1)
    os._exit(0)


#: Columns of /proc/sysvipc/<table> holding the owner's and the creator's uid.
SYSV_UID_COLUMNS = {"msg": (7, 9), "sem": (4, 6), "shm": (7, 9)}


def sysv_objects(uid: int) -> list[tuple[str, int]]:
    """SysV IPC objects owned or created by ``uid`` (an owner can hand one to another uid)."""
    found = []
    for table, columns in SYSV_UID_COLUMNS.items():
        try:
            lines = read_text(f"/proc/sysvipc/{table}").splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if any(int(fields[column]) == uid for column in columns):
                found.append((table, int(fields[1])))
    return found


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


def run_block(number: int, block: bytes, wall: float, limits: dict) -> dict[str, object]:
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
    # Kill every process but this one (CAP_KILL; PID 1 is never signalled), which also frees
    # the pids a fork bomb took; then clean up files and IPC as the block's uid.
    with contextlib.suppress(ProcessLookupError):  # ESRCH: nothing else was running
        os.kill(-1, signal.SIGKILL)
    if status is None:
        _, status = os.waitpid(pid, 0)
    reap()
    cleaner_pid = os.fork()
    if cleaner_pid == 0:
        cleaner(uid, scratch)
    os.waitpid(cleaner_pid, 0)
    os.rmdir(scratch)
    for _ in range(50):  # killed processes turn into zombies of PID 1 shortly after the kill
        reap()
        left = leftovers(uid)
        if not left:
            break
        time.sleep(0.02)
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


def main() -> None:
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
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
        send(1, run_block(number, block, float(header["wall"]), limits))
        number += 1


if __name__ == "__main__":
    main()

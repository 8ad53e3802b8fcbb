"""In-container zygote: run many blocks in one container, each in a fresh process under a fresh uid.

Trusted code, PID 1 of a hardened container that holds *no data*: the host streams one block at
a time over stdin. The zygote has imported pandas, numpy, pyarrow and the allowed libraries the
code imports, and passes each block's bytes on unparsed: it never reads data or runs
contestant code itself. For each block ``n``, before the block arrives, it

1. makes ``/scratch/b<n>`` (0700) for a uid ``n`` never used before in this container, and
2. asks the **template** for the block's process. The template is a process forked from the
   zygote once, after the warm-up and before any block existed: it never holds a block's bytes,
   result or logs (the zygote does, so it never forks a block's process). The template
   double-forks; the child, reparented to the zygote, is pid 1 of its own pid, mount and IPC
   namespaces with a /proc of its own (confine.py: no pid, /proc counter or IPC object of an
   earlier block reaches it), drops to ``n`` (all capabilities go with uid 0) under a seccomp
   filter that forbids making namespaces, gets an empty environment, rlimits, its scratch as
   TMPDIR and cwd, loads
   ``/job/analysis.py`` and waits for its block on a pipe. Its stdout/stderr go to a pipe, its
   result to another: the container's own stdout carries only zygote frames.

When the block arrives it is handed over; the zygote answers as soon as the child has said its
result and closed its pipes (or exited, or at the deadline). Then, with the host busy elsewhere,

3. the janitor (janitor.py, a small root process with a cleaner forked in advance) kills every
   process of ``n`` and removes its SysV IPC objects, message queues and files; the zygote
   waits until they are all gone and checks ``/proc``, IPC and the writable mounts: if anything
   of ``n`` is left, it exits (fail closed) and the host replaces the container. Otherwise it
   prepares block ``n + 1``'s process and says ``clean``: only then does the host send it one.

Before the first block it warms pandas up on made-up rows and freezes its heap (``warm_up``),
so each block's process starts with the lazy imports done and few copy-on-write faults.

Frames both ways: 4-byte big-endian length, then JSON (host → zygote: a header, then raw bytes).
The block's result line is written, recognised and relayed by ``privacy/block_line.py`` (copied
into the image next to this file), the module the host reads it with.
"""

from __future__ import annotations

import ast
import contextlib
import ctypes
import dataclasses
import gc
import importlib
import io
import json
import os
import resource
import select
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import traceback
from typing import Any

import numpy
import pandas as pd
import pyarrow
import pyarrow.parquet  # warm imports, shared copy-on-write by every block

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # -I leaves the script dir out
import confine
from janitor import read_text, sysv_objects

from privacy.block_line import error_line, frame_text, ok_line, said_status

CODE_PATH = "/job/analysis.py"
SCRATCH = "/scratch"
FIRST_UID = 20_000
STREAM_LIMIT = 256 * 1024
JANITOR_PATH = "/opt/unseen/janitor.py"
PR_SET_DUMPABLE = 4
PR_CAPBSET_DROP = 24
PR_SET_CHILD_SUBREAPER = 36


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
    """One whole frame. A write may take only part of it (gVisor's host fds do, measured: a
    256 KiB answer went out cut short, and the host waited for the rest until its grace ran
    out), so write until every byte is out, waiting while the channel is full."""
    payload = json.dumps(message).encode()
    view = memoryview(struct.pack(">I", len(payload)) + payload)
    while view:
        try:
            view = view[os.write(fd, view) :]
        except BlockingIOError:
            select.select([], [fd], [], 1.0)


def read_block(raw: bytes) -> pd.DataFrame:
    """The block as ``pandas.read_parquet`` gives it (same dtypes, tested), on one thread.

    The container has one CPU's quota, and a freshly forked process would first have to start
    Arrow's thread pools again: measurably slower than decoding on the calling thread.
    """
    table = pyarrow.parquet.read_table(io.BytesIO(raw), use_threads=False)
    return table.to_pandas(use_threads=False)


def confine_and_drop(
    uid: int, data_fd: int, result_fd: int, log_fd: int, ready_fd: int, limits: dict
) -> None:
    """Make the block's process what contestant code may run in, or raise.

    Pid 1 of its own pid, mount and IPC namespaces with a /proc of its own (confine.py), the
    log pipe as stdout and stderr, no other descriptor, an empty capability bounding set, its
    fresh uid, rlimits, and the seccomp filter that keeps the zygote's CAP_SYS_ADMIN calls
    from it."""
    confine.mount_private_proc()
    with open("/proc/self/oom_score_adj", "w") as adj:
        adj.write("1000")  # under memory pressure the block dies, not the zygote
    os.setsid()
    os.dup2(log_fd, 1)
    os.dup2(log_fd, 2)
    close_fds_except({0, 1, 2, data_fd, result_fd, ready_fd})  # the janitor's pipes above all
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
    confine.forbid_admin_calls()


def child(
    uid: int, scratch: str, data_fd: int, result_fd: int, log_fd: int, ready_fd: int, limits: dict
) -> None:
    """The block's process. Never returns. ``ready_fd`` gets "ok" once it is confined (or why
    it could not be): the zygote never hands a block to a process that is not."""
    code = 1
    try:
        try:
            confine_and_drop(uid, data_fd, result_fd, log_fd, ready_fd, limits)
        except BaseException as exc:
            os.write(ready_fd, f"{type(exc).__name__}: {exc}".encode()[:2000])
            raise
        os.write(ready_fd, b"ok")
        os.close(ready_fd)
        os.chdir(scratch)
        os.environ.clear()
        os.environ.update(
            {"TMPDIR": scratch, "HOME": scratch, "LANG": "C.UTF-8", "PATH": "/usr/bin:/bin"}
        )
        sys.stdout = os.fdopen(1, "w", buffering=1)
        sys.stderr = os.fdopen(2, "w", buffering=1)
        result = os.fdopen(result_fd, "w")
        # The module is loaded before the block arrives (its imports and set-up are off the
        # block's path); it has nothing to look at yet: no data exists in this process.
        namespace: dict[str, object] = {"__name__": "analysis"}
        failed: BaseException | None = None
        try:
            with open(CODE_PATH, encoding="utf-8") as handle:
                exec(compile(handle.read(), "analysis.py", "exec"), namespace)
            if not callable(namespace.get("analyze")):
                raise NameError("analysis.py defines no function analyze(df)")
        except BaseException as exc:
            traceback.print_exc()
            failed = exc
        with os.fdopen(data_fd, "rb") as data:
            frame = read_block(data.read())
        try:
            if failed is not None:
                raise failed
            analyze = namespace["analyze"]
            line = ok_line(analyze(frame))  # type: ignore[operator]
            code = 0
        except BaseException as exc:
            if exc is not failed:
                traceback.print_exc()
            line = error_line(exc)
        result.write(line + "\n")
        result.flush()
        # Close every pipe before exiting: the zygote answers the host on these EOFs while
        # the kernel is still tearing this process's memory down.
        for stream in (result, sys.stdout, sys.stderr):
            with contextlib.suppress(OSError):
                stream.close()
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


@dataclasses.dataclass
class BlockProcess:
    """A block's process, forked and unprivileged before its block arrives (off its path)."""

    number: int
    uid: int
    scratch: str
    pid: int
    data_w: int
    result_r: int
    log_r: int


class Template:
    """The pristine process every block's process is forked from: it only ever forks.

    Forked from the zygote after the warm-up and before any block arrived, it never holds a
    block's bytes, a result or a log, not even in freed heap pages: the zygote, which does
    relay them, is never a block's fork parent. On a request (a uid and a scratch directory,
    nothing else) it makes the block's pipes and double-forks, so the block's process is
    reparented to the zygote (a child subreaper), which waits for it; the zygote gets the
    pid and its ends of the pipes over a Unix socket (SCM_RIGHTS).
    """

    def __init__(self) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        pid = os.fork()
        if pid == 0:
            ours.close()
            try:
                self._serve(theirs)
            finally:
                os._exit(0)
        theirs.close()
        self.pid, self._sock = pid, ours

    @staticmethod
    def _serve(sock: socket.socket) -> None:
        # Not even the host's channel: stdin and stdout become /dev/null, so fds 0-2 stay taken;
        # nor the janitor's pipes (inherited from the zygote): only the socket stays open.
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1):
            os.dup2(null, fd)
        os.close(null)
        close_fds_except({0, 1, 2, sock.fileno()})
        while True:
            request = sock.recv(4096)
            if not request:
                return
            order = json.loads(request)
            data_r, data_w = os.pipe()
            result_r, result_w = os.pipe()
            log_r, log_w = os.pipe()
            said_r, said_w = os.pipe()
            middle = os.fork()
            if middle == 0:  # exits soon: the block's process is then the zygote's
                sock.close()
                for fd in (data_w, result_r, log_r, said_r):
                    os.close(fd)
                os.write(said_w, json.dumps(fork_confined(order, data_r, result_w, log_w)).encode())
                os._exit(0)
            for fd in (data_r, result_w, log_w, said_w):
                os.close(fd)
            os.waitpid(middle, 0)
            said = read_text_fd(said_r) or '{"pid": -1, "error": "the fork parent died"}'
            leaked = confine.mount_leak()  # here, in the namespaces the block left
            if leaked:
                said = json.dumps({"pid": -1, "error": leaked})
            socket.send_fds(sock, [said.encode()], [data_w, result_r, log_r])
            for fd in (data_w, result_r, log_r):
                os.close(fd)

    def fork_block(self, uid: int, scratch: str, limits: dict) -> tuple[int, list[int]]:
        """The new block process's pid and the zygote's ends of its data, result, log pipes."""
        self._sock.send(json.dumps({"uid": uid, "scratch": scratch, "limits": limits}).encode())
        message, fds, _, _ = socket.recv_fds(self._sock, 4096, 3)
        said: dict[str, Any] = (
            json.loads(message) if message else {"pid": -1, "error": "the template died"}
        )
        pid = int(said["pid"])
        if pid <= 0 or len(fds) != 3:
            raise RuntimeError(f"no block process: {said.get('error')}")
        return pid, fds


def fork_confined(order: dict, data_r: int, result_w: int, log_w: int) -> dict[str, object]:
    """In the template's short-lived child: fork the block's process into new namespaces and
    wait until it has confined itself; its pid, or -1 and why not (the zygote then exits)."""
    try:
        confine.enter_new_namespaces()
    except confine.ConfineError as exc:
        return {"pid": -1, "error": str(exc)}
    ready_r, ready_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(ready_r)
        child(order["uid"], order["scratch"], data_r, result_w, log_w, ready_w, order["limits"])
    os.close(ready_w)
    word = read_text_fd(ready_r)
    if word != "ok":
        return {"pid": -1, "error": word or "the block process died while confining itself"}
    return {"pid": pid}


def read_text_fd(fd: int) -> str:
    with os.fdopen(fd, "rb") as handle:
        return handle.read().decode()


def prepare(template: Template, number: int, limits: dict) -> BlockProcess:
    """Have the template fork the next block's process: it sets itself up, then waits for data."""
    uid = FIRST_UID + number
    scratch = os.path.join(SCRATCH, f"b{number}")
    os.mkdir(scratch, 0o700)
    os.chown(scratch, uid, uid)
    pid, (data_w, result_r, log_r) = template.fork_block(uid, scratch, limits)
    return BlockProcess(number, uid, scratch, pid, data_w, result_r, log_r)


def run(process: BlockProcess, block: bytes, wall: float) -> tuple[dict[str, object], int | None]:
    """Hand the block over; the answer frame, and the wait status if the process has exited.

    The block ends when its process exits (a daemon it left may hold the pipes open for ever),
    when it has closed both pipes after a complete result line (what it said is complete; the
    exit status is not waited for: its teardown overlaps the answer), or at the deadline.
    """
    started = time.monotonic()
    pid = process.pid

    def feed() -> None:
        view = memoryview(block)
        try:
            while view:
                view = view[os.write(process.data_w, view) :]
        except OSError:
            pass  # the child died or closed its end: it has its answer
        finally:
            os.close(process.data_w)

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    out, err = bytearray(), bytearray()
    streams = {process.result_r: out, process.log_r: err}

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
    while True:
        done, code = os.waitpid(pid, os.WNOHANG)
        if done:
            status = code
            break
        if not streams and said_status(bytes(out)) is not None:
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
    for fd in (process.result_r, process.log_r):
        os.close(fd)
    feeder.join(1.0)
    if timed_out:
        end, exit_code = "timeout", None
    elif status is None:  # said its last word and closed its pipes: exiting
        said = said_status(bytes(out))
        end, exit_code = ("exited", 0) if said == "ok" else ("nonzero_exit", 1)
    else:
        exit_code = os.waitstatus_to_exitcode(status)
        if exit_code == 0:
            end = "exited"
        elif oom_kills() > oom_before:
            end = "out_of_memory"
        else:
            end = "nonzero_exit"
    answer: dict[str, object] = {
        "end": end,
        "exit_code": exit_code,
        "stdout": frame_text(bytes(out[-STREAM_LIMIT:])),  # the host gets these very bytes
        "stderr": bytes(err[-STREAM_LIMIT:]).decode("utf-8", "replace"),
        "seconds": time.monotonic() - started,
    }
    return answer, status


def clean_up(janitor: Janitor, process: BlockProcess, status: int | None) -> list[str]:
    """Remove everything of the block's uid; what is left (must be nothing) is returned.

    As the block's uid, the janitor's cleaner kills every process of it (however many a fork
    bomb made) and removes its files and IPC objects. Then the process is waited for and every
    orphan reaped, so its memory and pids are back before the next block can run here.
    """
    cleaned = janitor.clean(process.uid, process.scratch)
    if status is None:
        os.waitpid(process.pid, 0)
    with contextlib.suppress(OSError):  # not empty: the check below reports it
        os.rmdir(process.scratch)
    for _ in range(50):  # killed processes turn into zombies of PID 1 shortly after the kill
        reap()
        left = leftovers(process.uid)
        if not left:
            break
        time.sleep(0.02)
    if cleaned != 0:
        left.append(f"cleaner exited {cleaned}")
    return left


def preload(allowed: set[str]) -> list[str]:
    """Import, here in the zygote, the allowed modules the code imports; never runs the code.

    Every block's process then inherits them instead of importing them again (scikit-learn
    alone takes about a second). Only modules of allowed packages (the pre-flight policy's
    list, from the host) are imported: library code of the read-only image.
    """
    try:
        tree = ast.parse(read_text(CODE_PATH))
    except (OSError, SyntaxError, ValueError):
        return []
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    loaded = []
    for name in sorted(names):
        if name.split(".")[0] in allowed:
            try:
                importlib.import_module(name)
            except Exception:  # not a module, or broken: the block's own import says so
                continue
            loaded.append(name)
    return loaded


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
    ok_line({"a": numpy.float64(1.0)})
    gc.collect()
    gc.freeze()


def main() -> None:
    # Non-dumpable, as the janitor: no block's uid may ptrace or look into the zygote or the
    # template (a fork inherits it). Defence in depth: Linux refuses another uid that already
    # (these are root's), and gVisor's /proc shows a root process's environ, maps, smaps,
    # auxv and fd links to any uid whatever this flag says (measured; docs/isolation.md).
    _libc().prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    janitor = Janitor()  # before the warm-up: a small process to fork from
    preload(set(filter(None, os.environ.get("UNSEEN_PRELOAD", "").split(","))))
    warm_up()
    # Orphans come to the zygote (it is PID 1 in the container, but need not be): the block
    # processes the template double-forks are its children to wait for.
    _libc().prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    template = Template()  # before any block's bytes exist in this process
    limits = {"fsize": int(os.environ.get("UNSEEN_FSIZE", str(32 * 1024 * 1024)))}
    number = 0
    process = prepare(template, number, limits)
    send(1, {"ready": True})
    while True:
        try:
            (size,) = struct.unpack(">I", read_exact(0, 4))
        except EOFError:
            return
        header = json.loads(read_exact(0, size))
        block = read_exact(0, int(header["size"]))
        answer, status = run(process, block, float(header["wall"]))
        send(1, answer)
        # After the answer, while the host goes on elsewhere: this container is only sent
        # another block once it has said "clean" (or fails closed: the host replaces it).
        left = clean_up(janitor, process, status)
        if left:
            send(1, {"fatal": f"block {process.number} left {left[:5]}"})
            os._exit(3)
        number += 1
        process = prepare(template, number, limits)
        send(1, {"clean": True})


if __name__ == "__main__":
    main()

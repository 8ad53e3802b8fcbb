"""In-container janitor: remove everything a finished block's uid left, cheaply and always.

Trusted code, started by the zygote (root inside the container, the zygote's capabilities). It
exists for two reasons:

* **cost** — it is a small process (no pandas), so forking it costs a fraction of a millisecond
  where forking the zygote costs several;
* **a pid is always there** — it keeps one cleaner forked *in advance*, so cleaning up never
  needs a free pid, even after a fork bomb took every pid the container may have.

On ``{"uid": n, "scratch": path}`` (one JSON line on stdin) the waiting cleaner becomes uid
``n``, kills every process of ``n`` (``kill(-1)`` as ``n``: the kernel signals them all under
one lock, so no fork escapes it), removes the SysV IPC objects and POSIX message queues ``n``
owns or created and every file under its scratch directory, and exits. The janitor answers
``{"code": <cleaner exit code>}`` and forks the next cleaner. The zygote still checks that
nothing of ``n`` is left and fails closed if anything is.

Imported by the zygote for :func:`sysv_objects`, so it has no third-party imports.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import sys
import time
import traceback

IPC_RMID = 0

#: Columns of /proc/sysvipc/<table> holding the owner's and the creator's uid.
SYSV_UID_COLUMNS = {"msg": (7, 9), "sem": (4, 6), "shm": (7, 9)}


def read_text(path: str) -> str:
    with open(path) as handle:
        return handle.read()


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


def drop_descriptors() -> None:
    """Keep only stderr: the janitor's request and answer pipes (0, 1) become /dev/null.

    The cleaner becomes the block's uid while that uid's processes may still live; a process
    of the same uid may open another's descriptors through /proc/<pid>/fd (Linux refuses it
    for the cleaner, made non-dumpable by its setuid; gVisor was seen to allow opening a
    root process's descriptor), so the cleaner holds nothing worth opening."""
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1):
        os.dup2(null, fd)
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd > 2:
            with contextlib.suppress(OSError):
                os.close(fd)


def clean(uid: int, scratch: str) -> None:
    """As ``uid``: kill its processes, remove its IPC objects and files. Never returns."""
    try:
        drop_descriptors()
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)
        with contextlib.suppress(ProcessLookupError):
            os.kill(-1, signal.SIGKILL)  # every process of this uid but this one
        libc = ctypes.CDLL(None, use_errno=True)
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


def fork_cleaner() -> tuple[int, int]:
    """A cleaner waiting, as root, for the one request it will serve: (pid, request fd)."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(write_end)
        with os.fdopen(read_end) as requests:
            line = requests.readline()
        if not line:
            os._exit(0)  # the janitor is gone: nothing to clean
        request = json.loads(line)
        clean(int(request["uid"]), str(request["scratch"]))
    os.close(read_end)
    return pid, write_end


def fork_cleaner_patiently(seconds: float = 5.0) -> tuple[int, int] | None:
    """Fork the next cleaner, waiting while killed processes still hold pids as zombies."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            return fork_cleaner()
        except BlockingIOError:  # EAGAIN: the pids limit; the zygote is reaping
            if time.monotonic() > deadline:
                return None
            time.sleep(0.005)


PR_SET_DUMPABLE = 4


def serve() -> None:
    # Not to be looked into by a block's uid through /proc (see the zygote's main); cleaners
    # inherit it, and become a block's uid only to kill and remove.
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)
    cleaner = fork_cleaner_patiently()
    for line in sys.stdin:
        if cleaner is None:
            answer = {"code": -1, "error": "could not fork a cleaner"}
        else:
            pid, request_fd = cleaner
            os.write(request_fd, line.encode())
            os.close(request_fd)
            _, status = os.waitpid(pid, 0)
            answer = {"code": os.waitstatus_to_exitcode(status)}
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()
        cleaner = fork_cleaner_patiently()  # off the block's path: the zygote is reaping


if __name__ == "__main__":
    serve()

"""A block's own namespaces in the zygote form: what one block does leaves no count for the next.

Trusted code, stdlib only (the zygote and the tests import it). The blocks of one zygote
container run in turn in one container, and some of the container's kernel state outlives a
process: pids are handed out in sequence in a pid namespace (a block's pid would count the
processes earlier blocks made), ``/proc`` shows every process of the namespace (the zygote's
CPU time, faults and memory move with what earlier blocks sent through it), and SysV IPC
objects belong to an IPC namespace, not to a process. So each block's process gets

* its own **pid namespace**, where it is pid 1 (its pid is 1 in every block; when it exits
  the kernel kills whatever it left there);
* its own **mount namespace** with a fresh ``/proc`` of that pid namespace (it sees its own
  processes only), Docker's masked and read-only ``/proc`` paths masked again as Docker does;
* its own **IPC namespace**: its SysV objects and message queues die with it (gVisor has no
  ``/proc/sysvipc`` to find them by, so the janitor could not remove them there).

Making them takes CAP_SYS_ADMIN, which the zygote container therefore has. With it, Docker's
seccomp profile lets every process of the container call ``unshare``, ``setns``, ``mount``,
``bpf`` and the others it keeps for that capability. A block's process has no capability, but
``unshare(CLONE_NEWUSER)`` needs none and opens much of the kernel. So before any contestant
code, the block's process stacks a seccomp filter of its own (:func:`forbid_admin_calls`):
those calls fail with EPERM, as they do in a container without the capability, and the filter
is inherited by everything the block starts and can never be removed.
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform
import struct

CLONE_NEWNS = 0x00020000
CLONE_NEWIPC = 0x08000000
CLONE_NEWPID = 0x20000000
#: Every CLONE_NEW* flag clone(2) takes (CLONE_NEWTIME only exists for unshare and clone3).
CLONE_NEW_ANY = 0x00020000 | 0x02000000 | 0x04000000 | 0x08000000 | 0x10000000 | 0x20000000
CLONE_NEW_ANY |= 0x40000000

MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_RDONLY = 0x2, 0x4, 0x8, 0x1
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 0x20, 0x1000, 0x4000, 0x40000

#: What Docker masks in a container's /proc (moby's default MaskedPaths): host-wide facts,
#: some of them about every task of the machine (timer_list, sched_debug).
MASKED = (
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
)
#: What Docker makes read-only there (moby's default ReadonlyPaths).
READ_ONLY = ("/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger")

AUDIT_ARCH_X86_64 = 0xC000003E
X32_SYSCALL_BIT = 0x40000000
#: x86_64 numbers of the calls Docker's seccomp profile allows only with CAP_SYS_ADMIN
#: (``clone`` is checked for namespace flags, ``clone3`` answered ENOSYS below).
ADMIN_CALLS_X86_64 = {
    "syslog": 103,
    "sethostname": 170,
    "setdomainname": 171,
    "quotactl": 179,
    "mount": 165,
    "umount2": 166,
    "lookup_dcookie": 212,
    "unshare": 272,
    "perf_event_open": 298,
    "fanotify_init": 300,
    "name_to_handle_at": 303,
    "setns": 308,
    "bpf": 321,
    "open_tree": 428,
    "move_mount": 429,
    "fsopen": 430,
    "fsconfig": 431,
    "fsmount": 432,
    "fspick": 433,
    "mount_setattr": 442,
    "quotactl_fd": 443,
}
CLONE_X86_64, CLONE3_X86_64 = 56, 435

SECCOMP_RET_KILL_PROCESS = 0x80000000
SECCOMP_RET_ERRNO = 0x00050000
SECCOMP_RET_ALLOW = 0x7FFF0000
PR_SET_NO_NEW_PRIVS = 38
PR_SET_SECCOMP = 22
SECCOMP_MODE_FILTER = 2

# classic BPF opcodes
LD_ABS_W = 0x20  # BPF_LD | BPF_W | BPF_ABS
JEQ = 0x15  # BPF_JMP | BPF_JEQ | BPF_K
JGE = 0x35  # BPF_JMP | BPF_JGE | BPF_K
JSET = 0x45  # BPF_JMP | BPF_JSET | BPF_K
RET = 0x06  # BPF_RET | BPF_K

# offsets in struct seccomp_data
NR, ARCH, ARG0_LOW = 0, 4, 16  # args[0]'s low 32 bits (little-endian)


class ConfineError(RuntimeError):
    """A block's namespaces or filter could not be made: the zygote must not run blocks."""


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        code = ctypes.get_errno()
        raise ConfineError(f"{what}: {os.strerror(code)} (errno {code})")


def supported() -> str | None:
    """Why this machine cannot confine blocks (None when it can): the filter is x86_64's."""
    if platform.machine() not in ("x86_64", "AMD64"):
        return f"the zygote's seccomp filter knows x86_64 only, not {platform.machine()}"
    return None


def enter_new_namespaces() -> None:
    """Called by the block's fork parent: its next child is pid 1 of a new pid namespace, in
    a new mount and IPC namespace."""
    _check(_libc().unshare(CLONE_NEWPID | CLONE_NEWNS | CLONE_NEWIPC), "unshare")


def mount_private_proc() -> None:
    """Called by the block's process (pid 1 of its namespace) while it is still root: a /proc
    that shows its own namespace, masked as Docker masks the container's."""
    libc = _libc()
    if libc.mount(None, b"/", None, MS_REC | MS_PRIVATE, None) != 0:
        # gVisor (2022) refuses the call: it has no mount propagation, every mount is
        # private. Go on only if the mount table agrees (no peer group on any mount).
        code = ctypes.get_errno()
        if code != errno.EINVAL or shared_mounts():
            raise ConfineError(f"make mounts private: {os.strerror(code)} (errno {code})")
    if libc.mount(b"proc", b"/proc", b"proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, None) != 0:
        code = ctypes.get_errno()
        raise ConfineError(
            f"mount /proc: {os.strerror(code)} (errno {code}); a host policy (AppArmor's "
            "docker-default, SELinux) may forbid mounts in containers: give the zygote "
            "container a profile that allows mounting proc and tmpfs, or set "
            "UNSEEN_ISOLATION=container"
        )
    for path in MASKED:
        if os.path.exists(path):
            _hide(libc, path)
    for path in READ_ONLY:
        if os.path.exists(path):
            target = path.encode()
            _check(libc.mount(target, target, None, MS_BIND, None), path)
            flags = MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC
            if libc.mount(target, target, None, flags, None) != 0:
                # gVisor (2022) cannot make a bind mount read-only: hide the path instead.
                _hide(libc, path)


def _hide(libc: ctypes.CDLL, path: str) -> None:
    """An empty read-only tmpfs over a directory, /dev/null over a file."""
    if os.path.isdir(path):
        flags = MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC
        _check(libc.mount(b"tmpfs", path.encode(), b"tmpfs", flags, b"size=0"), path)
    else:
        _check(libc.mount(b"/dev/null", path.encode(), None, MS_BIND, None), path)


def mount_leak() -> str | None:
    """Called in the zygote's namespaces once a block's process has mounted its /proc: why
    that mount reached them, or None. gVisor 2022.12 (Debian 12's runsc) answers
    ``unshare(CLONE_NEWNS)`` with success and shares the mount table anyway (measured): the
    block's /proc then shows the zygote a namespace it is not in."""
    try:
        if os.readlink("/proc/self") == str(os.getpid()):
            return None
    except OSError:
        pass
    return (
        "a block's /proc mount reached the zygote's mount namespace: this runtime does not "
        "isolate mount namespaces, so the zygote form cannot give blocks a /proc of their own "
        "here (use UNSEEN_ISOLATION=container)"
    )


def shared_mounts() -> list[str]:
    """Mount points with a propagation peer group ("shared:N" in /proc/self/mountinfo)."""
    with open("/proc/self/mountinfo") as handle:
        lines = handle.read().splitlines()
    found = []
    for line in lines:
        fields = line.split(" - ")[0].split()
        if any(tag.startswith("shared:") for tag in fields[6:]):
            found.append(fields[4])
    return found


def admin_filter() -> list[tuple[int, int, int, int]]:
    """The filter's instructions: (code, jump if true, jump if false, k).

    Proof sketch. A call of another architecture is killed (its numbers differ: it would
    bypass the table), and so is an x32 call (same architecture, numbers with bit 30). A call
    in the table gets EPERM; ``clone`` gets EPERM if any CLONE_NEW* bit is set in its flags;
    ``clone3`` gets ENOSYS (its flags sit in memory a filter cannot read; glibc then falls back
    to ``clone``, which is checked). Everything else is allowed, so the filter only ever takes
    away; stacked on Docker's, the stricter answer wins.
    """
    calls = sorted(ADMIN_CALLS_X86_64.values())
    eperm = SECCOMP_RET_ERRNO | errno.EPERM
    program = [
        (LD_ABS_W, 0, 0, ARCH),
        (JEQ, 1, 0, AUDIT_ARCH_X86_64),
        (RET, 0, 0, SECCOMP_RET_KILL_PROCESS),
        (LD_ABS_W, 0, 0, NR),
        (JGE, 0, 1, X32_SYSCALL_BIT),
        (RET, 0, 0, SECCOMP_RET_KILL_PROCESS),
    ]
    # Each table entry jumps to the shared EPERM return placed right after the table.
    for index, number in enumerate(calls):
        program.append((JEQ, len(calls) - index - 1 + 4, 0, number))
    program += [
        (JEQ, 2, 0, CLONE3_X86_64),
        (JEQ, 3, 0, CLONE_X86_64),
        (RET, 0, 0, SECCOMP_RET_ALLOW),
        (RET, 0, 0, SECCOMP_RET_ERRNO | errno.ENOSYS),
        (RET, 0, 0, eperm),
        (LD_ABS_W, 0, 0, ARG0_LOW),
        (JSET, 0, 1, CLONE_NEW_ANY),
        (RET, 0, 0, eperm),
        (RET, 0, 0, SECCOMP_RET_ALLOW),
    ]
    return program


def forbid_admin_calls() -> None:
    """Stack :func:`admin_filter` on this process (and all it will start), for good."""
    reason = supported()
    if reason:
        raise ConfineError(reason)
    program = admin_filter()
    raw = b"".join(struct.pack("<HBBI", *instruction) for instruction in program)
    buffer = ctypes.create_string_buffer(raw, len(raw))

    class SockFprog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]

    fprog = SockFprog(len(program), ctypes.cast(buffer, ctypes.c_void_p))
    libc = _libc()
    _check(libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")
    _check(libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(fprog), 0, 0), "seccomp")

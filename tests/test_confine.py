"""The zygote's seccomp filter for blocks (images/runner/confine.py), checked two ways.

Its program is run here by a small classic-BPF interpreter on every call it names and on
neighbours of each (its jumps are hand-counted: an off-by-one would allow or refuse the wrong
call), then installed for real in a child process of this host's kernel. The zygote's own
use of it, inside containers under each runtime, is tested in test_zygote_proc.py.
"""

from __future__ import annotations

import errno
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

CONFINE_PATH = Path(__file__).resolve().parents[1] / "images" / "runner" / "confine.py"
_spec = importlib.util.spec_from_file_location("confine", CONFINE_PATH)
assert _spec is not None and _spec.loader is not None
confine = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(confine)

EPERM = confine.SECCOMP_RET_ERRNO | errno.EPERM
ENOSYS = confine.SECCOMP_RET_ERRNO | errno.ENOSYS
ALLOW = confine.SECCOMP_RET_ALLOW
KILL = confine.SECCOMP_RET_KILL_PROCESS


def verdict(nr: int, arg0: int = 0, arch: int = confine.AUDIT_ARCH_X86_64) -> int:
    """What the filter answers, by the semantics of classic BPF (unsigned compares)."""
    program = confine.admin_filter()
    fields = {confine.NR: nr & 0xFFFFFFFF, confine.ARCH: arch, confine.ARG0_LOW: arg0}
    accumulator, pc = 0, 0
    for _ in range(len(program) + 1):
        code, jt, jf, k = program[pc]
        if code == confine.LD_ABS_W:
            accumulator, pc = fields[k], pc + 1
        elif code == confine.RET:
            return k
        else:
            taken = {
                confine.JEQ: accumulator == k,
                confine.JGE: accumulator >= k,
                confine.JSET: bool(accumulator & k),
            }[code]
            pc += 1 + (jt if taken else jf)
    raise AssertionError("the program did not return")


@pytest.mark.parametrize("name", sorted(confine.ADMIN_CALLS_X86_64))
def test_each_call_docker_keeps_for_cap_sys_admin_is_refused(name: str) -> None:
    assert verdict(confine.ADMIN_CALLS_X86_64[name]) == EPERM


def test_ordinary_calls_are_allowed() -> None:
    refused = set(confine.ADMIN_CALLS_X86_64.values()) | {confine.CLONE3_X86_64}
    for nr in range(0, 460):
        if nr not in refused and nr != confine.CLONE_X86_64:
            assert verdict(nr) == ALLOW, nr


def test_clone_is_refused_only_with_a_namespace_flag() -> None:
    thread_flags = 0x3D0F00  # what glibc's pthread_create passes
    assert verdict(confine.CLONE_X86_64, thread_flags) == ALLOW
    assert verdict(confine.CLONE_X86_64, 17) == ALLOW  # fork: SIGCHLD only
    for bit in range(32):
        flag = 1 << bit
        expected = EPERM if flag & confine.CLONE_NEW_ANY else ALLOW
        assert verdict(confine.CLONE_X86_64, 17 | flag) == expected, hex(flag)


def test_clone3_says_enosys_so_glibc_falls_back_to_clone() -> None:
    assert verdict(confine.CLONE3_X86_64) == ENOSYS


def test_other_architectures_and_x32_calls_are_killed() -> None:
    assert verdict(39, arch=0x40000003) == KILL  # i386 getpid
    assert verdict(39, arch=0xC00000B7) == KILL  # aarch64
    assert verdict(confine.X32_SYSCALL_BIT | 272) == KILL  # x32 unshare
    assert verdict(-1) == KILL


INSTALLED = f"""
import ctypes, errno, importlib.util, os, subprocess, threading
spec = importlib.util.spec_from_file_location('confine', {str(CONFINE_PATH)!r})
confine = importlib.util.module_from_spec(spec); spec.loader.exec_module(confine)
confine.forbid_admin_calls()
libc = ctypes.CDLL(None, use_errno=True)
def refused(result):
    return result == -1 and ctypes.get_errno() == errno.EPERM
assert refused(libc.unshare(0x10000000)), 'unshare'
assert refused(libc.syscall(56, 0x10000000 | 17, 0, 0, 0, 0)), 'clone(CLONE_NEWUSER)'
assert refused(libc.mount(b'none', b'/mnt', b'tmpfs', 0, None)), 'mount'
assert refused(libc.syscall(321, 0, 0, 0)), 'bpf'
box = []
thread = threading.Thread(target=box.append, args=(1,)); thread.start(); thread.join()
assert box == [1], 'threads'
assert subprocess.run(['true']).returncode == 0, 'fork and exec'
print('confined')
"""


def test_installed_on_this_kernel_it_refuses_those_calls_and_keeps_threads_and_fork() -> None:
    done = subprocess.run(
        [sys.executable, "-c", INSTALLED], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0 and done.stdout.strip() == "confined", done.stderr

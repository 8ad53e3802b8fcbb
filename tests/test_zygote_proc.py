"""What a block of the zygote form can see of other processes through /proc, under each runtime.

Linux refuses another uid most of /proc/<pid>; gVisor's /proc is laxer (a block's uid reads a
root process's environ, maps, smaps, auxv and fd links, whatever its dumpable flag). Here an
earlier block plants a marker derived from its data everywhere it can (environment, memory,
thread name, stdout, stderr, a scratch file, a pipe left full) and the next block of the same
container reads every /proc path it can open, of every other process and thread, descriptors
included: it must find no trace.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from privacy.outputs import make_output_spec, parse_block_output
from sandbox.container import BlockRun, RunEnd

pytestmark = pytest.mark.docker

PROC_HUNT = r"""
import ctypes, os, re, sys

PATTERN = re.compile(('UNSEEN' + r'MARK-(\d+)').encode())
SKIP = {'kmsg', 'kcore', 'sysrq-trigger', 'clear_refs'}

def listdir(path):
    try:
        return os.listdir(path)
    except OSError:
        return []

def plant(marker):
    os.environ['UNSEEN_LEAK'] = marker
    ctypes.CDLL(None).prctl(15, marker[:15].encode())  # PR_SET_NAME: the thread's comm
    print(marker * 64)
    sys.stderr.write(marker * 64)
    with open('mark', 'w') as handle:
        handle.write(marker)
    read_end, write_end = os.pipe()
    os.write(write_end, marker.encode())
    return [marker.encode() * 4096, read_end, write_end]

def hunt(mine):
    found, opened = [], 0
    def scan(path):
        nonlocal opened
        if os.path.basename(path) in SKIP:
            return
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        except OSError:
            return
        try:
            data = os.read(fd, 1 << 22)
        except OSError:
            return
        finally:
            os.close(fd)
        opened += 1
        if any(int(m.group(1)) != mine for m in PATTERN.finditer(data)):
            found.append(path)
    me = os.getpid()
    for name in listdir('/proc'):
        if not name.isdigit():
            if os.path.isfile('/proc/' + name):
                scan('/proc/' + name)
            continue
        if int(name) == me:
            continue
        base = '/proc/' + name
        for where in [base] + [base + '/task/' + t for t in listdir(base + '/task')]:
            for entry in listdir(where):
                path = where + '/' + entry
                if entry in ('fd', 'fdinfo', 'map_files'):
                    for fd in listdir(path):
                        scan(path + '/' + fd)
                        try:
                            link = os.readlink(path + '/' + fd)
                        except OSError:
                            continue
                        if PATTERN.search(link.encode()):
                            found.append(path + '/' + fd)
                elif os.path.isfile(path):
                    scan(path)
    print('opened', opened, 'found', found[:20])
    return float(len(found)), float(opened)

def analyze(df):
    mine = int(df['card_id'].min()) * 7919 + 13
    if df['card_id'].min() < 100:
        globals()['kept'] = plant('UNSEEN' + 'MARK-%d-' % mine)
        return {'role': 1.0}
    found, opened = hunt(mine)
    return {'role': 2.0, 'found': found, 'opened': opened}
"""


@pytest.fixture
def blocks(tmp_path: Path) -> tuple[Path, Path]:
    tmp_path.chmod(0o755)
    paths = []
    for name, first in (("planter", 1), ("hunter", 100)):
        path = tmp_path / f"{name}.parquet"
        pd.DataFrame({"card_id": [first, first + 1], "fare": [3.0, 4.0]}).to_parquet(path)
        path.chmod(0o644)
        paths.append(path)
    return paths[0], paths[1]


def values(run: BlockRun, names: list[str]) -> dict[str, float]:
    assert run.end is RunEnd.EXITED, (run.end, run.stderr[-2000:])
    parsed = parse_block_output(run.stdout, [make_output_spec(n, -1, 1e9) for n in names])
    return dict(parsed.values)


def test_a_later_block_finds_no_trace_of_an_earlier_one_anywhere_in_proc(
    slot_for, blocks: tuple[Path, Path]
) -> None:
    planter, hunter = blocks
    container = slot_for(PROC_HUNT)
    assert values(container.run(planter), ["role"]) == {"role": 1.0}
    run = container.run(hunter)
    found = values(run, ["role", "found", "opened"])
    assert found["role"] == 2.0
    # it did read /proc (its own namespace's: no other process is there to read, under
    # runsc 11 files; under runc many more)
    assert found["opened"] >= 10, run.stdout[-2000:]
    assert found["found"] == 0.0, run.stdout[-2000:]


PID_COUNTER = """
import os
def analyze(df):
    for _ in range(int(df['fare'].sum())):
        pid = os.fork()
        if pid == 0:
            os._exit(0)
        os.waitpid(pid, 0)
    return {'pid': float(os.getpid())}
"""


def quiet_and_busy(tmp_path: Path, forks: int) -> tuple[Path, Path]:
    """Two one-row blocks: the busy one's ``fare`` is how many processes the code forks."""
    paths = []
    for name, card, fare in (("quiet", 1, 0.0), ("busy", 2, float(forks))):
        path = tmp_path / f"{name}.parquet"
        pd.DataFrame({"card_id": [card], "fare": [fare]}).to_parquet(path)
        path.chmod(0o644)
        paths.append(path)
    return paths[0], paths[1]


def test_a_blocks_pid_does_not_depend_on_how_many_processes_an_earlier_block_made(
    slot_for, tmp_path: Path
) -> None:
    """Pids are handed out in sequence in a pid namespace: in a shared one a block's pid
    would count the processes earlier blocks made. Each block is pid 1 of its own."""
    quiet, busy = quiet_and_busy(tmp_path, forks=30)
    container = slot_for(PID_COUNTER)
    pids = [values(container.run(p), ["pid"])["pid"] for p in (quiet, busy, busy, quiet)]
    assert pids == [1.0, 1.0, 1.0, 1.0], pids


PROC_VIEW = """
import os
def analyze(df):
    rounds = int(df['fare'].sum())
    for _ in range(rounds):  # work pushed through the zygote: its counters would move
        pid = os.fork()
        if pid == 0:
            os._exit(0)
        os.waitpid(pid, 0)
    pids = sorted(int(p) for p in os.listdir('/proc') if p.isdigit())
    with open('/proc/1/stat') as handle:
        stat = handle.read().split()
    return {'processes': float(len(pids)), 'first': float(pids[0]),
            'own_stat': float(stat[0] == '1' and 'python' in stat[1]),
            'self': float(os.readlink('/proc/self'))}
"""


def test_a_block_sees_only_its_own_processes_in_proc(slot_for, tmp_path: Path) -> None:
    """Its /proc is its own namespace's: pid 1 is the block itself (the zygote's CPU time,
    faults and memory, which move with earlier blocks, are out of sight), and /proc/self is
    the same in every block."""
    quiet, busy = quiet_and_busy(tmp_path, forks=25)
    container = slot_for(PROC_VIEW)
    names = ["processes", "first", "own_stat", "self"]
    seen = [values(container.run(p), names) for p in (quiet, busy, quiet)]
    for view in seen:
        assert view == {"processes": 1.0, "first": 1.0, "own_stat": 1.0, "self": 1.0}, seen


ADMIN_CALLS = r"""
import ctypes, errno, os, subprocess, threading
libc = ctypes.CDLL(None, use_errno=True)

def refused(result):
    return float(result == -1 and ctypes.get_errno() == errno.EPERM)

def analyze(df):
    out = {
        'unshare_user': refused(libc.unshare(0x10000000)),
        'unshare_ipc': refused(libc.unshare(0x08000000)),
        'clone_user': refused(libc.syscall(56, 0x10000000 | 17, 0, 0, 0, 0)),
        'setns': refused(libc.setns(0, 0)),  # EINVAL (not a namespace) were it let through
        'mount': refused(libc.mount(b'none', b'/tmp', b'tmpfs', 0, None)),
        'bpf': refused(libc.syscall(321, 0, 0, 0)),
    }
    box = []
    thread = threading.Thread(target=box.append, args=(1.0,))
    thread.start(); thread.join()
    out['thread'] = box[0]
    out['subprocess'] = float(subprocess.run(['true']).returncode == 0)
    return out
"""


def test_a_block_cannot_make_namespaces_or_mount_though_its_zygote_can(
    slot_for, tmp_path: Path
) -> None:
    """The zygote holds CAP_SYS_ADMIN to give each block its namespaces, so Docker's seccomp
    profile allows these calls in its container; the block's own filter refuses them (EPERM,
    as without the capability), while threads and child processes still work."""
    block = tmp_path / "block.parquet"
    pd.DataFrame({"card_id": [1], "fare": [1.0]}).to_parquet(block)
    block.chmod(0o644)
    names = ["unshare_user", "unshare_ipc", "clone_user", "setns", "mount", "bpf"]
    got = values(slot_for(ADMIN_CALLS).run(block), [*names, "thread", "subprocess"])
    assert got == dict.fromkeys([*names, "thread", "subprocess"], 1.0), got

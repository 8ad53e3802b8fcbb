"""The fast form: one container, a fresh process and uid per block. Hostile code in one block
tries every channel to the next block of the same container; the next block must see nothing.
"""

from __future__ import annotations

import socket
from pathlib import Path

import docker
import pandas as pd
import pytest

from privacy.outputs import make_output_spec, parse_block_output
from sandbox.container import BlockRun, RunEnd, SandboxLimits
from sandbox.zygote import ZygoteSlot

pytestmark = pytest.mark.docker

# Block "writer" (card ids from 1) leaves everything it can; block "reader" (ids from 100)
# looks for all of it. Same code, as in a real job: the data decides the role.
CROSS_BLOCK = r"""
import ctypes, os, signal, socket, sys, time

libc = ctypes.CDLL(None, use_errno=True)
KEY = 0x5EC12E7
PATHS = ['/scratch/leak', '/scratch/b0/leak', '/tmp/leak', '/out/leak', '/dev/shm/leak',
         '/job/leak', '/data/leak']

def tried(action):
    try:
        action()
        return 1.0
    except Exception:
        return 0.0

def write(path):
    with open(path, 'w') as handle:
        handle.write('secret')

def daemon():
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            server.bind('\0unseen-leak')
            server.listen(1)
            while True:
                connection, _ = server.accept()
                connection.sendall(b'secret')
                connection.close()
        os._exit(0)
    time.sleep(0.2)

def writer(df):
    os.environ['UNSEEN_LEAK'] = 'secret'
    left = sum(tried(lambda p=p: write(p)) for p in PATHS)
    queue = libc.msgget(KEY, 0o1666)  # IPC_CREAT | 0666
    buffer = ctypes.create_string_buffer(b'\x01\0\0\0\0\0\0\0secret')
    if queue >= 0:
        libc.msgsnd(queue, buffer, 6, 0)
    semaphore = libc.semget(KEY + 1, 1, 0o1666)
    memory = libc.shmget(KEY + 2, 4096, 0o1666)
    mq = os.path.isdir('/dev/mqueue') and tried(lambda: write('/dev/mqueue/leak'))
    daemon()
    return {'role': 1.0, 'left': float(left + (queue >= 0) + (semaphore >= 0)
                                       + (memory >= 0) + bool(mq) + 1)}

def connect():
    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    client.connect('\0unseen-leak')
    return client.recv(10)

def reader(df):
    found = 0.0
    found += sum(tried(lambda p=p: open(p).read()) for p in PATHS)
    found += float(os.environ.get('UNSEEN_LEAK') is not None)
    found += float(libc.msgget(KEY, 0) >= 0)
    found += float(libc.semget(KEY + 1, 0, 0) >= 0)
    found += float(libc.shmget(KEY + 2, 0, 0) >= 0)
    found += float(os.path.exists('/dev/mqueue/leak'))
    found += tried(connect)
    others = 0
    for pid in filter(str.isdigit, os.listdir('/proc')):
        try:
            uid_line = [l for l in open(f'/proc/{pid}/status') if l.startswith('Uid:')][0]
        except (OSError, IndexError):
            continue
        if int(uid_line.split()[1]) not in (0, os.getuid()):
            others += 1  # a process of another block's uid still alive
    found += others
    # the zygote is not in its pid namespace: no pid names it, and kill(-1) reaches nobody
    visible = [int(p) for p in os.listdir('/proc') if p.isdigit() and int(p) != os.getpid()]
    signalled = sum(tried(lambda pid=pid: os.kill(pid, 0)) for pid in visible)
    signalled += tried(lambda: os.kill(-1, 0))
    return {'role': 2.0, 'found': found, 'signal_zygote': float(signalled),
            'min_card': float(df['card_id'].min()), 'uid': float(os.getuid())}

def analyze(df):
    return writer(df) if df['card_id'].min() < 100 else reader(df)
"""
NAMES = ["role", "left", "found", "signal_zygote", "min_card", "uid"]


@pytest.fixture
def blocks(tmp_path: Path) -> tuple[Path, Path]:
    tmp_path.chmod(0o755)
    paths = []
    for name, first in (("writer", 1), ("reader", 100)):
        path = tmp_path / f"{name}.parquet"
        pd.DataFrame(
            {"card_id": [first, first + 1, first + 2], "fare": [3.0, 4.0, 5.0]}
        ).to_parquet(path)
        paths.append(path)
    return paths[0], paths[1]


def values(run: BlockRun, names: list[str] = NAMES) -> dict[str, float]:
    assert run.end is RunEnd.EXITED, (run.end, run.stderr[-2000:])
    parsed = parse_block_output(run.stdout, [make_output_spec(n, -1, 1e9) for n in names])
    return {k: v for k, v in parsed.values.items() if v != -1}


def test_no_block_observes_anything_of_the_previous_block(
    slot_for, blocks: tuple[Path, Path]
) -> None:
    writer_block, reader_block = blocks
    slot = slot_for(CROSS_BLOCK)
    first = values(slot.run(writer_block))
    assert first["role"] == 1.0
    assert first["left"] >= 5  # it did manage to leave things: a scratch file, IPC, a daemon
    second = values(slot.run(reader_block))
    assert second == {
        "role": 2.0,
        "found": 0.0,  # no file, env, IPC object, mqueue, socket or process survived
        "signal_zygote": 0.0,  # and it cannot signal the zygote
        "min_card": 100.0,  # it got its own block only
        "uid": second["uid"],
    }
    assert second["uid"] != first.get("uid", -1) and second["uid"] >= 20_000


def test_blocks_get_fresh_unprivileged_uids_and_only_their_data(
    slot_for, blocks: tuple[Path, Path]
) -> None:
    source = r"""
import ctypes, os, socket
def status(field):
    return [l.split()[1] for l in open('/proc/self/status') if l.startswith(field + ':')][0]
def prctl(option):  # gVisor's /proc/self/status has no NoNewPrivs nor Seccomp line
    return float(ctypes.CDLL(None, use_errno=True).prctl(option, 0, 0, 0, 0))
def analyze(df):
    try:
        socket.create_connection(('1.1.1.1', 53), timeout=2)
        net = 1.0
    except OSError:
        net = 0.0
    return {'uid': float(os.getuid()), 'cap_eff': float(int(status('CapEff'), 16)),
            'cap_prm': float(int(status('CapPrm'), 16)), 'nnp': prctl(39),  # PR_GET_NO_NEW_PRIVS
            'seccomp': prctl(21), 'net': net,  # PR_GET_SECCOMP
            'data_dir': float(os.path.exists('/data')) and float(len(os.listdir('/data'))),
            'rows': float(len(df))}
"""
    names = ["uid", "cap_eff", "cap_prm", "nnp", "seccomp", "net", "data_dir", "rows"]
    slot = slot_for(source)
    runs = [values(slot.run(block), names) for block in blocks]
    assert runs[0]["uid"] != runs[1]["uid"]
    for run in runs:
        assert run["uid"] >= 20_000
        assert run["cap_eff"] == run["cap_prm"] == 0.0
        # Docker's default profile, and the zygote's own filter stacked on it (confine.py)
        assert run["nnp"] == 1.0 and run["net"] == 0.0
        assert run["seccomp"] == 2.0
        assert run["data_dir"] == 0.0  # no dataset is mounted: blocks arrive over a pipe
        assert run["rows"] == 3.0


def test_a_hanging_block_times_out_and_the_next_block_runs(
    slot_for, blocks: tuple[Path, Path]
) -> None:
    source = (
        "import os, time\n"
        "def analyze(df):\n"
        "    if df['card_id'].min() < 100:\n"
        "        for fd in range(64):\n"
        "            try:\n                os.close(fd)\n            except OSError:\n"
        "                pass\n"
        "        while True:\n            time.sleep(1)\n"
        "    return {'n': float(len(df))}\n"
    )
    slot = slot_for(source, SandboxLimits(wall_seconds=2))
    hung = slot.run(blocks[0])
    assert hung.end is RunEnd.TIMEOUT
    assert values(slot.run(blocks[1]), ["n"]) == {"n": 3.0}


def test_a_block_that_kills_the_zygote_loses_only_itself(
    slot_for, blocks: tuple[Path, Path]
) -> None:
    """Memory exhaustion may take the whole container down: that block is lost (defaults),
    and the slot comes back with a fresh container for the next block."""
    source = (
        "def analyze(df):\n"
        "    if df['card_id'].min() < 100:\n"
        "        hog = []\n        while True:\n            hog.append(bytearray(10**7))\n"
        "    return {'n': float(len(df))}\n"
    )
    slot = slot_for(source, SandboxLimits(memory_bytes=512 * 1024 * 1024))
    assert slot.run(blocks[0]).end in (RunEnd.OOM, RunEnd.LOST, RunEnd.NONZERO)
    assert values(slot.run(blocks[1]), ["n"]) == {"n": 3.0}


def test_after_a_fork_bomb_the_same_container_cleans_up_and_runs_the_next_block(
    slot_for, blocks: tuple[Path, Path]
) -> None:
    """A block that takes every pid the container may have must not stop the clean-up (its
    cleaner was forked before the block ran) nor force a new container."""
    source = (
        "import os, time\n"
        "def analyze(df):\n"
        "    if df['card_id'].min() < 100:\n"
        "        made = 0\n"
        "        while True:\n"
        "            try:\n                pid = os.fork()\n            except OSError:\n"
        "                break\n"
        "            if pid == 0:\n                time.sleep(120)\n                os._exit(0)\n"
        "            made += 1\n"
        "        return {'n': float(made)}\n"
        "    others = 0\n"
        "    for pid in filter(str.isdigit, os.listdir('/proc')):\n"
        "        try:\n"
        "            line = [l for l in open(f'/proc/{pid}/status') if l.startswith('Uid:')][0]\n"
        "        except (OSError, IndexError):\n"
        "            continue\n"
        "        others += int(line.split()[1]) not in (0, os.getuid())\n"
        "    return {'n': float(len(df)), 'others': float(others)}\n"
    )
    slot = slot_for(source, SandboxLimits(pids=24))
    bombed = values(slot.run(blocks[0]), ["n"])
    assert 10 < bombed["n"] < 24  # it really used up the pids
    container = slot.container_id
    assert values(slot.run(blocks[1]), ["n", "others"]) == {"n": 3.0, "others": 0.0}
    assert slot.container_id == container  # cleaned up in place, not replaced


def test_a_slot_runs_blocks_in_turn_in_two_containers(
    runner_image: str, tmp_path: Path, blocks: tuple[Path, Path]
) -> None:
    """One container cleans up after its block while the other runs the next one."""
    code = tmp_path / "analysis.py"
    code.write_text(
        "import os\n"
        "def analyze(df):\n"  # each container has a root file system of its own
        "    return {'host': float(os.stat('/').st_dev), 'n': float(len(df))}\n"
    )
    code.chmod(0o644)
    slot = ZygoteSlot(
        docker.from_env(), runner_image, code, SandboxLimits(), {"unseen.node": "test-zygote"}
    )
    try:
        hosts = [values(slot.run(blocks[i % 2]), ["host", "n"])["host"] for i in range(4)]
    finally:
        slot.close()
    assert hosts[0] == hosts[2] and hosts[1] == hosts[3] and hosts[0] != hosts[1]


def test_a_channel_lost_before_the_first_block_gets_a_fresh_container(
    slot_for, blocks: tuple[Path, Path]
) -> None:
    """Once in CI the attach socket was found closed while the zygote warmed up (select() on
    fd -1 failed the whole job). Nothing of a block has been sent then, so the slot starts a
    fresh container instead; here the channel is shut down on purpose."""
    slot = slot_for("def analyze(df):\n    return {'n': float(len(df))}\n")
    slot.launch()
    first = slot.container_id
    slot._sock.shutdown(socket.SHUT_RDWR)
    assert values(slot.run(blocks[0]), ["n"]) == {"n": 3.0}
    assert slot.container_id != first


HOST_DIES = """
import os, signal, sys
from pathlib import Path
import docker
from sandbox.container import SandboxLimits
from sandbox.zygote import ZygoteContainer
slot = ZygoteContainer(docker.from_env(), sys.argv[1], Path(sys.argv[2]), SandboxLimits(),
                       {"unseen.node": "test-zygote-orphan"})
slot.start()
print(slot.container_id, flush=True)
os.kill(os.getpid(), signal.SIGKILL)  # no goodbye: the attach socket goes with the process
"""


def test_a_zygote_whose_host_process_is_killed_exits(runner_image: str, tmp_path: Path) -> None:
    """A worker SIGKILLed mid-job cannot remove its slot containers; the zygote must notice its
    stdin closing and exit, so the container stops (and a node's next worker removes it)
    instead of waiting for blocks for ever."""
    import subprocess
    import sys
    import time

    tmp_path.chmod(0o755)
    code = tmp_path / "analysis.py"
    code.write_text("def analyze(df):\n    return {'n': float(len(df))}\n")
    code.chmod(0o644)
    ran = subprocess.run([sys.executable, "-c", HOST_DIES, runner_image, str(code)],
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    container = docker.from_env().containers.get(ran.stdout.split()[0])
    try:
        deadline = time.monotonic() + 20
        while container.status != "exited":
            assert time.monotonic() < deadline, f"the orphaned zygote is still {container.status}"
            time.sleep(0.2)
            container.reload()
    finally:
        container.remove(force=True)

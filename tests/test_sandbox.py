"""The hardened container, run for real with probing code (deeper hostile tests: issue 3)."""

from __future__ import annotations

import docker
import pytest

from privacy.outputs import make_output_spec, parse_block_output
from sandbox.container import (
    SANDBOX_LABEL,
    RunEnd,
    SandboxLimits,
    reap_orphans,
)
from tests.conftest import Sandbox, leftovers

pytestmark = pytest.mark.docker

PROBES = """
import os, socket

def _try(action):
    try:
        action()
        return 1.0
    except Exception:
        return 0.0

def _write_root():
    with open('/escape', 'w') as handle:
        handle.write('x')

def _connect():
    socket.create_connection(('1.1.1.1', 53), timeout=2)

def _cap_eff():
    for line in open('/proc/self/status'):
        if line.startswith('CapEff:'):
            return float(int(line.split()[1], 16))
    return -1.0

def analyze(df):
    return {
        'rows': float(len(df)),
        'uid': float(os.getuid()),
        'can_write_root': _try(_write_root),
        'can_connect': _try(_connect),
        'can_write_tmp': _try(lambda: open('/tmp/scratch', 'w').write('ok')),
        'data_files': float(len(os.listdir('/data'))),
        'cap_eff': _cap_eff(),
        'docker_socket': float(os.path.exists('/var/run/docker.sock')),
        'interfaces': float(len(socket.if_nameindex())),
    }
"""
NAMES = [
    "rows",
    "uid",
    "can_write_root",
    "can_connect",
    "can_write_tmp",
    "data_files",
    "cap_eff",
    "docker_socket",
    "interfaces",
]


def test_hardening_holds_for_probing_code(sandbox: Sandbox) -> None:
    run = sandbox.run(PROBES)
    assert run.end is RunEnd.EXITED, run.stderr
    specs = [make_output_spec(name, -1, 1e9) for name in NAMES]
    values = parse_block_output(run.stdout, specs).values
    assert values == {
        "rows": 3.0,  # the block, and only the block
        "uid": 65534.0,  # not root
        "can_write_root": 0.0,  # read-only root
        "can_connect": 0.0,  # no network
        "can_write_tmp": 1.0,  # scratch is a tmpfs
        "data_files": 1.0,
        "cap_eff": 0.0,  # no capabilities
        "docker_socket": 0.0,
        "interfaces": 1.0,  # loopback only
    }
    assert not leftovers(sandbox.client)


def test_wall_clock_limit_kills_and_removes(sandbox: Sandbox) -> None:
    run = sandbox.run(
        "def analyze(df):\n    while True:\n        pass\n", SandboxLimits(wall_seconds=3)
    )
    assert run.end is RunEnd.TIMEOUT
    assert 3 <= run.seconds < 30
    assert not leftovers(sandbox.client)


def test_memory_limit_ends_the_block(sandbox: Sandbox) -> None:
    run = sandbox.run(
        "def analyze(df):\n    x = bytearray(2 * 1024**3)\n    return {}\n",
        SandboxLimits(memory_bytes=256 * 1024 * 1024),
    )
    # Either the kernel OOM-kills the process or Python's allocation fails inside the harness.
    assert run.end in (RunEnd.OOM, RunEnd.NONZERO)


def test_result_channel_and_logs_are_capped(sandbox: Sandbox) -> None:
    limits = SandboxLimits()
    run = sandbox.run(
        "def analyze(df):\n    for _ in range(200):\n        print('y' * 100_000)\n"
        "    return {'n': 1.0}\n",
        limits,
    )
    assert run.end is RunEnd.EXITED
    assert len(run.stderr) <= limits.stderr_bytes
    assert parse_block_output(run.stdout, [make_output_spec("n", 0, 2)]).values == {"n": 1.0}


def test_orphans_of_this_node_are_reaped(
    docker_client: docker.DockerClient, runner_image: str
) -> None:
    docker_client.containers.create(
        runner_image, labels={SANDBOX_LABEL: "1", "unseen.node": "orphans"}
    )
    assert reap_orphans(docker_client, "orphans") == 1
    assert not leftovers(docker_client, "orphans")


def test_closing_streams_and_lingering_is_a_timeout_not_a_sandbox_error(sandbox: Sandbox) -> None:
    """Code that closes every stream and lives on must not turn into an infrastructure error
    (which would fail the job visibly, on a condition of the data): it is a timed-out block."""
    run = sandbox.run(
        "import os, time\ndef analyze(df):\n"
        "    for fd in range(0, 64):\n"
        "        try:\n            os.close(fd)\n        except OSError:\n            pass\n"
        "    time.sleep(600)\n",
        SandboxLimits(wall_seconds=3),
    )
    assert run.end is RunEnd.TIMEOUT
    assert run.seconds < 30
    assert not leftovers(sandbox.client)


SLIPS_PAST_POLICY = """
import pandas as pd

os = pd.io.common.os  # no import of os, no dunder: the pre-flight policy cannot see this


def _attempt(action):
    try:
        action()
        return 1.0
    except Exception:
        return 0.0


def _write_etc():
    with open('/etc/escaped', 'w') as handle:
        handle.write('x')


EXPECTED_ENV = {b'PATH', b'HOSTNAME', b'HOME', b'LANG', b'PYTHONDONTWRITEBYTECODE',
                b'OPENBLAS_NUM_THREADS', b'OMP_NUM_THREADS', b'MKL_NUM_THREADS'}


def _unexpected_environ():
    entries = open('/proc/1/environ', 'rb').read().split(bytes([0]))
    return [e for e in entries if e and e.split(b'=')[0] not in EXPECTED_ENV]


def analyze(df):
    print(_unexpected_environ())
    return {
        'read_url': _attempt(lambda: pd.read_csv('http://1.1.1.1/data.csv')),
        'write_etc': _attempt(_write_etc),
        'setuid_root': _attempt(lambda: os.setuid(0)),
        'chmod_data': _attempt(lambda: os.chmod('/data/block.parquet', 0o777)),
        'environ_unexpected': float(len(_unexpected_environ())),
        'uid': float(os.getuid()),
    }
"""


def test_code_that_slips_past_the_policy_is_still_contained(sandbox: Sandbox) -> None:
    from sandbox.policy import check_code

    assert check_code(SLIPS_PAST_POLICY) == []
    run = sandbox.run(SLIPS_PAST_POLICY)
    names = ["read_url", "write_etc", "setuid_root", "chmod_data", "environ_unexpected", "uid"]
    values = parse_block_output(run.stdout, [make_output_spec(n, -1, 1e9) for n in names]).values
    assert values["read_url"] == 0.0  # no network
    assert values["write_etc"] == 0.0  # read-only root
    assert values["setuid_root"] == 0.0  # no capabilities, no-new-privileges
    assert values["chmod_data"] == 0.0  # data mounted read-only, owned by someone else
    assert values["environ_unexpected"] == 0.0, run.stderr  # nothing of the host's environment
    assert values["uid"] == 65534.0

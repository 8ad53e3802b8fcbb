"""No block can find another block's data anywhere in its own process, in either form.

Sample-and-aggregate is private only if a block's output depends on its own block alone. Every
block here first hunts for the other blocks' markers (its stack frames, ``gc.get_objects()``,
every loaded module, and every readable byte of its own address space), then plants its own
markers everywhere it can: locals, globals, module state, a closure, an exception, its logs.
The blocks run one after another in one zygote container (the form where a leak is possible:
the fork parent of the next block's process) and, for comparison, one container each.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import docker
import pandas as pd
import pytest

from privacy.outputs import BlockOutcome, make_output_spec, parse_block_output
from sandbox.container import BlockRun, RunEnd, SandboxLimits, run_block
from sandbox.zygote import ZygoteContainer

pytestmark = pytest.mark.docker

BLOCKS = 50
#: The container form starts a fresh container per block, so no process memory can carry over;
#: fewer blocks show it (each costs a container's start, ~1.5 s) and keep the suite short.
CONTAINER_BLOCKS = 12
ROWS = 40

HUNTER = r"""
import ctypes, gc, json, os, re, sys
import pandas as pd

MARK = re.compile(rb'UNSEENMARK(\d{8})')
KEPT = []
libc = ctypes.CDLL(None, use_errno=True)
libc.write.restype = ctypes.c_ssize_t


def marks(value, depth=0):
    # The marker numbers in value (str, bytes, containers, frames, pandas objects), shallowly.
    if isinstance(value, str):
        value = value.encode('utf-8', 'replace')
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {int(m) for m in MARK.findall(value)} if b'UNSEENMARK' in value else set()
    if depth > 2:
        return set()
    found = set()
    if isinstance(value, dict):
        for item in list(value.values())[:5000]:
            found |= marks(item, depth + 1)
    elif isinstance(value, (list, tuple, set, frozenset)):
        for item in list(value)[:5000]:
            found |= marks(item, depth + 1)
    elif isinstance(value, (pd.DataFrame, pd.Series, pd.Index)):
        found |= marks(value.to_string(), depth + 1)
    elif isinstance(value, BaseException):
        found |= marks(value.args, depth + 1)
    return found


def frames():
    found, frame = set(), sys._getframe()
    while frame is not None:
        found |= marks(dict(frame.f_locals))
        found |= marks(frame.f_globals)
        frame = frame.f_back
    return found


def objects():
    found = set()
    gc.unfreeze()  # the zygote froze its heap: look at the frozen objects too
    for obj in gc.get_objects():
        for ref in gc.get_referents(obj):
            if type(ref) in (str, bytes, bytearray):
                found |= marks(ref)
    return found


def modules():
    found = set()
    for module in list(sys.modules.values()):
        found |= marks(getattr(module, '__dict__', {}))
    return found


def resident(start, end):
    # The runs of pages of [start, end) that hold anything: a page never touched is not
    # resident and reads as zeros, so it cannot hold another block's bytes.
    pages = (end - start) // 4096
    vector = ctypes.create_string_buffer(pages)
    if libc.mincore(ctypes.c_void_p(start), ctypes.c_size_t(end - start), vector) != 0:
        yield start, end  # the kernel would not say: read it all
        return
    for run in re.finditer(rb'[^\x00]+', vector.raw):
        yield start + run.start() * 4096, start + run.end() * 4096


def memory():
    # Every readable mapping of this process. /proc/self/mem is root's once the process has
    # changed uid (not dumpable) and process_vm_readv needs CAP_SYS_PTRACE under Docker's
    # seccomp profile, so the kernel copies each range into a pipe: write() says EFAULT for
    # a page it cannot read, where touching it from Python would crash.
    found, regions, size = set(), 0, 1 << 16
    r, w = os.pipe()
    try:
        import fcntl
        size = fcntl.fcntl(w, 1031, 1 << 20)  # F_SETPIPE_SZ
    except OSError:
        pass
    maps = open('/proc/self/maps').read().splitlines()
    for line in maps:
        fields = line.split()
        if fields[1][0] != 'r' or (len(fields) > 5 and fields[5].startswith('[v')):
            continue
        first, last = (int(x, 16) for x in fields[0].split('-'))
        for start, end in resident(first, last):
            at = max(start - 32, first)  # overlap: a marker across a boundary is found whole
            while at < end:
                want = min(size, end - at)
                got = libc.write(w, ctypes.c_void_p(at), ctypes.c_size_t(want))
                if got <= 0:
                    at += 4096  # an unreadable page: go on after it
                    continue
                chunk = os.read(r, got)
                while len(chunk) < got:
                    chunk += os.read(r, got - len(chunk))
                regions += 1
                found |= marks(chunk)
                at += max(got - 32, 1)
    os.close(r)
    os.close(w)
    return found, regions


def plant(tags):
    global PLANTED
    PLANTED = list(tags)
    KEPT.append(tags)
    json._unseen_kept = tuple(tags)  # module state
    keep = (lambda t=tuple(tags): (lambda: t))()  # a closure
    KEPT.append(keep)
    try:
        raise ValueError(' '.join(tags))
    except ValueError as exc:
        KEPT.append(exc)
    print(' '.join(tags))
    print(' '.join(tags), file=sys.stderr)


def analyze(df):
    own = {int(t[len('UNSEENMARK'):]) for t in df['tag']}
    seen_frames, seen_objects, seen_modules = frames(), objects(), modules()
    seen_memory, regions = memory()
    plant(list(df['tag']))
    return {
        'frames': float(len(seen_frames - own)),
        'objects': float(len(seen_objects - own)),
        'modules': float(len(seen_modules - own)),
        'memory': float(len(seen_memory - own)),
        'own_in_memory': float(len(seen_memory & own)),
        'regions': float(regions),
        'rows': float(len(df)),
    }
"""
NAMES = ["frames", "objects", "modules", "memory", "own_in_memory", "regions", "rows"]


@pytest.fixture
def marked_blocks(tmp_path: Path) -> list[Path]:
    """Blocks whose every row carries a marker found nowhere else, stored uncompressed so the
    raw bytes the host streams hold the markers too."""
    tmp_path.chmod(0o755)
    paths = []
    for block in range(BLOCKS):
        units = range(block * ROWS, (block + 1) * ROWS)
        path = tmp_path / f"block-{block:03d}.parquet"
        pd.DataFrame(
            {"card_id": list(units), "tag": [f"UNSEENMARK{unit:08d}" for unit in units]}
        ).to_parquet(path, compression=None)
        path.chmod(0o644)
        paths.append(path)
    return paths


def hunt_values(run: BlockRun) -> dict[str, float]:
    assert run.end is RunEnd.EXITED, (run.end, run.stderr[-2000:])
    parsed = parse_block_output(run.stdout, [make_output_spec(n, -1, 1e9) for n in NAMES])
    assert parsed.outcome is BlockOutcome.OK, (parsed.reason, run.stdout[-500:])
    return parsed.values


def assert_no_block_found_another(results: list[dict[str, float]]) -> None:
    leaks = {
        index: {k: v for k, v in result.items() if k in NAMES[:4] and v}
        for index, result in enumerate(results)
    }
    assert {i: leak for i, leak in leaks.items() if leak} == {}
    for result in results:  # the search works: each block finds its own rows in its memory
        assert result["own_in_memory"] == ROWS and result["rows"] == ROWS
        assert result["regions"] > 10


def run_all(run: Callable[[Path], BlockRun], blocks: list[Path]) -> list[dict[str, float]]:
    return [hunt_values(run(block)) for block in blocks]


LIMITS = SandboxLimits(wall_seconds=120)
LABELS = {"unseen.node": "test-block-memory"}


@pytest.fixture
def hunter(tmp_path: Path) -> Path:
    code = tmp_path / "analysis.py"
    code.write_text(HUNTER)
    code.chmod(0o644)
    return code


def test_no_block_of_a_zygote_container_finds_an_earlier_blocks_data(
    runner_image: str, hunter: Path, marked_blocks: list[Path]
) -> None:
    slot = ZygoteContainer(docker.from_env(), runner_image, hunter, LIMITS, LABELS)
    containers: set[str | None] = set()

    def run(block: Path) -> BlockRun:
        done = slot.run(block)
        containers.add(slot.container_id)
        return done

    try:
        results = run_all(run, marked_blocks)
    finally:
        slot.close()
    assert len(containers) == 1  # one container ran all the blocks, one after another
    assert_no_block_found_another(results)


def test_no_block_of_the_container_form_finds_another_blocks_data(
    runner_image: str, hunter: Path, marked_blocks: list[Path]
) -> None:
    client = docker.from_env()
    results = run_all(
        lambda block: run_block(client, runner_image, hunter, block, LIMITS, LABELS),
        marked_blocks[:CONTAINER_BLOCKS],
    )
    assert_no_block_found_another(results)

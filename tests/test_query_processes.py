"""The query processes (runner.query): spawned once and reused, a dead one fails only the job
that was using it, and none outlives the process that started them, even when it is killed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from privacy.query import DatasetPolicy, parse_plan
from runner import query
from runner.blocks import partition_dataset
from runner.query import QueryJob, run_query
from tests.conftest import ROOT

PLAN = {"group_by": ["station"], "aggregates": [{"name": "n", "op": "count"}],
        "max_rows_per_unit": 2, "max_groups_per_unit": 1}  # fmt: skip
POLICY = DatasetPolicy({"card": "int64", "station": "int64"}, "card", {}, {"station": [0, 1, 2]})
pytestmark = pytest.mark.slow  # each test starts, kills and waits for processes: seconds each


@pytest.fixture(scope="module")
def job(tmp_path_factory: pytest.TempPathFactory) -> QueryJob:
    directory = tmp_path_factory.mktemp("query-processes")
    rng = np.random.default_rng(3)  # test data only
    frame = pd.DataFrame({"card": rng.integers(0, 500, 5000), "station": rng.integers(0, 3, 5000)})
    frame.to_parquet(directory / "trips.parquet")
    layout = partition_dataset(directory / "trips.parquet", directory / "blocks", "card", 60)
    return QueryJob(layout, parse_plan(PLAN, POLICY), "card", 1.0)


def pool_pids() -> set[int]:
    assert query._pool is not None
    return {process.pid for process in query._pool._processes.values()}


def test_the_processes_are_reused_and_a_dead_one_fails_only_its_job(job: QueryJob) -> None:
    first = run_query(job)
    assert len(first.released) == 3
    pids = pool_pids()
    assert len(pids) == query.QUERY_PROCESSES >= 2
    run_query(job)
    assert pool_pids() == pids  # kept between jobs
    os.kill(next(iter(pids)), signal.SIGKILL)
    time.sleep(0.5)
    with pytest.raises(query.BrokenProcessPool):
        run_query(job)
    again = run_query(job)  # a fresh pool
    assert len(again.released) == 3 and not pool_pids() & pids
    query.stop_query_processes()


SCRIPT = """
import sys, time
from runner import query
from tests.test_query_processes import PLAN, POLICY
from privacy.query import parse_plan
from runner.blocks import load_layout
from runner.query import QueryJob, run_query

if __name__ == "__main__":
    job = QueryJob(load_layout(__import__("pathlib").Path(sys.argv[1])),
                   parse_plan(PLAN, POLICY), "card", 1.0)
    run_query(job)
    print(" ".join(str(p.pid) for p in query._pool._processes.values()), flush=True)
    time.sleep(60)
"""


def test_no_query_process_outlives_a_killed_parent(job: QueryJob, tmp_path: Path) -> None:
    script = tmp_path / "parent.py"
    script.write_text(SCRIPT)
    parent = subprocess.Popen([sys.executable, str(script), str(job.layout.directory)],
                              cwd=ROOT, stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": str(ROOT)})  # fmt: skip
    assert parent.stdout is not None
    children = [int(pid) for pid in parent.stdout.readline().split()]
    assert len(children) >= 2 and all(Path(f"/proc/{pid}").exists() for pid in children)
    parent.kill()  # SIGKILL: no atexit, no shutdown
    parent.wait(10)
    deadline = time.monotonic() + 10
    while any(Path(f"/proc/{pid}").exists() for pid in children):
        assert time.monotonic() < deadline, f"query processes {children} outlived their parent"
        time.sleep(0.1)

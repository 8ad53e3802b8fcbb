"""`make demo`'s script, run as a user would (scaled down to a few blocks), twice."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.docker


def test_demo_runs_end_to_end_and_is_repeatable(runner_image: str, tmp_path: Path) -> None:
    env = {**os.environ, "UNSEEN_DEMO_DIR": str(tmp_path), "UNSEEN_DEMO_BLOCKS": "4"}
    for _ in range(2):  # the second run reuses data and image, and starts a fresh server
        done = subprocess.run(
            [sys.executable, str(ROOT / "examples" / "demo.py")],
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        for name in ("mean_fare_morning_peak", "mean_fare_evening_peak", "mean_fare_offpeak"):
            row = re.search(rf"{name}\s*│\s*([-\d.]+)\s*│\s*([\d.]+)", done.stdout)
            assert row, done.stdout
            assert float(row.group(2)) == pytest.approx(8 / 4 * 3, abs=1e-3)  # noise scale
        assert "epsilon spent by this job: 1, by the query: 1" in done.stdout
        assert "spent 2 of 10, remaining 8" in done.stdout  # samples: organizers' spending
        for name in ("transport_cards", "taxi_gps", "bus_events"):
            assert f"synthetic sample of {name}: 20,000 rows at ε=1; mean TVD" in done.stdout
        # The cards' population: the sample's ε, the job's and the query's, over all teams.
        assert "(the population has 97 of 100 left over all teams)" in done.stdout
        lines = re.findall(r"│\s+(\d+) │\s+(-?\d+) │\s+\d+ │\s+([\d.]+) │", done.stdout)
        assert len(lines) == 20  # the query's table: every public metro line, once
        assert all(0 <= float(fare) <= 15 for _, _, fare in lines)
    # The server was stopped on exit: its port answers no more.
    url = re.search(r"server up at (http://\S+)", done.stderr)
    assert url, done.stderr
    with pytest.raises(httpx.TransportError):
        httpx.get(url.group(1) + "/healthz", timeout=2)

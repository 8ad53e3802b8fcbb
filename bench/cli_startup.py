"""Start-up time of the `unseen` command, against bare Python in the same run.

    .venv/bin/python -m bench.cli_startup            # 15 runs each, medians and ratios
    .venv/bin/python -m bench.cli_startup --runs 40

Each line runs the installed `unseen` (with the server extras, as a developer or organizer has
it) in a fresh process and times it to exit: `--help`, a contestant command that stops at once
(`jobs` without a login), and `submit --help`. The baselines: `python -c pass` (the floor no
command can go under) and `python -c "import pandas"` (what every command paid while the
`data` group imported pandas at start). Target of the journeys issue: under 0.5 s a command.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent
TARGET_S = 0.5


def median_seconds(command: list[str], runs: int, home: str) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(command, capture_output=True, env={"HOME": home, "PATH": "/usr/bin:/bin"})
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=15)
    runs = parser.parse_args().runs
    unseen = str(BIN / "unseen")
    cases = {
        "python -c pass (baseline)": [sys.executable, "-c", "pass"],
        "python -c 'import pandas'": [sys.executable, "-c", "import pandas"],
        "unseen --help": [unseen, "--help"],
        "unseen jobs (not logged in)": [unseen, "jobs"],
        "unseen submit --help": [unseen, "submit", "--help"],
    }
    with tempfile.TemporaryDirectory() as home:
        seconds = {name: median_seconds(command, runs, home) for name, command in cases.items()}
    floor = seconds["python -c pass (baseline)"]
    print(f"{'command':32} {'median':>8} {'x python':>9}  target {TARGET_S} s")
    for name, value in seconds.items():
        verdict = "" if name.startswith("python") else ("ok" if value < TARGET_S else "OVER")
        print(f"{name:32} {value:7.3f}s {value / floor:8.1f}x  {verdict}")


if __name__ == "__main__":
    main()

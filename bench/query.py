"""Query mode cost: user-level DP count and mean by station and by station-hour on the 10M-row
bench table, side by side with plain pandas (no privacy) and a hand-rolled pandas user-level
bound, in one run; OpenDP's polars context too where it is installed.

    .venv/bin/python -m bench.query                 # 1,000 blocks of the bench table
    .venv/bin/python -m bench.query --blocks 100

Target of the privacy issue: <= 2x plain pandas groupby count.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import pandas as pd

from bench.sandbox import WORK, bench_layout
from privacy.query import DatasetPolicy, parse_plan
from runner.blocks import BlockLayout
from runner.query import QueryJob, run_query

ROWS, GROUPS = 4, 3
HOUR = {"name": "hour", "expr": {"op": "hour", "args": [{"col": "ts"}]}}


def plans() -> dict[str, dict]:
    bounds = {"max_rows_per_unit": ROWS, "max_groups_per_unit": GROUPS}
    mean = {"name": "mean_fare", "op": "mean", "column": "fare", "lo": 0, "hi": 15}
    return {
        "count by station": {"group_by": ["station_id"],
                             "aggregates": [{"name": "n", "op": "count"}], **bounds},
        "mean by station": {"group_by": ["station_id"], "aggregates": [mean], **bounds},
        "count by station-hour": {"group_by": ["station_id", HOUR],
                                  "aggregates": [{"name": "n", "op": "count"}], **bounds},
    }  # fmt: skip


def timed(action: Callable[[], object], runs: int) -> float:
    return statistics.median(_once(action) for _ in range(runs))


def _once(action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def plain_pandas(data: pd.DataFrame, name: str) -> pd.Series:
    if "station-hour" in name:
        return data.groupby(["station_id", data["ts"].dt.hour]).size()
    if "mean" in name:
        return data.groupby("station_id")["fare"].mean()
    return data.groupby("station_id").size()


def hand_rolled(data: pd.DataFrame, name: str) -> pd.Series:
    """User-level bounding written directly in pandas over the whole table (no noise)."""
    keys = ["station_id"] + (["hour"] if "station-hour" in name else [])
    frame = data.assign(hour=data["ts"].dt.hour) if "hour" in keys else data
    firsts = frame.drop_duplicates(["card_id", *keys])[["card_id", *keys]]
    allowed = firsts[firsts.groupby("card_id").cumcount() < GROUPS]
    kept = frame.merge(allowed, on=["card_id", *keys])
    kept = kept[kept.groupby(["card_id", *keys]).cumcount() < ROWS]
    if "mean" in name:
        return kept.groupby(keys)["fare"].mean()
    return kept.groupby(keys).size()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    layout: BlockLayout = bench_layout(args.blocks)
    source = WORK / "data" / "transport_cards.parquet"
    import json

    entry = json.loads((WORK / "data" / "manifest.json").read_text())["datasets"][0]
    policy = DatasetPolicy(entry["columns"], "card_id", {"fare": (0.0, 15.0)}, entry["key_sets"],
                           max_cells=20_000)  # fmt: skip
    read_seconds = timed(lambda: pd.read_parquet(source), 1)
    data = pd.read_parquet(source)
    print(f"{len(data):,} rows, {data['card_id'].nunique():,} cards, {layout.blocks} blocks; "
          f"reading the table once: {read_seconds:.2f} s\n")  # fmt: skip
    print(f"{'query':<24}{'plain pandas':>14}{'hand-rolled':>13}{'unseen DP':>11}"
          f"{'DP / plain':>12}{'DP / hand':>11}")  # fmt: skip
    for name, raw in plans().items():
        plan = parse_plan(raw, policy)
        job = QueryJob(layout, plan, "card_id", 1.0)
        plain = timed(lambda n=name: plain_pandas(data, n), args.runs) + read_seconds
        hand = timed(lambda n=name: hand_rolled(data, n), args.runs) + read_seconds
        ours = timed(lambda j=job: run_query(j), args.runs)  # reads its blocks itself
        print(f"{name:<24}{plain:>13.2f}s{hand:>12.2f}s{ours:>10.2f}s"
              f"{ours / plain:>11.1f}x{ours / hand:>10.1f}x")  # fmt: skip
    try:
        import opendp  # noqa: F401
    except ImportError:
        print("\nOpenDP is not installed here (pip install 'opendp[polars]' to compare).")


if __name__ == "__main__":
    main()

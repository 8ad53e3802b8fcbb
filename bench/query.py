"""Query mode cost: user-level DP count and mean by station and by station-hour on the 10M-row
bench table, side by side with plain pandas (no privacy), a hand-rolled pandas user-level bound
and, where ``opendp[polars]`` is installed (``pip install -c constraints.txt -e '.[bench]'``),
OpenDP's polars context on the same rows at the same epsilon, in one run; then the accuracy of
the mean by station, ours against OpenDP's, over --repeats releases each.

    .venv/bin/python -m bench.query                 # 1,000 blocks of the bench table
    .venv/bin/python -m bench.query --blocks 100 --repeats 5

OpenDP bounds each card (``identifier``) with ``truncate_num_groups`` and ``truncate_per_group``
at the same G and R as ours; which groups and rows it keeps differs, and the run prints how. Its
time leaves out the pandas-to-polars conversion, printed apart.

Target of the privacy issue: <= 2x plain pandas groupby count. Then the integer grid's cost
against the float Laplace release it replaced, on the same partials in the same run (issue 14:
within 10 % in time and 5 % in the mean absolute error of the mean by station at ε = 1).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any, cast

import pandas as pd

from bench.sandbox import WORK, bench_layout
from privacy.mechanisms import geometric_release_many, laplace_release_many
from privacy.query import (
    DatasetPolicy,
    Partials,
    QueryPlan,
    combine_partials,
    parse_plan,
    release_query,
)
from runner.blocks import BlockLayout
from runner.query import QUERY_PROCESSES, QueryJob, local_partials, run_query

if TYPE_CHECKING:
    import polars as pl

ROWS, GROUPS = 4, 3
EPSILON = 1.0  # the whole budget of each query, ours and OpenDP's
HOUR = {"name": "hour", "expr": {"op": "hour", "args": [{"col": "ts"}]}}
MEAN = "mean by station"
# The plans' columns only: OpenDP has no domain for the int16 `line` column.
OPENDP_COLUMNS = ["card_id", "ts", "station_id", "fare"]


def plans() -> dict[str, dict]:
    bounds = {"max_rows_per_unit": ROWS, "max_groups_per_unit": GROUPS}
    mean = {"name": "mean_fare", "op": "mean", "column": "fare", "lo": 0, "hi": 15}
    return {
        "count by station": {"group_by": ["station_id"],
                             "aggregates": [{"name": "n", "op": "count"}], **bounds},
        MEAN: {"group_by": ["station_id"], "aggregates": [mean], **bounds},
        "count by station-hour": {"group_by": ["station_id", HOUR],
                                  "aggregates": [{"name": "n", "op": "count"}], **bounds},
    }  # fmt: skip


def mean_bounds() -> tuple[float, float]:
    aggregate = plans()[MEAN]["aggregates"][0]
    return float(aggregate["lo"]), float(aggregate["hi"])


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
    """User-level bounding written directly in pandas over the whole table (no noise); the same
    rows as ours keeps: each card's first GROUPS groups in row order, its first ROWS in each."""
    keys = ["station_id"] + (["hour"] if "station-hour" in name else [])
    frame = data.assign(hour=data["ts"].dt.hour) if "hour" in keys else data
    firsts = frame.drop_duplicates(["card_id", *keys])[["card_id", *keys]]
    allowed = firsts[firsts.groupby("card_id").cumcount() < GROUPS]
    kept = frame.merge(allowed, on=["card_id", *keys])
    kept = kept[kept.groupby(["card_id", *keys]).cumcount() < ROWS]
    if "mean" in name:
        return kept.groupby(keys)["fare"].mean()
    return kept.groupby(keys).size()


def float_laplace_means(plan: QueryPlan, total: Partials) -> pd.Series:
    """The mechanism the integer grid replaced, emulated on the same partials: a float sum per
    station plus float Laplace noise at the same sensitivity and share of ε, over the same noisy
    count. Bench code only: production has no float noise on a release path any more."""
    (aggregate,) = plan.aggregates
    share = EPSILON / 2  # the counts and the sums
    contributions = plan.max_groups_per_unit * plan.max_rows_per_unit
    sums = total.sums[f"sum:{aggregate.column}"].astype(float) * float(aggregate.sum_step)
    noisy_sums = laplace_release_many(sums.tolist(), contributions * aggregate.magnitude, share)
    counts = geometric_release_many(total.counts.astype(int).tolist(), contributions, share)
    means = [min(max(s / max(n, 1.0), aggregate.lo), aggregate.hi)
             for s, n in zip(noisy_sums, counts, strict=True)]  # fmt: skip
    return pd.Series({cell[0]: m for cell, m in zip(plan.cells, means, strict=True)})


def grid_against_float(job: QueryJob, data: pd.DataFrame, runs: int, repeats: int) -> None:
    """What the exact grid costs against the float Laplace release it replaced, same partials,
    same run: the release step's time and the mean absolute error of the station means."""
    total = combine_partials(local_partials(job))
    grid = timed(lambda: release_query(job.plan, total, EPSILON), runs)
    floats = timed(lambda: float_laplace_means(job.plan, total), runs)
    exact = hand_rolled(data, MEAN)

    def means(cells: list[Any]) -> pd.Series:
        return pd.Series({c.keys["station_id"]: c.value for c in cells}, dtype=float)

    ours = statistics.mean(
        mae(means(release_query(job.plan, total, EPSILON)), exact) for _ in range(repeats)
    )
    before = statistics.mean(
        mae(float_laplace_means(job.plan, total), exact) for _ in range(repeats)
    )
    whole = timed(lambda: run_query(job), runs)
    print(
        f"\nThe integer grid against the float Laplace release it replaced ({MEAN!r}, same "
        f"partials, ε={EPSILON:g}, {repeats} releases each, error vs exact bounded means):"
    )
    print(f"  release step: grid {grid * 1000:.1f} ms, float {floats * 1000:.1f} ms; "
          f"whole query {whole:.2f} s, so the grid's extra is "
          f"{(grid - floats) / whole:+.1%} of it")  # fmt: skip
    print(f"  mean absolute error: grid {ours:.4f}, float {before:.4f} "
          f"(grid / float {ours / before:.3f}x)")  # fmt: skip


def ours_means(job: QueryJob) -> pd.Series:
    """One release of our mean by station, indexed by station."""
    cells = run_query(job).released
    return pd.Series(
        {cast(dict[str, Any], c["keys"])["station_id"]: c["value"] for c in cells}, dtype=float
    )


# --- OpenDP's polars context -------------------------------------------------------------------


@dataclass(frozen=True)
class OpenDP:
    frame: pl.LazyFrame  # the plans' columns of the same pandas frame
    stations: list[int]  # public keys
    max_length: int  # public row count (the manifest's): OpenDP needs it to bound float sums
    conversion_seconds: float
    threads: int


def load_opendp(data: pd.DataFrame, stations: list[int], rows: int) -> OpenDP | None:
    try:
        import opendp.prelude as dp
        import polars as pl
    except ImportError:
        return None
    dp.enable_features("contrib")
    started = time.perf_counter()
    frame = pl.from_pandas(data[OPENDP_COLUMNS]).lazy()
    seconds = time.perf_counter() - started
    return OpenDP(frame, stations, rows, seconds, pl.thread_pool_size())


def _by(name: str) -> list[str]:
    return ["station_id", "hour"] if "station-hour" in name else ["station_id"]


def _with_hour(frame: Any, name: str) -> Any:
    """A polars LazyFrame or OpenDP query, with the hour of ``ts`` if the plan groups by it."""
    import polars as pl

    if "station-hour" not in name:
        return frame
    return frame.with_columns(pl.col("ts").dt.hour().alias("hour"))


def _keys(odp: OpenDP, name: str) -> pl.DataFrame:
    import polars as pl

    stations = pl.DataFrame({"station_id": pl.Series(odp.stations, dtype=pl.Int32)})
    if "station-hour" not in name:
        return stations
    hours = pl.DataFrame({"hour": pl.Series(range(24), dtype=pl.Int8)})
    return stations.join(hours, how="cross")


def opendp_query(odp: OpenDP, name: str) -> Any:
    """The plan as an OpenDP query, in a fresh one-query context holding the whole epsilon:
    unit = all rows of one card, pure epsilon-DP (Laplace), public keys joined in."""
    import opendp.prelude as dp
    import polars as pl

    context = dp.Context.compositor(
        data=odp.frame,
        privacy_unit=dp.unit_of(contributions=1, identifier="card_id"),
        privacy_loss=dp.loss_of(epsilon=EPSILON),
        split_evenly_over=1,
        margins=[dp.polars.Margin(max_length=odp.max_length)],
    )
    by = _by(name)
    query = (
        _with_hour(context.query(), name)
        .truncate_num_groups(GROUPS, by=by, keep="first")
        .truncate_per_group(ROWS, by=by, keep="first")
    )
    # signed: noisy counts may go below zero, as ours do (OpenDP 0.16 clamps at zero by default)
    aggregate = pl.col("fare").dp.mean(mean_bounds()) if "mean" in name else dp.len(signed=True)
    return query.group_by(*by).agg(aggregate).with_keys(_keys(odp, name))


def opendp_release(odp: OpenDP, name: str) -> pl.DataFrame:
    return opendp_query(odp, name).release().collect()


def opendp_noise(odp: OpenDP, name: str) -> str:
    summary = opendp_query(odp, name).summarize().to_dicts()
    return ", ".join(f"{row['aggregate']} {row['distribution']} scale {row['scale']:.1f}"
                     for row in summary)  # fmt: skip


def opendp_bounded(odp: OpenDP, name: str, groups: int) -> pd.Series:
    """OpenDP's truncation without noise, through the filters its truncate_* methods add in
    opendp 0.16: group rank = dense rank of the keys (1 = lowest), kept if < k, so
    ``truncate_num_groups(k)`` keeps a card's k - 1 lowest keys; pass ``groups`` = kept."""
    import polars as pl

    by = _by(name)
    kept = (
        _with_hour(odp.frame, name)
        .filter(pl.struct(*by).rank("dense").over("card_id") <= groups)
        .filter(pl.int_range(pl.len()).over("card_id", *by) < ROWS)
    )
    value = pl.col("fare").mean() if "mean" in name else pl.len()
    frame = kept.group_by(by).agg(value.alias("value")).collect().to_pandas()
    return frame.set_index(by)["value"]


def opendp_means(odp: OpenDP) -> pd.Series:
    return opendp_release(odp, MEAN).to_pandas().set_index("station_id")["fare"]


def mae(release: pd.Series, reference: pd.Series) -> float:
    both = pd.concat([release, reference], axis=1, join="inner").dropna()
    return float((both.iloc[:, 0] - both.iloc[:, 1]).abs().mean())


def accuracy(data: pd.DataFrame, job: QueryJob, odp: OpenDP, repeats: int) -> None:
    """Mean absolute error of released station means, over ``repeats`` releases each."""
    lo, hi = mean_bounds()
    exact = plain_pandas(data, MEAN)
    ours_bounded = hand_rolled(data, MEAN)
    odp_bounded = opendp_bounded(odp, MEAN, GROUPS - 1)
    ours = [ours_means(job) for _ in range(repeats)]
    theirs = [opendp_means(odp) for _ in range(repeats)]
    rows = {
        "unseen DP": (ours, ours_bounded),
        "OpenDP as released": (theirs, odp_bounded),
        f"OpenDP clamped to [{lo:g}, {hi:g}]": ([r.clip(lo, hi) for r in theirs], odp_bounded),
    }
    print(f"\nAccuracy of {MEAN!r} at epsilon {EPSILON:g}: mean absolute error over {len(exact)} "
          f"stations and {repeats} releases each; 'bounded' = exact means after that "
          "system's own bounding, no noise (ours clamps released means to the bounds, OpenDP "
          "does not)")  # fmt: skip
    print(f"{'release':<28}{'vs exact':>10}{'vs bounded':>12}{'exact/ours':>12}{'bnd/ours':>10}")
    base: tuple[float, float] | None = None
    for label, (releases, bounded) in rows.items():
        errors = (statistics.mean(mae(r, exact) for r in releases),
                  statistics.mean(mae(r, bounded) for r in releases))  # fmt: skip
        base = base or errors
        print(f"{label:<28}{errors[0]:>10.4f}{errors[1]:>12.4f}"
              f"{errors[0] / base[0]:>11.2f}x{errors[1] / base[1]:>9.2f}x")  # fmt: skip
    bias = (mae(ours_bounded, exact), mae(odp_bounded, exact))
    print(f"bounding alone (exact bounded vs exact): ours {bias[0]:.4f}, OpenDP {bias[1]:.4f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=5, help="releases for the accuracy table")
    args = parser.parse_args()
    layout: BlockLayout = bench_layout(args.blocks)
    source = WORK / "data" / "transport_cards.parquet"
    entry = json.loads((WORK / "data" / "manifest.json").read_text())["datasets"][0]
    policy = DatasetPolicy(entry["columns"], "card_id", {"fare": (0.0, 15.0)}, entry["key_sets"],
                           max_cells=20_000)  # fmt: skip
    read_seconds = timed(lambda: pd.read_parquet(source), args.runs)  # median, like the rest
    data = pd.read_parquet(source)
    print(f"{len(data):,} rows, {data['card_id'].nunique():,} cards, {layout.blocks} blocks; "
          f"reading the table once: {read_seconds:.2f} s (in the plain, hand-rolled and OpenDP "
          "times; ours reads its blocks)")  # fmt: skip
    odp = load_opendp(data, entry["key_sets"]["station_id"], int(entry["rows"]))
    if odp is not None:
        print(f"OpenDP: pandas to polars conversion {odp.conversion_seconds:.2f} s (not in its "
              f"times); polars runs on {odp.threads} threads, pandas reads the table on all "
              f"cores and groups on one; ours reads and bounds blocks in {QUERY_PROCESSES} "
              "processes (started before the first timed run)")  # fmt: skip
    print(f"\n{'query':<24}{'plain pandas':>14}{'hand-rolled':>13}{'unseen DP':>11}"
          f"{'DP / plain':>12}{'DP / hand':>11}"
          + (f"{'OpenDP':>10}{'ODP / plain':>13}" if odp else ""))  # fmt: skip
    jobs: dict[str, QueryJob] = {}
    released: dict[str, pl.DataFrame] = {}
    for name, raw in plans().items():
        plan = parse_plan(raw, policy)
        job = jobs[name] = QueryJob(layout, plan, "card_id", EPSILON)
        plain = timed(partial(plain_pandas, data, name), args.runs) + read_seconds
        hand = timed(partial(hand_rolled, data, name), args.runs) + read_seconds
        run_query(job)  # warm, as the table read above: the query processes, the page cache
        ours = timed(partial(run_query, job), args.runs)  # reads its blocks itself
        row = (f"{name:<24}{plain:>13.2f}s{hand:>12.2f}s{ours:>10.2f}s"
               f"{ours / plain:>11.1f}x{ours / hand:>10.1f}x")  # fmt: skip
        if odp is not None:

            def release(n: str = name, o: OpenDP = odp) -> None:
                released[n] = opendp_release(o, n)

            theirs = timed(release, args.runs) + read_seconds
            row += f"{theirs:>9.2f}s{theirs / plain:>12.1f}x"
        print(row)
    grid_against_float(jobs[MEAN], data, args.runs, 200)  # releases are cheap: many, for the MAE
    if odp is None:
        print("\nOpenDP is not installed here (pip install 'opendp[polars]' to compare).")
        return
    print(f"\nBounding, per card (the privacy unit): ours keeps its first {GROUPS} groups in row "
          f"order and its first {ROWS} rows in each. OpenDP: identifier='card_id', "
          f"truncate_num_groups({GROUPS}, keep='first') then truncate_per_group({ROWS}, "
          "keep='first'): accounted as our bounds, but it keeps the card's lowest keys, not its "
          f"first, and only {GROUPS - 1} of them (rank < k on a dense rank that starts at 1); "
          "its first rows in each, like ours.")  # fmt: skip
    total = int(released["count by station"]["len"].sum())
    kept = {g: int(opendp_bounded(odp, "count by station", g).sum()) for g in (GROUPS - 1, GROUPS)}
    ours_kept = int(hand_rolled(data, "count by station").sum())
    print(f"check: OpenDP's released station counts sum to {total:,}; exact rows kept with "
          f"<= {GROUPS - 1} lowest stations per card {kept[GROUPS - 1]:,}, with <= {GROUPS} "
          f"{kept[GROUPS]:,}; ours keeps {ours_kept:,}")  # fmt: skip
    print(f"OpenDP public inputs: keys (the {len(odp.stations)} stations, 24 hours) and "
          f"max_length={odp.max_length:,} (manifest row count; OpenDP widens a float sum's "
          "sensitivity for rounding, more as it and the key count grow)")  # fmt: skip
    for name in plans():
        print(f"OpenDP noise, {name}: {opendp_noise(odp, name)}")
    accuracy(data, jobs[MEAN], odp, args.repeats)


if __name__ == "__main__":
    main()

"""Query mode: plan validation, the expression language, user-level bounding and its
sensitivity, block decomposition, and a statistical audit of the guarantee.

Statistical tests draw from the production secure RNG (no seed exists to fix), with fixed trial
counts; each states its false-failure rate. The audit's own power is shown by running it on a
release whose bounding is broken on purpose: it must catch that.
"""

from __future__ import annotations

import inspect
import math
import random

import numpy as np
import pandas as pd
import pytest

from privacy.expressions import ExpressionError, evaluate, validate
from privacy.mechanisms import (
    geometric_error_bound,
    geometric_release,
    geometric_release_many,
    laplace_release_many,
    selection_threshold,
)
from privacy.partials import _bounded, _domain_lookup
from privacy.query import (
    DatasetPolicy,
    Partials,
    PlanError,
    block_partials,
    combine_partials,
    parse_plan,
    plan_query_noise,
    release_query,
)
from tests.dp_audit import AUDIT_TRIALS, violation

COLUMNS = {"card": "int64", "ts": "timestamp[us]", "station": "int32", "fare": "double",
           "event": "string"}  # fmt: skip
POLICY = DatasetPolicy(
    columns=COLUMNS,
    unit_column="card",
    bounds={"fare": (0.0, 10.0)},
    key_sets={"station": [1, 2, 3], "event": ["in", "out"]},
    max_cells=100,
    max_rows_per_unit=50,
    max_groups_per_unit=10,
)
HOUR = {"name": "hour", "expr": {"op": "hour", "args": [{"col": "ts"}]}}


def frame(rows: list[tuple[int, str, int, float, str]]) -> pd.DataFrame:
    cards, times, stations, fares, events = zip(*rows, strict=True)
    return pd.DataFrame(
        {"card": list(cards), "ts": pd.to_datetime(list(times)), "station": list(stations),
         "fare": list(fares), "event": list(events)}
    )  # fmt: skip


def random_trips(units: int, seed: int) -> pd.DataFrame:
    """Test data only (seeded); heavy-tailed trips per card over 3 stations and 24 hours."""
    rng = np.random.default_rng(seed)
    rows = []
    for card in range(units):
        for _ in range(int(rng.zipf(1.6)) % 40 + 1):
            hour = int(rng.integers(0, 24))
            rows.append((card, f"2026-03-02 {hour:02d}:10", int(rng.integers(1, 4)),
                         float(rng.uniform(-5, 20)), "out"))  # fmt: skip
    return frame(rows)


# --- plans and expressions --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("plan", "says"),
    [
        ({"aggregates": []}, "at least one aggregate"),
        ({"aggregates": [{"name": "n", "op": "median"}]}, "op must be one of"),
        ({"group_by": ["card"], "aggregates": [{"name": "n", "op": "count"}]}, "privacy unit"),
        ({"group_by": ["nope"], "aggregates": [{"name": "n", "op": "count"}]}, "unknown column"),
        ({"filter": {"op": "eval", "args": [{"lit": 1}]},
          "aggregates": [{"name": "n", "op": "count"}]}, "unknown operator"),
        ({"aggregates": [{"name": "s", "op": "sum", "column": "station"}]}, "finite bounds"),
        ({"aggregates": [{"name": "s", "op": "sum", "column": "card", "lo": 0, "hi": 1}]},
         "numeric column"),
        ({"aggregates": [{"name": "n", "op": "count"}], "max_rows_per_unit": 500}, "1 to 50"),
        ({"group_by": ["station", HOUR], "aggregates": [{"name": "n", "op": "count"},
          {"name": "f", "op": "mean", "column": "fare"}]}, "144 cells"),
        ({"aggregates": [{"name": "n", "op": "count"}], "seed": 4}, "unknown plan fields: seed"),
        ({"aggregates": [{"name": "m", "op": "quantile", "column": "fare"}]}, "q strictly"),
        ({"aggregates": [{"name": "m", "op": "quantile", "column": "fare", "q": 1.0}]},
         "q strictly"),
        ({"aggregates": [{"name": "m", "op": "quantile", "column": "fare", "q": 0.5,
                          "bins": 1}]}, "bins must be"),
        ({"aggregates": [{"name": "m", "op": "mean", "column": "fare", "q": 0.5}]},
         "quantiles only"),
        ({"aggregates": [{"name": "m", "op": "mean", "column": "fare", "lo": 0, "hi": 5},
                         {"name": "s", "op": "sum", "column": "fare", "lo": 0, "hi": 9}]},
         "different bounds"),
        ({"aggregates": [{"name": "a", "op": "quantile", "column": "fare", "q": 0.5},
                         {"name": "b", "op": "quantile", "column": "fare", "q": 0.9,
                          "bins": 20}]}, "different bins"),
        # type-checked against the schema: these used to pass and fail at run time on data
        ({"filter": {"op": "<", "args": [{"col": "event"}, {"lit": 3}]},
          "aggregates": [{"name": "n", "op": "count"}]}, "column 'event' of type string"),
        ({"group_by": [{"name": "h", "expr": {"op": "hour", "args": [{"col": "fare"}]}}],
          "aggregates": [{"name": "n", "op": "count"}]}, "column 'fare' of type double"),
        ({"filter": {"op": "+", "args": [{"col": "event"}, {"col": "fare"}]},
          "aggregates": [{"name": "n", "op": "count"}]}, "'\\+' needs numbers"),
        ({"filter": {"col": "event"}, "aggregates": [{"name": "n", "op": "count"}]},
         "filter must be true/false"),
        ({"filter": {"op": ">=", "args": [{"col": "ts"}, {"lit": "banana"}]},
          "aggregates": [{"name": "n", "op": "count"}]}, "not a date or time"),
        ({"aggregates": [{"name": "s", "op": "sum", "column": "ts", "lo": 0, "hi": 1}]},
         "type timestamp.*not a number"),
        ({"aggregates": [{"name": "s", "op": "mean", "column": "event", "lo": 0, "hi": 1}]},
         "type string, not a number"),
    ],
)  # fmt: skip
def test_bad_plans_are_refused_with_the_fix(plan: dict, says: str) -> None:
    with pytest.raises(PlanError, match=says):
        parse_plan(plan, POLICY)


def test_well_typed_plans_still_pass() -> None:
    for expression in (
        {"op": "and", "args": [{"op": ">=", "args": [{"col": "ts"}, {"lit": "2026-03-02"}]},
                               {"op": "isin", "args": [{"col": "event"}], "values": ["in"]}]},
        {"op": "between", "args": [{"op": "/", "args": [{"col": "fare"}, {"lit": 2}]},
                                   {"lit": 0}, {"lit": 3}]},
        {"op": "==", "args": [{"op": "weekday", "args": [{"col": "ts"}]}, {"lit": 0}]},
    ):  # fmt: skip
        parse_plan({"filter": expression, "aggregates": [{"name": "n", "op": "count"}]}, POLICY)


def test_every_value_of_a_quantile_column_gives_partials_never_an_error() -> None:
    """An infinity once failed a query only when a filtered card had one (inf // width is NaN):
    a failure, and a refund, that told whether such a card exists. Every value is now total."""
    plan = parse_plan({"aggregates": [{"name": "m", "op": "quantile", "column": "fare",
                                       "q": 0.5, "bins": 10}]}, POLICY)  # fmt: skip
    for odd in (math.inf, -math.inf, math.nan, 1e308, -1e308, 0.0):
        rows = frame([(1, "2026-03-02 08:00", 1, odd, "in"), (2, "2026-03-02 09:00", 2, 5.0, "in")])
        histogram = block_partials(plan, rows, "card").histograms["hist:fare"]
        assert histogram.sum() == (1 if math.isnan(odd) else 2)
    empty = frame([(1, "2026-03-02 08:00", 1, 1.0, "in")]).iloc[:0]
    assert block_partials(plan, empty, "card").histograms["hist:fare"].sum() == 0


def test_ordering_text_with_missing_values_is_total() -> None:
    """``<`` on a text column holding None raised TypeError in pandas: now missing is false."""
    plan = parse_plan({"filter": {"op": "<", "args": [{"col": "event"}, {"lit": "m"}]},
                       "aggregates": [{"name": "n", "op": "count"}]}, POLICY)  # fmt: skip
    rows = frame([(1, "2026-03-02 08:00", 1, 1.0, "in"), (2, "2026-03-02 09:00", 2, 5.0, "out"),
                  (3, "2026-03-02 09:00", 2, 5.0, "in")])  # fmt: skip
    rows["event"] = pd.Series(["in", None, "out"], dtype=object)
    assert int(block_partials(plan, rows, "card").counts.sum()) == 1


def test_quantile_histograms_too_large_to_noise_are_refused() -> None:
    plan = {"group_by": ["station", HOUR, "event"],
            "aggregates": [{"name": "m", "op": "quantile", "column": "fare", "q": 0.5,
                            "bins": 1000}]}  # fmt: skip
    with pytest.raises(PlanError, match="144,000 histogram bins"):
        parse_plan(plan, DatasetPolicy(**{**POLICY.__dict__, "max_cells": 200}))


def test_dataset_bounds_and_policy_limits_fill_in() -> None:
    plan = parse_plan({"aggregates": [{"name": "f", "op": "sum", "column": "fare"}]}, POLICY)
    assert (plan.aggregates[0].lo, plan.aggregates[0].hi) == (0.0, 10.0)
    assert (plan.max_rows_per_unit, plan.max_groups_per_unit) == (50, 10)
    assert plan.cells == [()]


def test_expressions_match_pandas() -> None:
    data = frame([(1, "2026-03-02 07:30", 1, 3.0, "in"), (2, "2026-03-07 18:05", 2, 6.5, "out"),
                  (3, "2026-03-08 23:59", 3, 0.0, "out")])  # fmt: skip
    col = lambda name: {"col": name}  # noqa: E731
    lit = lambda value: {"lit": value}  # noqa: E731
    cases = {
        "<": ({"op": "<", "args": [col("fare"), lit(5)]}, data.fare < 5),
        "+": ({"op": "+", "args": [col("fare"), lit(1)]}, data.fare + 1),
        "/": ({"op": "/", "args": [col("fare"), col("station")]}, data.fare / data.station),
        "and": ({"op": "and", "args": [{"op": ">=", "args": [col("fare"), lit(1)]},
                                       {"op": "==", "args": [col("event"), lit("out")]}]},
                (data.fare >= 1) & (data.event == "out")),
        "not": ({"op": "not", "args": [{"op": "==", "args": [col("event"), lit("in")]}]},
                data.event != "in"),
        "hour": ({"op": "hour", "args": [col("ts")]}, data.ts.dt.hour),
        "weekday": ({"op": "weekday", "args": [col("ts")]}, data.ts.dt.day_of_week),
        "between": ({"op": "between", "args": [col("fare"), lit(1), lit(6.5)]},
                    data.fare.between(1, 6.5)),
        "isin": ({"op": "isin", "args": [col("station")], "values": [1, 3]},
                 data.station.isin([1, 3])),
    }  # fmt: skip
    for name, (expression, expected) in cases.items():
        validate(expression, COLUMNS)
        pd.testing.assert_series_equal(
            evaluate(expression, data), expected, check_names=False, obj=name
        )


@pytest.mark.parametrize(
    "expression",
    [
        {"col": "__class__"},
        {"op": "getattr", "args": [{"col": "fare"}]},
        {"lit": [1, 2]},
        {"op": "<", "args": [{"col": "fare"}]},
        {"op": "isin", "args": [{"col": "fare"}]},
        {"op": "bucket", "args": [{"col": "fare"}], "edges": [0, 5, 5]},
        {"op": "bucket", "args": [{"col": "fare"}], "edges": [1]},
        "fare > 3",
        {"col": "fare", "op": "+"},
    ],
)
def test_anything_outside_the_language_is_refused(expression: object) -> None:
    with pytest.raises(ExpressionError):
        validate(expression, COLUMNS)


# --- bounding, sensitivity, blocks ------------------------------------------------------------


def test_bounding_keeps_first_groups_and_rows_of_each_unit() -> None:
    rows = [(7, f"2026-03-02 {h:02d}:00", 1, 5.0, "out") for h in (8, 8, 8, 9, 10, 10)]
    rows += [(8, "2026-03-02 08:30", 2, 4.0, "out")]
    plan = parse_plan(
        {"group_by": [HOUR], "aggregates": [{"name": "n", "op": "count"}],
         "max_rows_per_unit": 2, "max_groups_per_unit": 2},
        POLICY,
    )  # fmt: skip
    partials = block_partials(plan, frame(rows), "card")
    # card 7: hours 8 and 9 kept (its first two groups), at most 2 rows each; hour 10 dropped.
    counts = {cell[0]: n for cell, n in zip(plan.cells, partials.counts, strict=True) if n}
    assert counts == {8: 3, 9: 1}


def bounded_by_hand(units: list, cells: list, groups: int, rows: int) -> tuple[list, list]:
    """The bounding rule read literally, one row at a time: a unit's cells in the order it
    first shows them, the first ``groups`` allowed; the first ``rows`` of each allowed pair."""
    opened: dict = {}  # unit -> its cells in first-seen order
    seen: dict = {}  # (unit, cell) -> rows so far
    kept, opens = [], []
    for unit, cell in zip(units, cells, strict=True):
        order = opened.setdefault(unit, [])
        if cell not in order:
            order.append(cell)
        rank = seen.get((unit, cell), 0)
        seen[(unit, cell)] = rank + 1
        kept.append(order.index(cell) < groups and rank < rows)
        opens.append(rank == 0)
    return kept, opens


@pytest.mark.parametrize(
    ("domain", "values"),
    [
        ((3, 5, 4, 10), np.array([3, 4, 5, 6, 10, 11, 2, -1, 2**40], dtype=np.int64)),
        ((0, 1, 2), np.array([0, 1, 2, 3], dtype=np.uint8)),
        ((-2, 7), np.array([-2, 7, 0], dtype=np.int16)),
        ((1, 2), np.array([1.0, 2.0, 1.5, np.nan])),  # floats: through the index
        (("a", "b"), np.array(["b", "c", "a"], dtype=object)),
        ((0, 10**9), np.array([0, 10**9, 5], dtype=np.int64)),  # too wide for a table
    ],
)
def test_key_set_lookup_equals_a_pandas_index(domain: tuple, values: np.ndarray) -> None:
    expected = pd.Index(domain).get_indexer(values)
    np.testing.assert_array_equal(_domain_lookup(domain).codes(values), expected)


@pytest.mark.parametrize("scattered", [False, True])
@pytest.mark.parametrize(("groups", "rows"), [(1, 1), (2, 3), (3, 1), (6, 10)])
def test_bounding_matches_the_rule_read_row_by_row(scattered: bool, groups: int, rows: int) -> None:
    """The vectorised bounding equals the literal rule on random data, whether each unit's
    rows are stored together (as blocks store them) or scattered through the frame."""
    rng = np.random.default_rng(groups * 10 + rows + scattered)
    for _ in range(20):
        sizes = rng.zipf(1.5, size=int(rng.integers(1, 60))) % 30 + 1
        units = np.repeat(rng.permutation(len(sizes)) * 7 - 50, sizes)
        if scattered:
            units = rng.permutation(units)
        cells = rng.integers(0, int(rng.integers(1, 9)), size=len(units))
        kept, opens = _bounded(units, cells, 9, groups, rows)
        expected_kept, expected_opens = bounded_by_hand(list(units), list(cells), groups, rows)
        assert kept.tolist() == expected_kept
        assert opens.tolist() == expected_opens


@pytest.mark.parametrize(("groups", "rows"), [(1, 1), (2, 3), (5, 10)])
def test_removing_any_unit_moves_the_release_by_at_most_its_sensitivity(
    groups: int, rows: int
) -> None:
    """Exhaustive over every unit of random data: the L1 change of counts and clipped sums is
    within G·R and G·R·max(|lo|, |hi|), the sensitivities the noise is calibrated to."""
    data = random_trips(60, seed=groups * 100 + rows)
    plan = parse_plan(
        {"group_by": ["station", HOUR],
         "aggregates": [{"name": "n", "op": "count"},
                        {"name": "f", "op": "sum", "column": "fare", "lo": -2, "hi": 8},
                        {"name": "v", "op": "variance", "column": "fare", "lo": -2, "hi": 8},
                        {"name": "p", "op": "quantile", "column": "fare", "lo": -2, "hi": 8,
                         "q": 0.5, "bins": 7}],
         "max_rows_per_unit": rows, "max_groups_per_unit": groups},
        DatasetPolicy(**{**POLICY.__dict__, "max_cells": 1000}),
    )  # fmt: skip
    full = block_partials(plan, data, "card")
    noise = {q.quantity: q for q in plan_query_noise(plan, 1.0)}
    assert noise["count"].sensitivity == groups * rows
    assert noise["sum:fare"].sensitivity == groups * rows * 8
    assert noise["sumsq:fare"].sensitivity == groups * rows * 64
    assert noise["hist:fare"].sensitivity == groups * rows
    for unit in data["card"].unique():
        without = block_partials(plan, data[data["card"] != unit], "card")
        assert np.abs(full.counts - without.counts).sum() <= groups * rows
        fare = plan.summed_columns[0]  # sums are whole fixed-point steps: exact integers
        moved = np.abs(full.sums["sum:fare"] - without.sums["sum:fare"]).sum()
        assert moved <= groups * rows * fare.row_steps(1)
        assert moved * float(fare.sum_step) <= groups * rows * 8
        squares = np.abs(full.sums["sumsq:fare"] - without.sums["sumsq:fare"]).sum()
        assert squares <= groups * rows * fare.row_steps(2)
        assert squares * float(fare.square_step) <= groups * rows * 64
        binned = np.abs(full.histograms["hist:fare"] - without.histograms["hist:fare"]).sum()
        assert binned <= groups * rows


def test_blocks_of_disjoint_units_add_up_to_the_whole() -> None:
    data = random_trips(80, seed=5)
    plan = parse_plan(
        {"filter": {"op": ">", "args": [{"col": "fare"}, {"lit": 1}]},
         "group_by": ["station"],
         "aggregates": [{"name": "n", "op": "count"},
                        {"name": "m", "op": "mean", "column": "fare"}],
         "max_rows_per_unit": 3, "max_groups_per_unit": 2},
        POLICY,
    )  # fmt: skip
    whole = block_partials(plan, data, "card")
    blocks = [data[data["card"] % 4 == b] for b in range(4)]
    combined = combine_partials(block_partials(plan, block, "card") for block in blocks)
    assert whole.counts.sum() > 0
    np.testing.assert_array_equal(combined.counts, whole.counts)
    np.testing.assert_array_equal(combined.sums["sum:fare"], whole.sums["sum:fare"])  # exact


def test_every_cell_is_released_even_empty_ones_and_counts_stay_integers() -> None:
    data = frame([(1, "2026-03-02 07:30", 1, 3.0, "out")])
    plan = parse_plan(
        {
            "group_by": ["station", "event"],
            "aggregates": [
                {"name": "n", "op": "count"},
                {"name": "m", "op": "mean", "column": "fare"},
            ],
        },
        POLICY,
    )
    released = release_query(plan, block_partials(plan, data, "card"), 1.0)
    assert len(released) == 3 * 2 * 2
    assert {(c.keys["station"], c.keys["event"]) for c in released} == {
        (s, e) for s in (1, 2, 3) for e in ("in", "out")
    }
    for cell in released:
        if cell.name == "n":
            assert cell.value == int(cell.value)
        else:
            assert 0.0 <= cell.value <= 10.0  # a mean is clipped to its bounds
        assert cell.noise_scale > 0 and cell.error_bound_95 > 0


def test_geometric_bound_covers_95_percent() -> None:
    """Coverage of the stated bound over 20,000 draws; 6-sigma band, false failure < 1e-8."""
    trials, bound = 20_000, geometric_error_bound(6, 0.5)
    hits = sum(abs(geometric_release(100, 6, 0.5) - 100) <= bound for _ in range(trials))
    a = math.exp(-0.5 / 6)
    exact = 1 - 2 * a ** (bound + 1) / (1 + a)
    assert exact >= 0.95
    assert abs(hits / trials - exact) < 6 * math.sqrt(exact * (1 - exact) / trials)


# --- the statistical DP audit -----------------------------------------------------------------


@pytest.mark.slow  # a statistical audit (tests/dp_audit.py)
def test_audit_geometric_mechanism_on_neighbouring_counts() -> None:
    epsilon, delta = 0.5, 3
    first = np.array([geometric_release(40, delta, epsilon) for _ in range(AUDIT_TRIALS)])
    second = np.array([geometric_release(40 + delta, delta, epsilon) for _ in range(AUDIT_TRIALS)])
    assert violation(first, second, epsilon) is None
    # Power: the same audit catches noise calibrated to a third of the real difference.
    wrong = np.array([geometric_release(40 + 3 * delta, delta, epsilon)
                      for _ in range(AUDIT_TRIALS)])  # fmt: skip
    assert violation(first, wrong, epsilon) is not None


def heavy_unit_data() -> tuple[pd.DataFrame, pd.DataFrame]:
    """Neighbours: with and without card 999, who rides 30 times through station 2."""
    base = random_trips(40, seed=11)
    heavy = frame([(999, f"2026-03-02 {h % 24:02d}:15", 2, 9.0, "out") for h in range(30)])
    return pd.concat([base, heavy], ignore_index=True), base


def audit_query(plan_raw: dict, epsilon: float, bound_with: dict | None = None) -> float | None:
    """Release the station counts many times on both neighbours; audit the heavy unit's cell.

    ``bound_with`` computes the partials under a different (looser) bounding than the plan the
    noise is calibrated for: a deliberately broken release, to show the audit's power.
    """
    plan = parse_plan(plan_raw, POLICY)
    bounding = parse_plan({**plan_raw, **bound_with}, POLICY) if bound_with else plan
    samples = []
    for data in heavy_unit_data():
        combined = block_partials(bounding, data, "card")
        draws = [
            next(c.value for c in release_query(plan, combined, epsilon) if c.keys["station"] == 2)
            for _ in range(AUDIT_TRIALS)
        ]
        samples.append(np.array(draws))
    return violation(samples[0], samples[1], epsilon)


COUNT_BY_STATION = {"group_by": ["station"], "aggregates": [{"name": "n", "op": "count"}],
                    "max_rows_per_unit": 2, "max_groups_per_unit": 1}  # fmt: skip


@pytest.mark.slow  # a statistical audit (tests/dp_audit.py)
def test_audit_query_release_end_to_end_on_neighbouring_datasets() -> None:
    assert audit_query(COUNT_BY_STATION, 1.0) is None


@pytest.mark.slow  # a statistical audit (tests/dp_audit.py)
def test_audit_catches_a_release_whose_bounding_is_broken() -> None:
    assert audit_query(COUNT_BY_STATION, 1.0, bound_with={"max_rows_per_unit": 30}) is not None


def test_no_seed_reaches_query_noise() -> None:
    for function in (geometric_release, geometric_release_many, laplace_release_many,
                     release_query):  # fmt: skip
        assert not {"seed", "random_state", "rng"} & set(inspect.signature(function).parameters)
    draws = []
    for _ in range(2):
        random.seed(7)
        np.random.seed(7)
        draws.append([geometric_release(0, 1, 1.0) for _ in range(20)])
    assert draws[0] != draws[1]  # equal by chance with probability < 1e-9


def test_block_grid_matches_a_plain_pandas_bounded_groupby() -> None:
    """The vectorised bounding equals the obvious pandas formulation of the same rule."""
    data = random_trips(120, seed=9).sort_values("card", kind="stable").reset_index(drop=True)
    plan = parse_plan(
        {"group_by": ["station", HOUR], "max_rows_per_unit": 2, "max_groups_per_unit": 3,
         "aggregates": [{"name": "f", "op": "sum", "column": "fare", "lo": 0, "hi": 10}]},
        DatasetPolicy(**{**POLICY.__dict__, "max_cells": 1000}),
    )  # fmt: skip
    partials = block_partials(plan, data, "card")
    keyed = data.assign(hour=data["ts"].dt.hour)
    firsts = keyed.drop_duplicates(["card", "station", "hour"])[["card", "station", "hour"]]
    allowed = firsts[firsts.groupby("card").cumcount() < 3]
    kept = keyed.merge(allowed, on=["card", "station", "hour"])
    kept = kept[kept.groupby(["card", "station", "hour"]).cumcount() < 2]
    expected = kept.assign(fare=kept["fare"].clip(0, 10)).groupby(["station", "hour"])["fare"]
    for (station, hour), total in expected.sum().items():
        index = plan.cells.index((station, hour))
        step = float(plan.summed_columns[0].sum_step)
        assert partials.sums["sum:fare"][index] * step == pytest.approx(total, abs=len(kept) * step)
        assert partials.counts[index] == expected.size()[(station, hour)]
    assert partials.counts.sum() == len(kept)


def test_a_histogram_is_a_count_grouped_by_public_buckets() -> None:
    data = random_trips(80, seed=21)
    edges = [-5, 0, 5, 10, 15, 20]
    plan = parse_plan(
        {"group_by": [{"name": "fare_bin",
                       "expr": {"op": "bucket", "args": [{"col": "fare"}], "edges": edges}}],
         "aggregates": [{"name": "n", "op": "count"}]},
        POLICY,
    )  # fmt: skip
    assert plan.cells == [(0,), (1,), (2,), (3,), (4,)]
    partials = block_partials(plan, data, "card")  # <= 40 trips a card: nothing bounded away
    expected, _ = np.histogram(data["fare"], bins=edges)
    np.testing.assert_array_equal(partials.counts, expected)


def test_variance_is_released_within_its_range_and_near_the_truth() -> None:
    data = random_trips(400, seed=4)
    plan = parse_plan(
        {"aggregates": [{"name": "v", "op": "variance", "column": "fare", "lo": 0, "hi": 10}],
         "max_rows_per_unit": 50, "max_groups_per_unit": 1},
        POLICY,
    )  # fmt: skip
    (released,) = release_query(plan, block_partials(plan, data, "card"), 10.0)
    truth = data["fare"].clip(0, 10).var(ddof=0)
    assert 0.0 <= released.value <= 25.0
    assert {q.quantity for q in plan_query_noise(plan, 10.0)} == {"count", "sum:fare",
                                                                 "sumsq:fare"}  # fmt: skip
    # The stated 95 % bound of each noisy quantity, propagated: a miss has probability < 15 %
    # per run, so the test uses three independent releases and fails only if all three miss
    # (false-failure rate < 0.4 %); each release also re-checks the range.
    misses = 0
    for _ in range(3):
        (cell,) = release_query(plan, block_partials(plan, data, "card"), 10.0)
        assert 0.0 <= cell.value <= 25.0
        misses += abs(cell.value - truth) > cell.error_bound_95
    assert misses < 3


# --- quantiles --------------------------------------------------------------------------------


def one_trip_each(fares: np.ndarray, station: int = 1) -> pd.DataFrame:
    return pd.DataFrame({"card": np.arange(len(fares)), "ts": pd.Timestamp("2026-03-02 08:00"),
                         "station": station, "fare": fares, "event": "out"})  # fmt: skip


def quantile_plan(q: float, bins: int = 100, **extra: object) -> dict:
    return {"aggregates": [{"name": "p", "op": "quantile", "column": "fare", "q": q,
                            "lo": 0, "hi": 10, "bins": bins}],
            "max_rows_per_unit": 1, "max_groups_per_unit": 1, **extra}  # fmt: skip


def test_quantile_histogram_bins_clipped_values_and_blocks_add_up() -> None:
    data = random_trips(80, seed=13)
    plan = parse_plan(quantile_plan(0.5, bins=10, max_rows_per_unit=50, max_groups_per_unit=3,
                                    group_by=["station"]),
                      POLICY)  # fmt: skip
    whole = block_partials(plan, data, "card")
    for index, (station,) in enumerate(plan.cells):
        fares = data.loc[data["station"] == station, "fare"].clip(0, 9.999)
        expected, _ = np.histogram(fares, bins=np.linspace(0, 10, 11))
        np.testing.assert_array_equal(whole.histograms["hist:fare"][index], expected)
    blocks = [data[data["card"] % 3 == b] for b in range(3)]
    combined = combine_partials(block_partials(plan, block, "card") for block in blocks)
    np.testing.assert_array_equal(combined.histograms["hist:fare"], whole.histograms["hist:fare"])


@pytest.mark.parametrize("q", [0.5, 0.9])
def test_quantiles_are_near_the_truth_within_their_stated_bound(q: float) -> None:
    """3,000 cards at epsilon = 1: median and p90 of skewed fares. Measured: errors ~0.01-0.04,
    bounds ~0.15-0.3, every one of 200 releases inside its bound. The test allows 10 misses in
    100 (a correct 95 % bound fails it with probability < 3 %; this one is conservative)."""
    fares = np.minimum(np.random.default_rng(3).lognormal(1, 0.6, 3000), 10)
    plan = parse_plan(quantile_plan(q), POLICY)
    partials = block_partials(plan, one_trip_each(fares), "card")
    truth = float(np.quantile(fares, q))
    released = [release_query(plan, partials, 1.0)[0] for _ in range(100)]
    assert all(0 <= cell.value <= 10 for cell in released)
    assert sum(abs(cell.value - truth) > cell.error_bound_95 for cell in released) <= 10
    assert float(np.median([abs(cell.value - truth) for cell in released])) < 0.1
    assert all(cell.error_bound_95 < 1.0 and cell.noise_scale > 0 for cell in released)


def test_quantiles_of_one_column_share_one_histogram_and_one_share_of_epsilon() -> None:
    plan = parse_plan(
        {"aggregates": [{"name": "median", "op": "quantile", "column": "fare", "q": 0.5},
                        {"name": "p90", "op": "quantile", "column": "fare", "q": 0.9},
                        {"name": "n", "op": "count"}]},
        POLICY,
    )  # fmt: skip
    noise = plan_query_noise(plan, 2.0)
    assert [(q.quantity, q.epsilon) for q in noise] == [("count", 1.0), ("hist:fare", 1.0)]
    fares = np.random.default_rng(5).uniform(0, 10, 2000)
    cells = {c.name: c for c in release_query(plan, block_partials(plan, one_trip_each(fares),
                                                                    "card"), 2.0)}  # fmt: skip
    assert cells["median"].value < cells["p90"].value
    assert cells["median"].epsilon == cells["p90"].epsilon == 1.0


def test_a_quantile_of_an_empty_cell_is_the_middle_of_its_range_or_noise() -> None:
    plan = parse_plan(quantile_plan(0.5, bins=4, group_by=["station"]), POLICY)
    released = release_query(plan, block_partials(plan, one_trip_each(np.array([2.0])), "card"),
                             1.0)  # fmt: skip
    assert len(released) == 3  # every station, rows or not
    for cell in released:
        assert 0 <= cell.value <= 10 and 0 < cell.error_bound_95 <= 10


@pytest.mark.slow  # a statistical audit (tests/dp_audit.py)
def test_audit_sum_release_with_exact_integer_sums_and_discrete_noise() -> None:
    """Station 2's fare sum with and without the heavy card: exact fixed-point sums, discrete
    Laplace noise; the releases pass the ε audit (false-failure rate < 2e-6)."""
    plan_raw = {"group_by": ["station"],
                "aggregates": [{"name": "f", "op": "sum", "column": "fare", "lo": 0, "hi": 10}],
                "max_rows_per_unit": 2, "max_groups_per_unit": 1}  # fmt: skip
    assert audit_query(plan_raw, 1.0) is None


def test_sums_do_not_depend_on_the_order_of_rows_or_blocks() -> None:
    """Float sums do: summed in another order, the same values round differently. Whole
    fixed-point steps cannot."""
    values = [5e11 + 0.1 * i for i in range(50)] + [1e-3] * 50
    rows = [(i, "2026-03-02 08:00", 1, value, "in") for i, value in enumerate(values)]
    plan = parse_plan({"aggregates": [{"name": "f", "op": "sum", "column": "fare",
                                       "lo": 0, "hi": 1e12}]}, POLICY)  # fmt: skip
    totals = set()
    for order in (rows, rows[::-1], sorted(rows, key=lambda r: r[3])):
        blocks = [frame(order[:30]), frame(order[30:])]
        combined = combine_partials(block_partials(plan, b, "card") for b in blocks)
        totals.add(int(combined.sums["sum:fare"][0]))
    assert len(totals) == 1
    assert sum(values) != sum(values[::-1])  # what float accumulation would have done


@pytest.mark.slow  # a statistical audit (tests/dp_audit.py)
def test_audit_median_release_end_to_end_on_neighbouring_datasets() -> None:
    """The median of station 2's fares, with and without a card that rides it 30 times at the
    top fare: the released medians must not tell the neighbours apart beyond e^epsilon."""
    plan_raw = {"filter": {"op": "==", "args": [{"col": "station"}, {"lit": 2}]},
                "aggregates": [{"name": "p", "op": "quantile", "column": "fare", "q": 0.5,
                                "lo": 0, "hi": 10, "bins": 4}],
                "max_rows_per_unit": 2, "max_groups_per_unit": 1}  # fmt: skip
    plan = parse_plan(plan_raw, POLICY)
    samples = []
    for data in heavy_unit_data():
        partials = block_partials(plan, data, "card")
        samples.append(np.array([release_query(plan, partials, 1.0)[0].value
                                 for _ in range(AUDIT_TRIALS)]))  # fmt: skip
    assert violation(samples[0], samples[1], 1.0) is None


# --- keys without a public set: DP partition selection ----------------------------------------

PRIVATE_STATIONS = DatasetPolicy(**{**POLICY.__dict__, "key_sets": {"event": ["in", "out"]}})
COUNT_BY_PRIVATE_STATION = {"group_by": ["station"], "aggregates": [{"name": "n", "op": "count"}],
                            "max_rows_per_unit": 2, "max_groups_per_unit": 1}  # fmt: skip


def crowd(units_per_station: dict[int, int], first_card: int = 0) -> pd.DataFrame:
    rows, card = [], first_card
    for station, units in units_per_station.items():
        for _ in range(units):
            rows.append((card, "2026-03-02 08:00", station, 2.0, "out"))
            card += 1
    return frame(rows)


def test_delta_is_required_with_a_private_key_and_refused_without_one() -> None:
    private = parse_plan(COUNT_BY_PRIVATE_STATION, PRIVATE_STATIONS)
    assert not private.public
    with pytest.raises(PlanError, match="needs delta"):
        plan_query_noise(private, 1.0)
    with pytest.raises(PlanError, match="needs delta"):
        plan_query_noise(private, 1.0, delta=0.5)
    public = parse_plan(COUNT_BY_STATION, POLICY)
    with pytest.raises(PlanError, match="drop it"):
        plan_query_noise(public, 1.0, delta=1e-8)
    noise = {q.quantity: q for q in plan_query_noise(private, 1.0, delta=1e-6)}
    assert noise["keys"].epsilon == noise["count"].epsilon == 0.5  # selection takes a share
    assert noise["keys"].error_bound_95 == selection_threshold(1, 0.5, 1e-6)


def test_selection_threshold_matches_its_tail_bound() -> None:
    """G keys of one unit each pass with probability G a^(t-1) / (1 + a): at most δ at t, and
    more than δ at t - 1 (the threshold is the smallest that works)."""
    for groups, epsilon, delta in [(1, 1.0, 1e-6), (3, 0.5, 1e-8), (10, 0.1, 1e-5)]:
        t = selection_threshold(groups, epsilon, delta)
        a = math.exp(-epsilon / groups)
        assert groups * a ** (t - 1) / (1 + a) <= delta
        assert groups * a ** (t - 2) / (1 + a) > delta


def keyed(partials: Partials) -> dict[tuple, tuple[int, int]]:
    assert partials.keys is not None and partials.units is not None
    rows = zip(partials.keys, partials.counts, partials.units, strict=True)
    return {key: (int(count), int(units)) for key, count, units in rows}


def test_private_keys_add_up_over_blocks_and_count_distinct_units() -> None:
    data = random_trips(90, seed=17)
    plan = parse_plan(
        {
            **COUNT_BY_PRIVATE_STATION,
            "group_by": ["station", "event"],
            "max_groups_per_unit": 2,
            "max_rows_per_unit": 5,
        },
        PRIVATE_STATIONS,
    )
    whole = block_partials(plan, data, "card")
    blocks = [data[data["card"] % 4 == b] for b in range(4)]
    combined = combine_partials(block_partials(plan, block, "card") for block in blocks)
    assert whole.keys is not None and combined.keys is not None
    assert keyed(combined) == keyed(whole)
    assert {station for station, _ in whole.keys} == set(data["station"])
    for (station, event), (_, units) in keyed(whole).items():
        riders = data[(data["station"] == station) & (data["event"] == event)]["card"].unique()
        assert units <= len(riders)  # bounding can only drop a unit from a key


@pytest.mark.parametrize("groups", [1, 2])
def test_removing_a_unit_moves_unit_counts_by_at_most_one_per_key_and_g_in_all(
    groups: int,
) -> None:
    data = random_trips(50, seed=groups)
    plan = parse_plan({**COUNT_BY_PRIVATE_STATION, "max_groups_per_unit": groups,
                       "group_by": ["station", HOUR]}, PRIVATE_STATIONS)  # fmt: skip
    full = block_partials(plan, data, "card")
    units = dict(zip(full.keys, full.units, strict=True))
    for unit in data["card"].unique():
        without = block_partials(plan, data[data["card"] != unit], "card")
        rest = dict(zip(without.keys, without.units, strict=True))
        moved = [abs(units.get(k, 0) - rest.get(k, 0)) for k in set(units) | set(rest)]
        assert max(moved) <= 1 and sum(moved) <= groups


def test_popular_keys_are_released_and_a_key_of_one_unit_never_is() -> None:
    """200 releases; station 9 holds one card riding 30 times. A correct threshold releases it
    with probability at most δ = 1e-6 per release (false-failure rate < 2e-4); stations 1-3
    with 400 cards each pass except with probability < 1e-30."""
    data = pd.concat([crowd({1: 400, 2: 400, 3: 400}),
                      frame([(9999, "2026-03-02 09:00", 9, 3.0, "out")] * 30)])  # fmt: skip
    plan = parse_plan(COUNT_BY_PRIVATE_STATION, PRIVATE_STATIONS)
    partials = block_partials(plan, data, "card")
    for _ in range(200):
        released = release_query(plan, partials, 1.0, delta=1e-6)
        assert [c.keys["station"] for c in released] == [1, 2, 3]
        assert all(abs(c.value - 400) < 100 for c in released)


def test_more_keys_than_allowed_keeps_the_most_populous() -> None:
    data = crowd({station: 100 + 60 * station for station in range(1, 13)})
    policy = DatasetPolicy(**{**PRIVATE_STATIONS.__dict__, "max_cells": 4})
    plan = parse_plan(COUNT_BY_PRIVATE_STATION, policy)
    assert plan.max_partitions == 4
    released = release_query(plan, block_partials(plan, data, "card"), 2.0, delta=1e-6)
    assert [c.keys["station"] for c in released] == [9, 10, 11, 12]


def test_private_keys_are_plain_json_values() -> None:
    data = random_trips(30, seed=3)
    plan = parse_plan({**COUNT_BY_PRIVATE_STATION, "group_by": [
        {"name": "day", "expr": {"col": "ts"}}, "station"]}, PRIVATE_STATIONS)  # fmt: skip
    partials = block_partials(plan, data, "card")
    assert partials.keys
    for day, station in partials.keys:
        assert isinstance(day, str) and day.startswith("2026-03-02T")
        assert type(station) is int


@pytest.mark.slow  # a statistical audit (tests/dp_audit.py)
def test_audit_partition_selection_end_to_end_on_neighbouring_datasets() -> None:
    """Station 2's release (its noisy count, or -1 when the key is not selected), with and
    without a card riding it 30 times: (ε, δ)-DP with δ = 1e-6, far below what 20,000 trials
    resolve, so the ε test of the audit applies as stated."""
    base = crowd({1: 40, 2: 12, 3: 40})
    heavy = frame([(9999, f"2026-03-02 {h % 24:02d}:15", 2, 9.0, "out") for h in range(30)])
    plan = parse_plan(COUNT_BY_PRIVATE_STATION, PRIVATE_STATIONS)
    samples = []
    for data in (pd.concat([base, heavy], ignore_index=True), base):
        partials = block_partials(plan, data, "card")
        draws = []
        for _ in range(AUDIT_TRIALS):
            cells = release_query(plan, partials, 1.0, delta=1e-6)
            draws.append(next((c.value for c in cells if c.keys["station"] == 2), -1.0))
        samples.append(np.array(draws))
    assert (samples[0] == -1).any() and (samples[0] >= 0).any()  # the threshold is in play
    assert violation(samples[0], samples[1], 1.0) is None

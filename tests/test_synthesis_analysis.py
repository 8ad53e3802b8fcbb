"""The fidelity report's analysis: a query plan's exact answers (privacy/exact.py) on the full
data beside the synthetic sample's, a same-size sample of real rows' and independent
marginals', with counts scaled to the full data. Checked against pandas on the same rows, and
through ``synthesize_blocks`` on a small partitioned table (no server, no Docker)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from privacy.exact import exact_answers, histogram_quantile, scaled
from privacy.partials import block_partials
from privacy.query_plan import DatasetPolicy, parse_plan
from privacy.synthesis import SynthesisError
from runner.blocks import partition_dataset
from runner.synthesize import (
    Declaration,
    SynthesisSpec,
    attributes_for,
    default_analysis,
    synthesize_blocks,
)

COLUMNS = {"card": "int64", "station": "int64", "line": "string", "fare": "double"}
DECLARED = Declaration(COLUMNS, "card", {"fare": [0.0, 10.0]},
                       {"station": list(range(6)), "line": ["a", "b"]})  # fmt: skip
POLICY = DatasetPolicy(COLUMNS, "card", {"fare": (0.0, 10.0)}, DECLARED.key_sets,
                       max_rows_per_unit=10**6, max_groups_per_unit=10**6)  # fmt: skip


def frame(rows: int = 3_000, seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    station = rng.integers(0, 6, rows)
    return pd.DataFrame({
        "card": rng.integers(0, rows // 4, rows),
        "station": station,
        "line": np.where(station < 3, "a", "b"),
        "fare": np.round(np.clip(rng.normal(2 + station, 1.0), 0, 10), 2),
    })  # fmt: skip


def test_exact_answers_equal_pandas_on_the_same_rows() -> None:
    data = frame()
    plan = parse_plan({"group_by": ["station"], "aggregates": [
        {"name": "n", "op": "count"},
        {"name": "total", "op": "sum", "column": "fare", "lo": 0, "hi": 10},
        {"name": "mean", "op": "mean", "column": "fare", "lo": 0, "hi": 10},
        {"name": "var", "op": "variance", "column": "fare", "lo": 0, "hi": 10},
        {"name": "median", "op": "quantile", "column": "fare", "lo": 0, "hi": 10, "q": 0.5,
         "bins": 1000},
    ]}, POLICY)  # fmt: skip
    answers = exact_answers(plan, block_partials(plan, data, "card"))
    grouped = data.groupby("station")["fare"]
    for station in range(6):
        fares = grouped.get_group(station)
        assert answers[((station,), "n")] == len(fares)
        assert answers[((station,), "total")] == pytest.approx(fares.sum(), abs=1e-6)
        assert answers[((station,), "mean")] == pytest.approx(fares.mean(), abs=1e-9)
        assert answers[((station,), "var")] == pytest.approx(fares.var(ddof=0), abs=1e-6)
        assert answers[((station,), "median")] == pytest.approx(fares.median(), abs=0.02)


def test_an_empty_cell_has_no_mean_and_counts_zero() -> None:
    data = frame()
    data = data[data["station"] != 4]
    plan = parse_plan({"group_by": ["station"], "aggregates": [
        {"name": "n", "op": "count"},
        {"name": "mean", "op": "mean", "column": "fare", "lo": 0, "hi": 10},
    ]}, POLICY)  # fmt: skip
    answers = exact_answers(plan, block_partials(plan, data, "card"))
    assert answers[((4,), "n")] == 0 and answers[((4,), "mean")] is None
    assert histogram_quantile(np.zeros(5), 0, 1, 0.5) is None
    doubled = scaled(answers, plan, 2.0)
    assert doubled[((0,), "n")] == 2 * answers[((0,), "n")]
    assert doubled[((0,), "mean")] == answers[((0,), "mean")]  # means do not grow


def test_the_default_analysis_groups_by_the_smallest_key_set_and_averages_the_numbers() -> None:
    plan = default_analysis(DECLARED)
    assert plan["group_by"] == ["line"]  # 2 values, fewer than the 6 stations
    assert plan["aggregates"] == [
        {"name": "rows", "op": "count"},
        {"name": "mean_fare", "op": "mean", "column": "fare", "lo": 0.0, "hi": 10.0},
    ]
    bare = Declaration({"card": "int64", "flag": "bool"}, "card", {}, {})
    assert default_analysis(bare) == {"group_by": [], "aggregates": [
        {"name": "rows", "op": "count"}]}  # fmt: skip


def test_a_bad_analysis_plan_is_refused_before_any_data_naming_the_fix() -> None:
    for plan, says in [
        ({"aggregates": [{"name": "m", "op": "mean", "column": "nope", "lo": 0, "hi": 1}]},
         "must name a numeric column"),
        ({"group_by": ["card"], "aggregates": [{"name": "n", "op": "count"}]},
         "privacy unit"),
        ({"aggregates": []}, "at least one aggregate"),
    ]:  # fmt: skip
        with pytest.raises(SynthesisError) as refused:
            attributes_for(DECLARED, SynthesisSpec(epsilon=1.0, analysis=plan))
        assert str(refused.value).startswith("the analysis plan: ") and says in str(refused.value)


@pytest.fixture(scope="module")
def layout(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    root = tmp_path_factory.mktemp("analysis")
    source = root / "full.parquet"
    pq.write_table(pa.Table.from_pandas(frame(), preserve_index=False), source)
    return partition_dataset(source, root / "blocks", "card", 3)


def _summary(report: dict, aggregate: str) -> dict:
    return next(r for r in report["analysis"]["summary"] if r["aggregate"] == aggregate)


@pytest.mark.slow
def test_a_sample_as_large_as_the_data_has_the_exact_answer_and_synthesis_does_not(
    layout: Path,
) -> None:
    """With as many rows as the data, the real-row sample is the data: error zero exactly
    (the comparison itself is exact). The DP tables are not the data."""
    spec = SynthesisSpec(epsilon=1.0, rows=3_000, rows_per_unit=20, analysis={
        "group_by": ["station"], "aggregates": [
            {"name": "n", "op": "count"},
            {"name": "mean", "op": "mean", "column": "fare", "lo": 0, "hi": 10}]})  # fmt: skip
    report = synthesize_blocks(layout, DECLARED, spec).report
    analysis = report["analysis"]
    assert analysis["default"] is False and analysis["cells_total"] == 12
    assert analysis["full_rows"] == 3_000 and len(analysis["cells"]) == 12
    for name in ("n", "mean"):
        row = _summary(report, name)
        assert row["real_rows"] == 0.0 and row["real_rows_missing"] == 0
        assert row["synthetic"] is not None and row["independent"] is not None
    assert _summary(report, "n")["synthetic"] > 0  # noise moved some station's count
    full = {c["keys"]["station"]: c["full"] for c in analysis["cells"] if c["aggregate"] == "n"}
    assert full == frame().groupby("station").size().astype(float).to_dict()


@pytest.mark.slow
def test_a_smaller_sample_is_compared_at_the_full_datas_scale(layout: Path) -> None:
    """The default analysis (rows and mean fare by line) on a 1,500-row sample: the real
    rows' counts, doubled, land near the full data's (a uniform half of 1,500 rows a line:
    off by far less than half)."""
    report = synthesize_blocks(layout, DECLARED, SynthesisSpec(epsilon=2.0, rows=1_500)).report
    analysis = report["analysis"]
    assert analysis["default"] is True and analysis["plan"] == default_analysis(DECLARED)
    rows = _summary(report, "rows")
    assert rows["full_mean_abs"] == 1_500.0  # 3,000 rows over two lines
    assert rows["real_rows"] < 200 and rows["real_rows_relative"] < 0.15
    assert {c["keys"]["line"] for c in analysis["cells"]} == {"a", "b"}

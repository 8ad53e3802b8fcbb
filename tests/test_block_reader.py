"""The query path's block reader gives exactly what pd.read_parquet gives, for every kind of
column: numbers, naive and zoned timestamps, nulls, strings, booleans, dictionaries."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from runner.block_reader import read_block_columns


def test_every_column_kind_reads_as_pandas_reads_it(tmp_path: Path) -> None:
    table = pa.table({
        "card": pa.array([3, 1, 2], pa.int64()),
        "small": pa.array([1, 2, 3], pa.int16()),
        "with_null": pa.array([1, None, 3], pa.int32()),
        "fare": pa.array([1.5, np.nan, 2.0], pa.float64()),
        "fare_null": pa.array([1.5, None, 2.0], pa.float64()),
        "ts": pa.array([0, 10**6, 2 * 10**6], pa.timestamp("us")),
        "ts_zoned": pa.array([0, 10**6, None], pa.timestamp("us", tz="Asia/Shanghai")),
        "event": pa.array(["in", None, "out"]),
        "flag": pa.array([True, False, None]),
        "line": pa.array(["a", "b", "a"]).dictionary_encode(),
    })  # fmt: skip
    path = tmp_path / "block.parquet"
    pq.write_table(table, path)
    for columns in (list(table.column_names), ["ts", "card"], ["fare_null"]):
        expected = pd.read_parquet(path, columns=columns)
        pd.testing.assert_frame_equal(read_block_columns(path, columns), expected)

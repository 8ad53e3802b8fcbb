"""Reading a few columns of one block for trusted query code, fast.

``pd.read_parquet`` spends as long on pandas metadata as on the data for a 10k-row block;
reading with pyarrow on one thread and handing columns over as numpy arrays halves the time.
Only types numpy holds exactly take that path (numbers and timestamps without nulls); any
other column goes through pyarrow's own pandas conversion, so values, dtypes and missing
values are what ``pd.read_parquet`` gives (tested column by column).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq


def read_block_columns(path: Path, columns: list[str]) -> pd.DataFrame:
    # pre_buffer (on by default) plans coalesced async reads: worth it on remote storage, but
    # on a local disk it costs more than the read itself for a block this size (2.5x here).
    table = pq.ParquetFile(path, pre_buffer=False).read(columns=columns, use_threads=False)
    data = {}
    for name in columns:
        column = table.column(name)
        data[name] = column.to_numpy() if _numpy_exact(column) else column.to_pandas()
    return pd.DataFrame(data, copy=False)


def _numpy_exact(column: pa.ChunkedArray) -> bool:
    """Numbers and naive timestamps without nulls convert to numpy exactly as pandas would."""
    kind = column.type
    if column.null_count:
        return False
    if pa.types.is_timestamp(kind):
        return kind.tz is None
    return pa.types.is_integer(kind) or pa.types.is_floating(kind)

"""The zygote decodes blocks with Arrow on one thread instead of ``pandas.read_parquet``: the
frame a contestant's ``analyze`` gets must be exactly the one ``read_parquet`` gives on the
public sample at home (same dtypes, values and index)."""

from __future__ import annotations

import importlib.util
import io
from pathlib import Path
from types import ModuleType

import numpy as np
import pandas as pd
import pytest

ZYGOTE = Path(__file__).resolve().parents[1] / "images" / "runner" / "zygote.py"


@pytest.fixture(scope="module")
def zygote() -> ModuleType:
    spec = importlib.util.spec_from_file_location("unseen_zygote", ZYGOTE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("dataset", ["transport_cards", "taxi_gps", "bus_events"])
def test_blocks_decode_as_read_parquet_does(zygote: ModuleType, soda, dataset: str) -> None:
    path = soda.full / str(soda.entries(soda.full)[dataset]["file"])
    raw = path.read_bytes()
    pd.testing.assert_frame_equal(zygote.read_block(raw), pd.read_parquet(io.BytesIO(raw)))


def test_nulls_and_odd_types_decode_as_read_parquet_does(zygote: ModuleType) -> None:
    frame = pd.DataFrame(
        {
            "i": pd.array([1, None, 3], dtype="Int64"),
            "f": [1.5, np.nan, -2.0],
            "s": ["a", None, "ccc"],
            "b": [True, False, True],
            "t": pd.to_datetime(["2026-01-01 08:00", None, "2026-01-02 09:30"]),
            "c": pd.Categorical(["x", "y", "x"]),
        },
        index=pd.Index([10, 11, 12], name="row"),
    )
    buffer = io.BytesIO()
    frame.to_parquet(buffer)
    raw = buffer.getvalue()
    pd.testing.assert_frame_equal(zygote.read_block(raw), pd.read_parquet(io.BytesIO(raw)))

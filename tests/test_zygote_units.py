"""Pieces of the in-container zygote, run here in-process.

It decodes blocks with Arrow on one thread instead of ``pandas.read_parquet``: the frame a
contestant's ``analyze`` gets must be exactly the one ``read_parquet`` gives on the public
sample at home (same dtypes, values and index). It imports ahead only allowed modules.
"""

from __future__ import annotations

import importlib.util
import io
import sys
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
    sys.modules[spec.name] = module  # dataclasses look their module up there
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


def test_preload_imports_only_allowed_modules_the_code_names(
    zygote: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    code = tmp_path / "analysis.py"
    code.write_text(
        "import this\nimport json, statistics as st\nfrom sklearn import linear_model\n"
        "from sklearn.linear_model import LinearRegression\nfrom . import sibling\n"
        "def analyze(df):\n    import antigravity\n    return {}\n"
    )
    monkeypatch.setattr(zygote, "CODE_PATH", str(code))
    before = set(sys.modules)
    loaded = zygote.preload({"json", "statistics", "sklearn"})
    assert loaded == ["json", "sklearn", "sklearn.linear_model", "statistics"]
    assert not {"this", "antigravity"} & (set(sys.modules) - before)


def test_preload_of_code_that_does_not_parse_imports_nothing(
    zygote: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    code = tmp_path / "analysis.py"
    code.write_text("import json\ndef analyze(df:\n")
    monkeypatch.setattr(zygote, "CODE_PATH", str(code))
    assert zygote.preload({"json"}) == []


def test_a_frame_goes_out_whole_even_through_a_full_non_blocking_channel(
    zygote: ModuleType,
) -> None:
    """gVisor's host fds take part of a large write (a 256 KiB answer went out cut short and
    the host waited out its grace: a timed-out block ended LOST); ``send`` writes it all."""
    import json
    import os
    import struct
    import threading

    read_end, write_end = os.pipe()
    os.set_blocking(write_end, False)  # short writes and EAGAIN, as a full pipe gives
    message = {"stdout": "z" * (1 << 20)}
    received = bytearray()

    def drain() -> None:
        while chunk := os.read(read_end, 4096):
            received.extend(chunk)

    reader = threading.Thread(target=drain)
    reader.start()
    zygote.send(write_end, message)
    os.close(write_end)
    reader.join(10)
    os.close(read_end)
    (size,) = struct.unpack(">I", received[:4])
    assert size == len(received) - 4
    assert json.loads(bytes(received[4:])) == message

"""Keyed-hash partitioning: each privacy unit in exactly one block, nothing lost, key private."""

from __future__ import annotations

import stat
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from runner.blocks import (
    KEY_FILE,
    PartitionError,
    block_of,
    load_layout,
    parquet_columns,
    partition_dataset,
)


@pytest.fixture
def source(tmp_path: Path) -> Path:
    frame = pd.DataFrame(
        {
            "card": [i % 37 for i in range(1000)],
            "fare": [float(i % 9) for i in range(1000)],
            "station": [f"s{i % 5}" for i in range(1000)],
        }
    )
    path = tmp_path / "full.parquet"
    frame.to_parquet(path)
    return path


def read_blocks(directory: Path, blocks: int) -> list[pd.DataFrame]:
    layout = load_layout(directory)
    assert layout.blocks == blocks
    return [pd.read_parquet(layout.block_path(i)) for i in range(blocks)]


def test_every_unit_lives_in_exactly_one_block(source: Path, tmp_path: Path) -> None:
    layout = partition_dataset(source, tmp_path / "b", "card", 8)
    frames = read_blocks(tmp_path / "b", 8)
    owners: dict[int, set[int]] = {}
    for index, frame in enumerate(frames):
        for card in frame["card"].unique():
            owners.setdefault(int(card), set()).add(index)
    assert len(owners) == 37 == layout.units
    assert all(len(blocks) == 1 for blocks in owners.values())


def test_no_row_is_lost_or_duplicated(source: Path, tmp_path: Path) -> None:
    partition_dataset(source, tmp_path / "b", "card", 8)
    combined = pd.concat(read_blocks(tmp_path / "b", 8), ignore_index=True)
    original = pd.read_parquet(source)
    key = ["card", "fare", "station"]
    pd.testing.assert_frame_equal(
        combined.sort_values(key).reset_index(drop=True),
        original.sort_values(key).reset_index(drop=True),
    )


def test_blocks_are_clustered_by_unit(source: Path, tmp_path: Path) -> None:
    partition_dataset(source, tmp_path / "b", "card", 4)
    for frame in read_blocks(tmp_path / "b", 4):
        assert frame["card"].is_monotonic_increasing


def test_assignment_follows_the_secret_key(source: Path, tmp_path: Path) -> None:
    partition_dataset(source, tmp_path / "b", "card", 8)
    key = (tmp_path / "b" / KEY_FILE).read_bytes()
    assert len(key) == 32
    assert stat.S_IMODE((tmp_path / "b" / KEY_FILE).stat().st_mode) == 0o600
    frames = read_blocks(tmp_path / "b", 8)
    for index, frame in enumerate(frames):
        assert all(block_of(key, int(card), 8) == index for card in frame["card"].unique())
    other = bytes(32)
    assert [block_of(key, c, 8) for c in range(37)] != [block_of(other, c, 8) for c in range(37)]


def test_int_and_string_units_do_not_collide() -> None:
    key = b"k" * 32
    assert [block_of(key, 7, 1 << 30)] != [block_of(key, "7", 1 << 30)]


def test_bad_inputs_are_refused_with_the_fix(source: Path, tmp_path: Path) -> None:
    with pytest.raises(PartitionError, match="columns are"):
        partition_dataset(source, tmp_path / "x", "nope", 4)
    with pytest.raises(PartitionError, match="between"):
        partition_dataset(source, tmp_path / "x", "card", 0)
    garbage = tmp_path / "garbage.parquet"
    garbage.write_bytes(b"not parquet")
    with pytest.raises(PartitionError, match="cannot read"):
        partition_dataset(garbage, tmp_path / "x", "card", 4)
    with pytest.raises(PartitionError, match="cannot read"):
        parquet_columns(garbage)
    nulls = tmp_path / "nulls.parquet"
    pd.DataFrame({"card": [1, None, 3]}, dtype="Int64").to_parquet(nulls)
    with pytest.raises(PartitionError, match="missing values"):
        partition_dataset(nulls, tmp_path / "y", "card", 2)


def test_schema_is_read_from_the_footer(source: Path) -> None:
    columns, rows = parquet_columns(source)
    assert rows == 1000 == pq.ParquetFile(source).metadata.num_rows
    assert columns == {"card": "int64", "fare": "double", "station": "large_string"}

"""Partition a dataset once into k disjoint blocks by a keyed hash of its privacy unit.

Block membership is ``HMAC-SHA256(key, unit) mod k``: every row of one person (card, taxi, bus)
lands in the same block, and without the per-dataset key nobody — a contestant included — can
steer a chosen unit into a chosen block. Each block is a Parquet file sorted by the unit, so
per-unit work needs no global sort later. The key lives next to the blocks on the data node
(mode 0600) and never leaves it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

KEY_FILE = "block.key"
LAYOUT_FILE = "layout.json"
MAX_BLOCKS = 100_000


class PartitionError(ValueError):
    """The source cannot be partitioned as asked; the message names the fix."""


@dataclass(frozen=True)
class BlockLayout:
    """Where a dataset's blocks live and how many rows each has (row counts stay on the node)."""

    directory: Path
    blocks: int
    rows: int
    units: int

    def block_path(self, index: int) -> Path:
        if not 0 <= index < self.blocks:
            raise IndexError(f"block {index} outside 0..{self.blocks - 1}")
        return self.directory / f"block-{index:05d}.parquet"


def _unit_bytes(value: object) -> bytes:
    """Canonical bytes of a unit id, typed so that 7 and "7" never collide."""
    if isinstance(value, bool | np.bool_):
        raise PartitionError("a boolean column cannot be a privacy unit")
    if isinstance(value, int | np.integer):
        return b"i:" + str(int(value)).encode()
    return b"s:" + str(value).encode("utf-8")


def block_of(key: bytes, value: object, blocks: int) -> int:
    """Block index of one unit: first 8 bytes of its HMAC, big-endian, modulo ``blocks``."""
    digest = hmac.new(key, _unit_bytes(value), hashlib.sha256).digest()
    return int.from_bytes(digest[:8], "big") % blocks


def _load_or_create_key(directory: Path) -> bytes:
    path = directory / KEY_FILE
    if path.exists():
        return path.read_bytes()
    key = secrets.token_bytes(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(key)
    return key


def partition_dataset(
    source: Path,
    directory: Path,
    unit_column: str,
    blocks: int,
    progress: Callable[[int, int], None] | None = None,
) -> BlockLayout:
    """Write ``blocks`` Parquet files under ``directory`` (created, must be empty or absent)."""
    if not 1 <= blocks <= MAX_BLOCKS:
        raise PartitionError(f"blocks must be between 1 and {MAX_BLOCKS}; got {blocks}")
    try:
        table = pq.read_table(source)
    except (OSError, pa.ArrowInvalid) as exc:
        raise PartitionError(f"cannot read {source} as Parquet: {exc}") from exc
    if unit_column not in table.column_names:
        raise PartitionError(
            f"privacy-unit column {unit_column!r} not in {source.name}; "
            f"columns are: {', '.join(table.column_names)}"
        )
    if table.column(unit_column).null_count:
        raise PartitionError(f"privacy-unit column {unit_column!r} has missing values")

    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    key = _load_or_create_key(directory)

    units = table.column(unit_column)
    uniques = pc.unique(units)
    unique_blocks = np.fromiter(
        (block_of(key, value, blocks) for value in uniques.to_pylist()),
        dtype=np.int64,
        count=len(uniques),
    )
    row_blocks = unique_blocks[pc.index_in(units, value_set=uniques).to_numpy()]
    table = table.append_column("__block", pa.array(row_blocks))
    table = table.sort_by([("__block", "ascending"), (unit_column, "ascending")])
    ordered = table.column("__block").to_numpy()
    table = table.drop_columns(["__block"])
    bounds = np.searchsorted(ordered, np.arange(blocks + 1), side="left")

    layout = BlockLayout(directory, blocks, table.num_rows, len(uniques))
    for index in range(blocks):
        start, stop = int(bounds[index]), int(bounds[index + 1])
        path = layout.block_path(index)
        pq.write_table(table.slice(start, stop - start), path)
        os.chmod(path, 0o644)  # readable by the sandbox's unprivileged uid once bind-mounted
        if progress is not None:
            progress(index + 1, blocks)
    (directory / LAYOUT_FILE).write_text(
        json.dumps({"blocks": blocks, "rows": layout.rows, "units": layout.units})
    )
    return layout


def load_layout(directory: Path) -> BlockLayout:
    """Read a partitioned dataset's layout back; raises if it was never completed."""
    meta = json.loads((directory / LAYOUT_FILE).read_text())
    return BlockLayout(directory, int(meta["blocks"]), int(meta["rows"]), int(meta["units"]))


def parquet_columns(path: Path) -> tuple[dict[str, str], int]:
    """Column name → Arrow type string, and the row count, read from the Parquet footer only."""
    try:
        parquet = pq.ParquetFile(path)
    except (OSError, pa.ArrowInvalid) as exc:
        raise PartitionError(f"cannot read {path} as Parquet: {exc}") from exc
    schema = parquet.schema_arrow
    return {name: str(schema.field(name).type) for name in schema.names}, parquet.metadata.num_rows


NUMERIC_TYPE_PREFIXES = ("int", "uint", "float", "double", "decimal", "timestamp", "date")


def is_numeric_type(arrow_type: str) -> bool:
    return arrow_type.startswith(NUMERIC_TYPE_PREFIXES)

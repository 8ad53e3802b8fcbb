"""A summary of many noised cells, read before any of them: how many, over which keys, and
per output the ε, the noise scale and the range and total of the values. A 1,440-cell query
is judged from this and its chart; the table below is paged. The results page reads its rows
through the same cells."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from api.schemas import ReleasedOut


@dataclass(frozen=True)
class OutputSummary:
    name: str
    cells: int
    epsilon: float
    noise_scale: tuple[float, float]
    error_bound_95: tuple[float, float]
    low: float
    high: float
    total: float


@dataclass(frozen=True)
class CellSummary:
    cells: int
    #: Each group key with its number of distinct values, in the plan's order.
    keys: dict[str, int]
    outputs: list[OutputSummary]

    @property
    def epsilon(self) -> float:
        return sum(o.epsilon for o in self.outputs)


def _span(values: list[float]) -> tuple[float, float]:
    return min(values), max(values)


def summarize(cells: Sequence[ReleasedOut]) -> CellSummary:
    """Per output (in the order the job declared them) the cells' ε, noise and value range."""
    distinct: dict[str, dict[object, None]] = {}
    for cell in cells:
        for key, value in (cell.keys or {}).items():
            distinct.setdefault(key, {})[value] = None
    outputs = []
    for name in dict.fromkeys(c.name for c in cells):
        mine = [c for c in cells if c.name == name]
        values = [c.value for c in mine]
        outputs.append(
            OutputSummary(
                name=name,
                cells=len(mine),
                epsilon=max(c.epsilon for c in mine),  # every cell of an output carries its ε
                noise_scale=_span([c.noise_scale for c in mine]),
                error_bound_95=_span([c.error_bound_95 for c in mine]),
                low=min(values),
                high=max(values),
                total=sum(values),
            )
        )
    return CellSummary(len(cells), {k: len(v) for k, v in distinct.items()}, outputs)


def as_cells(rows: list[dict[str, Any]]) -> list[ReleasedOut]:
    """Rows of the results table (``GET /v1/results``) as the cells a job released."""
    fields = ("keys", "value", "noise_scale", "error_bound_95", "epsilon")
    return [ReleasedOut(name=row["output"], **{k: row[k] for k in fields}) for row in rows]


def released_jobs(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One line per released job of the results table: team, dataset, mode, its outputs'
    names and its number of cells."""
    found: dict[str, dict[str, Any]] = {}
    for row in rows:
        entry = found.setdefault(row["job"], {"job": row["job"], "team": row["team"],
                                              "dataset": row["dataset"], "mode": row["mode"],
                                              "outputs": {}, "cells": 0})  # fmt: skip
        entry["outputs"][row["output"]] = None
        entry["cells"] += 1
    return list(found.values())

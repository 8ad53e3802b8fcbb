"""A small builder for query-mode plans: Python expressions in, the API's JSON plan out.

    from client.plans import Query, col, hour

    plan = (
        Query()
        .where(col("event") == "out")
        .group_by("station_id", hour=hour(col("ts")))
        .count("trips")
        .mean("mean_fare", "fare", lo=0, hi=15)
        .bound(rows_per_unit=4, groups_per_unit=2)
    )
    client.query("transport_cards", plan.to_dict(), epsilon=1.0)   # the API's dict
    Path("plan.json").write_text(plan.to_json())                     # for `unseen query`

Nothing here evaluates anything: it only writes the JSON the server validates and runs.
"""

from __future__ import annotations

import json
from typing import Any

Literal = int | float | str | bool


class Expr:
    """An expression of the plan language; Python operators build bigger ones."""

    __hash__ = None  # type: ignore[assignment]  # == builds an expression, not a bool

    def __init__(self, tree: dict[str, Any]) -> None:
        self.tree = tree

    def _op(self, op: str, *others: Expr | Literal) -> Expr:
        return Expr({"op": op, "args": [self.tree, *(_tree(o) for o in others)]})

    def __eq__(self, other: object) -> Expr:  # type: ignore[override]
        return self._op("==", other)  # type: ignore[arg-type]

    def __ne__(self, other: object) -> Expr:  # type: ignore[override]
        return self._op("!=", other)  # type: ignore[arg-type]

    def __lt__(self, other: Expr | Literal) -> Expr:
        return self._op("<", other)

    def __le__(self, other: Expr | Literal) -> Expr:
        return self._op("<=", other)

    def __gt__(self, other: Expr | Literal) -> Expr:
        return self._op(">", other)

    def __ge__(self, other: Expr | Literal) -> Expr:
        return self._op(">=", other)

    def __add__(self, other: Expr | Literal) -> Expr:
        return self._op("+", other)

    def __sub__(self, other: Expr | Literal) -> Expr:
        return self._op("-", other)

    def __mul__(self, other: Expr | Literal) -> Expr:
        return self._op("*", other)

    def __truediv__(self, other: Expr | Literal) -> Expr:
        return self._op("/", other)

    def __and__(self, other: Expr) -> Expr:
        return self._op("and", other)

    def __or__(self, other: Expr) -> Expr:
        return self._op("or", other)

    def __invert__(self) -> Expr:
        return Expr({"op": "not", "args": [self.tree]})

    def between(self, lo: Literal, hi: Literal) -> Expr:
        return self._op("between", lo, hi)

    def isin(self, values: list[Literal]) -> Expr:
        return Expr({"op": "isin", "args": [self.tree], "values": list(values)})


def _tree(value: Expr | Literal) -> dict[str, Any]:
    return value.tree if isinstance(value, Expr) else {"lit": value}


def col(name: str) -> Expr:
    return Expr({"col": name})


def lit(value: Literal) -> Expr:
    return Expr({"lit": value})


def hour(value: Expr) -> Expr:
    return Expr({"op": "hour", "args": [value.tree]})


def weekday(value: Expr) -> Expr:
    return Expr({"op": "weekday", "args": [value.tree]})


class Query:
    """Chainable: each call returns the same builder."""

    def __init__(self) -> None:
        self._filter: Expr | None = None
        self._group_by: list[Any] = []
        self._aggregates: list[dict[str, Any]] = []
        self._bounds: dict[str, int] = {}

    def where(self, condition: Expr) -> Query:
        self._filter = condition if self._filter is None else self._filter & condition
        return self

    def group_by(self, *columns: str, **derived: Expr) -> Query:
        self._group_by += list(columns)
        self._group_by += [{"name": name, "expr": expr.tree} for name, expr in derived.items()]
        return self

    def count(self, name: str) -> Query:
        self._aggregates.append({"name": name, "op": "count"})
        return self

    def sum(
        self, name: str, column: str, lo: float | None = None, hi: float | None = None
    ) -> Query:
        return self._numeric("sum", name, column, lo, hi)

    def mean(
        self, name: str, column: str, lo: float | None = None, hi: float | None = None
    ) -> Query:
        return self._numeric("mean", name, column, lo, hi)

    def variance(
        self, name: str, column: str, lo: float | None = None, hi: float | None = None
    ) -> Query:
        return self._numeric("variance", name, column, lo, hi)

    def quantile(
        self,
        name: str,
        column: str,
        q: float,
        lo: float | None = None,
        hi: float | None = None,
        bins: int | None = None,
    ) -> Query:
        """``q`` in (0, 1): 0.5 for the median. All quantiles of a column share one noisy
        histogram of ``bins`` bins (server default 100), so asking for several costs no more."""
        extra: dict[str, Any] = {"q": q} if bins is None else {"q": q, "bins": bins}
        return self._numeric("quantile", name, column, lo, hi, **extra)

    def _numeric(
        self, op: str, name: str, column: str, lo: float | None, hi: float | None, **extra: Any
    ) -> Query:
        aggregate: dict[str, Any] = {"name": name, "op": op, "column": column, **extra}
        if lo is not None or hi is not None:
            aggregate.update(lo=lo, hi=hi)
        self._aggregates.append(aggregate)
        return self

    def bound(self, rows_per_unit: int | None = None, groups_per_unit: int | None = None) -> Query:
        if rows_per_unit is not None:
            self._bounds["max_rows_per_unit"] = rows_per_unit
        if groups_per_unit is not None:
            self._bounds["max_groups_per_unit"] = groups_per_unit
        return self

    def to_dict(self) -> dict[str, Any]:
        """The plan as the API takes it (``UnseenClient.query(dataset, plan.to_dict(), ...)``)."""
        plan: dict[str, Any] = {"group_by": self._group_by, "aggregates": self._aggregates}
        if self._filter is not None:
            plan["filter"] = self._filter.tree
        return {**plan, **self._bounds}

    def to_json(self, indent: int | None = 2) -> str:
        """The plan as JSON text: what ``unseen query PLAN.json`` and ``unseen estimate`` read."""
        return json.dumps(self.to_dict(), indent=indent)

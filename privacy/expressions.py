"""The safe expression language of query plans: JSON trees evaluated over a pandas frame.

No ``eval``, no attribute access, no user-chosen function names beyond this table: an
expression can only name columns of the dataset, literals, and the operators below. It is
evaluated by trusted code over whole columns at once.

    {"col": "fare"}                              a column
    {"lit": 3}                                   a literal (number, string, bool)
    {"op": "<", "args": [e1, e2]}                ==  !=  <  <=  >  >=  +  -  *  /
    {"op": "and" | "or", "args": [e1, e2, ...]}  {"op": "not", "args": [e]}
    {"op": "hour" | "weekday", "args": [e]}      of a timestamp column (0-23, 0=Monday-6)
    {"op": "between", "args": [e, lo, hi]}       lo <= e <= hi, literals lo and hi
    {"op": "isin", "args": [e], "values": [..]}  e is one of the literal values
    {"op": "bucket", "args": [e], "edges": [..]} index i of edges[i] <= e < edges[i+1]
                                                 (a histogram's bin; outside: no bin)
"""

from __future__ import annotations

import itertools
import operator
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pandas as pd

MAX_DEPTH = 16
MAX_ISIN = 10_000
MAX_EDGES = 1_001

_BINARY: dict[str, Callable[[Any, Any], Any]] = {
    "==": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
    "+": operator.add,
    "-": operator.sub,
    "*": operator.mul,
}
#: Functions whose result has a public, finite domain: usable as group-by keys without
#: partition selection.
KEY_DOMAINS: dict[str, list[int]] = {"hour": list(range(24)), "weekday": list(range(7))}
OPERATORS = (
    frozenset(_BINARY) | {"/", "and", "or", "not", "between", "isin", "bucket"} | set(KEY_DOMAINS)
)


class ExpressionError(ValueError):
    """An expression that is not in the language, or names an unknown column."""


def validate(expression: object, columns: Mapping[str, str], depth: int = 0) -> None:
    """Check an expression against the language and the dataset's columns, before any data."""
    if depth > MAX_DEPTH:
        raise ExpressionError(f"expression nested deeper than {MAX_DEPTH} levels")
    if not isinstance(expression, dict):
        raise ExpressionError(
            f"an expression is an object like {{'col': 'fare'}}; got {expression!r}"
        )
    if "col" in expression:
        if set(expression) != {"col"} or expression["col"] not in columns:
            known = ", ".join(sorted(columns))
            raise ExpressionError(f"unknown column {expression.get('col')!r}; columns: {known}")
        return
    if "lit" in expression:
        value = expression["lit"]
        if set(expression) != {"lit"} or not isinstance(value, (int, float, str, bool)):
            raise ExpressionError(f"a literal is a number, string or bool; got {value!r}")
        return
    op, args = expression.get("op"), expression.get("args")
    if op not in OPERATORS:
        raise ExpressionError(f"unknown operator {op!r}; use one of {', '.join(sorted(OPERATORS))}")
    if not isinstance(args, list) or not args:
        raise ExpressionError(f"{op!r} needs a non-empty list 'args'")
    arity = {"not": 1, "hour": 1, "weekday": 1, "isin": 1, "bucket": 1, "between": 3}.get(op)
    if arity is None and op not in ("and", "or"):
        arity = 2
    if arity is not None and len(args) != arity:
        raise ExpressionError(f"{op!r} takes {arity} argument(s); got {len(args)}")
    if op == "between" and not all("lit" in a for a in args[1:] if isinstance(a, dict)):
        raise ExpressionError("'between' takes a column expression and two literals")
    if op == "isin":
        values = expression.get("values")
        if not isinstance(values, list) or not 0 < len(values) <= MAX_ISIN:
            raise ExpressionError(f"'isin' needs 'values': a list of 1 to {MAX_ISIN} literals")
    if op == "bucket":
        edges = expression.get("edges")
        if (
            not isinstance(edges, list)
            or not 2 <= len(edges) <= MAX_EDGES
            or not all(isinstance(e, (int, float)) and not isinstance(e, bool) for e in edges)
            or any(not b > a for a, b in itertools.pairwise(edges))
        ):
            raise ExpressionError(
                f"'bucket' needs 'edges': 2 to {MAX_EDGES} increasing numbers, e.g. [0, 2, 4, 8]"
            )
    for arg in args:
        validate(arg, columns, depth + 1)


#: What a column's Arrow type is to the language; anything else can only be compared for
#: equality or tested with ``isin``.
NUMBER, BOOL, TEXT, TIME, OTHER = "number", "bool", "text", "time", "other"
_KIND_PREFIXES = (
    (("int", "uint", "float", "double", "halffloat", "decimal"), NUMBER),
    (("bool",), BOOL),
    (("string", "large_string", "utf8", "large_utf8"), TEXT),
    (("timestamp", "date"), TIME),
)
_ORDERED = {(NUMBER, NUMBER), (TEXT, TEXT), (TIME, TIME), (TIME, TEXT), (TEXT, TIME)}


def column_kind(arrow_type: str) -> str:
    """The language's kind of an Arrow type string such as ``int64`` or ``timestamp[us]``."""
    for prefixes, kind in _KIND_PREFIXES:
        if arrow_type.startswith(prefixes):
            return kind
    return OTHER


def kind_of(expression: dict[str, Any], columns: Mapping[str, str]) -> str:
    """The kind an expression (already ``validate``-d) evaluates to, or an ``ExpressionError``
    naming the column and its type where an operator cannot take it.

    Checked at submission so that no plan can fail on the data at run time: what a
    type mismatch would raise there (text compared with a number, the hour of a float) is a
    422 here instead, decided on the public schema alone.
    """
    if "col" in expression:
        return column_kind(columns[expression["col"]])
    if "lit" in expression:
        value = expression["lit"]
        return BOOL if isinstance(value, bool) else TEXT if isinstance(value, str) else NUMBER
    op, args = expression["op"], expression["args"]
    kinds = [kind_of(arg, columns) for arg in args]

    def refuse(wanted: str, index: int = 0) -> ExpressionError:
        arg = args[index]
        what = (
            f"column {arg['col']!r} of type {columns[arg['col']]}"
            if "col" in arg
            else f"a {kinds[index]} expression"
        )
        return ExpressionError(f"{op!r} needs {wanted}; got {what}")

    if op in ("==", "!="):
        pair = (kinds[0], kinds[1])
        if kinds[0] != kinds[1] and pair not in _ORDERED and {NUMBER, BOOL} != set(pair):
            raise refuse(f"two values of one kind (here {kinds[1]})")
        return BOOL
    if op in ("==", "!=", "<", "<=", ">", ">=", "between") and TIME in kinds:
        for arg, kind in zip(args, kinds, strict=True):
            if kind == TEXT and "lit" in arg and not _is_timestamp(arg["lit"]):
                raise ExpressionError(
                    f"{op!r}: {arg['lit']!r} is not a date or time; write e.g. '2026-03-02 08:00'"
                )
    if op in ("<", "<=", ">", ">=", "between"):
        for index in range(1, len(args)):
            if (kinds[0], kinds[index]) not in _ORDERED:
                raise refuse(f"values that can be ordered against {kinds[index]}")
        return BOOL
    if op in ("+", "-", "*", "/", "bucket"):
        for index, kind in enumerate(kinds):
            if kind != NUMBER:
                raise refuse("numbers", index)
        return NUMBER
    if op in ("and", "or", "not"):
        for index, kind in enumerate(kinds):
            if kind not in (BOOL, NUMBER):
                raise refuse("true/false values", index)
        return BOOL
    if op in KEY_DOMAINS:
        if kinds[0] != TIME:
            raise refuse("a timestamp")
        return NUMBER
    if op == "isin":
        return BOOL
    raise ExpressionError(f"unknown operator {op!r}")  # validate() keeps this unreachable


def _is_timestamp(text: str) -> bool:
    try:
        return pd.Timestamp(text) is not pd.NaT
    except (ValueError, TypeError, OverflowError):
        return False


def evaluate(expression: dict[str, Any], frame: pd.DataFrame) -> Any:
    """The expression's value over ``frame``: a Series, or a scalar for literals."""
    if "col" in expression:
        return frame[expression["col"]]
    if "lit" in expression:
        return expression["lit"]
    op, args = expression["op"], expression["args"]
    values = [evaluate(arg, frame) for arg in args]
    if op in _ORDERING:
        return _ordered(_ORDERING[op], values[0], values[1])
    if op in _BINARY:
        return _BINARY[op](values[0], values[1])
    if op == "/":
        with np.errstate(divide="ignore", invalid="ignore"):
            return values[0] / values[1]
    if op == "and":
        return _fold(values, operator.and_)
    if op == "or":
        return _fold(values, operator.or_)
    if op == "not":
        return ~_as_bool(values[0])
    if op == "hour":
        return values[0].dt.hour
    if op == "weekday":
        return values[0].dt.day_of_week
    if op == "between":
        return _ordered(operator.ge, values[0], values[1]) & _ordered(
            operator.le, values[0], values[2]
        )
    if op == "isin":
        return values[0].isin(expression["values"])
    if op == "bucket":
        edges = np.asarray(expression["edges"], dtype=float)
        x = pd.Series(values[0]).astype(float)
        index = np.searchsorted(edges, x.to_numpy(), side="right") - 1
        inside = (index >= 0) & (index < len(edges) - 1)  # NaN lands outside too
        return pd.Series(np.where(inside, index, -1), index=x.index)
    raise ExpressionError(f"unknown operator {op!r}")  # validate() keeps this unreachable


_ORDERING = {op: _BINARY[op] for op in ("<", "<=", ">", ">=")}


def _ordered(compare: Callable[[Any, Any], Any], left: Any, right: Any) -> Any:
    """An ordering comparison that never raises on the data: text columns held as Python
    objects (with None for missing) are compared as pandas strings, a missing value is false."""
    left, right = _as_text(left), _as_text(right)
    result = compare(left, right)
    if isinstance(result, pd.Series) and result.dtype != bool:
        result = result.fillna(False).astype(bool)
    return result


def _as_text(value: Any) -> Any:
    if isinstance(value, pd.Series) and value.dtype == object:
        return value.astype("string")
    return value


def _as_bool(value: Any) -> Any:
    return value.astype(bool) if isinstance(value, pd.Series) else bool(value)


def _fold(values: list[Any], combine: Callable[[Any, Any], Any]) -> Any:
    result = _as_bool(values[0])
    for value in values[1:]:
        result = combine(result, _as_bool(value))
    return result


def key_domain(expression: dict[str, Any], key_sets: Mapping[str, list[Any]]) -> list[Any] | None:
    """The public set of values a group-by key can take, or None if it is not public."""
    if "col" in expression:
        return key_sets.get(expression["col"])
    if expression.get("op") in KEY_DOMAINS:
        return KEY_DOMAINS[expression["op"]]
    if expression.get("op") == "bucket":
        return list(range(len(expression["edges"]) - 1))
    return None

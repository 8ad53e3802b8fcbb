"""The block result line: the one format the runner image writes and the trusted side reads.

A block's run ends with one JSON line, ``{"status": "ok", "values": {name: number}}`` or
``{"status": "error", "error": "<ExceptionClass>"}``. This module is that format, whole: the
writer (the in-image harness and zygote), what the zygote relays, the size cap, and the strict
reader (the server's parser and the client's local run). One file, so they cannot drift
apart: the runner image is built with this very file (``sandbox/image.py`` copies it in and
hashes it into the image's tag). Standard library only, no I/O: it also runs in the image,
next to untrusted code, where nothing it does is trusted.

The reader's rules: the last non-empty line counts; over :data:`MAX_RESULT_BYTES`, not UTF-8,
not strict JSON, status not ``ok``, ``values`` not an object, or any undeclared name → the
whole line is refused; a declared name missing or its value not a finite real number (bools,
strings, NaN, ±inf, integers beyond float range refused) → that name is bad.
"""

from __future__ import annotations

import json
import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

#: The longest result line read from a block; anything longer is refused as garbage.
MAX_RESULT_BYTES = 64 * 1024
#: How much of an odd returned object the writer keeps (as its repr); the reader refuses it.
REPR_CHARS = 200
#: What a process may say last: a complete line with one of these ends the block early.
STATUSES = ("ok", "error")


# --- writer: inside the image ---------------------------------------------------------------


def _number(value: numbers.Real) -> float:
    """A real number as a float; beyond float range it is ±inf (then read as not finite)."""
    try:
        return float(value)
    except OverflowError:  # an integer or fraction too large: that value defaults, not the block
        return -math.inf if value < 0 else math.inf


def to_jsonable(values: object) -> object:
    """Real numbers (numpy scalars too) as floats; anything odd as a short repr, to be refused."""
    if not isinstance(values, dict):
        return repr(values)[:REPR_CHARS]
    return {
        str(key): _number(value)
        if isinstance(value, numbers.Real) and not isinstance(value, bool)
        else repr(value)[:REPR_CHARS]
        for key, value in values.items()
    }


def ok_line(values: object) -> str:
    """The result line of a run whose ``analyze`` returned ``values`` (no newline)."""
    return json.dumps({"status": "ok", "values": to_jsonable(values)})


def error_line(exc: BaseException) -> str:
    """The result line of a run that raised: only the exception's class name leaves."""
    return json.dumps({"status": "error", "error": type(exc).__name__})


# --- relay: the zygote's answer frame --------------------------------------------------------


def frame_text(raw: bytes) -> str:
    """Result bytes as a str for a JSON frame; :func:`frame_bytes` gives the same bytes back.

    Not UTF-8 is kept as such (surrogate escapes), so a line read through the zygote is read
    exactly as the same line printed by a container-per-block run.
    """
    return raw.decode("utf-8", "surrogateescape")


def frame_bytes(text: str) -> bytes:
    """The bytes :func:`frame_text` was given; never raises."""
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a surrogate frame_text never makes: not a block's bytes
        return text.encode("utf-8", "replace")


def said_status(out: bytes) -> str | None:
    """``ok`` or ``error`` if the process has written a complete result line, else None.

    The zygote answers on it without waiting for the process to exit. Whether the line is
    then accepted is the reader's business; this only says the process has had its say.
    """
    if not out.endswith(b"\n"):
        return None
    line = last_line(out)
    envelope = None if line is None else _envelope(line)
    status = envelope.get("status") if isinstance(envelope, dict) else None
    return status if isinstance(status, str) and status in STATUSES else None


# --- reader: the trusted side -----------------------------------------------------------------


class Refusal(StrEnum):
    """Why a whole line is refused (every output then takes its default)."""

    NO_OUTPUT = "no output"
    TOO_LONG = "result line too long"
    NOT_JSON = "result is not strict JSON"
    NOT_OK = "block reported an error"
    NOT_OBJECT = "values is not a JSON object"
    UNDECLARED = "undeclared output name(s)"


@dataclass(frozen=True)
class LineReading:
    """What a line says: the declared values that are finite real numbers (not clipped), the
    declared names that are missing or not, or why the whole line is refused."""

    values: dict[str, float]
    refusal: Refusal | None = None
    undeclared: tuple[str, ...] = ()  # sorted; set when refusal is UNDECLARED
    bad: tuple[str, ...] = ()  # in declared order


def last_line(data: bytes) -> bytes | None:
    """The last line that is not only whitespace, or None if there is none."""
    lines = [line for line in data.strip().splitlines() if line.strip()]
    return lines[-1] if lines else None


def _non_finite(_token: str) -> float:
    """NaN/Infinity are not JSON; read them as NaN so that one value, not the line, is bad."""
    return math.nan


_NOT_JSON = object()


def _envelope(line: bytes) -> object:
    """The line as strict JSON, or ``_NOT_JSON``; never raises (deep nesting included)."""
    try:
        return json.loads(line.decode("utf-8"), parse_constant=_non_finite)
    except (UnicodeDecodeError, ValueError, RecursionError):
        return _NOT_JSON


def finite_number(value: object) -> float | None:
    """``value`` as a float if it is a finite real number (not a bool), else None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:  # an integer beyond float range
        return None
    return number if math.isfinite(number) else None


def read_line(raw: bytes | str | None, declared: Sequence[str]) -> LineReading:
    """Read what a block printed by the rules above; never raises, whatever ``raw`` is."""
    if raw is None:
        return LineReading({}, Refusal.NO_OUTPUT)
    data = raw.encode("utf-8", "replace") if isinstance(raw, str) else raw
    line = last_line(data)
    if line is None:
        return LineReading({}, Refusal.NO_OUTPUT)
    if len(line) > MAX_RESULT_BYTES:
        return LineReading({}, Refusal.TOO_LONG)
    envelope = _envelope(line)
    if envelope is _NOT_JSON:
        return LineReading({}, Refusal.NOT_JSON)
    if not isinstance(envelope, dict) or envelope.get("status") != "ok":
        return LineReading({}, Refusal.NOT_OK)
    returned = envelope.get("values")
    if not isinstance(returned, dict):
        return LineReading({}, Refusal.NOT_OBJECT)
    names = set(declared)
    undeclared = tuple(sorted(key for key in returned if key not in names))
    if undeclared:
        return LineReading({}, Refusal.UNDECLARED, undeclared=undeclared)
    values: dict[str, float] = {}
    bad: list[str] = []
    for name in declared:
        number = finite_number(returned.get(name))
        if number is None:
            bad.append(name)
        else:
            values[name] = number
    return LineReading(values, bad=tuple(bad))

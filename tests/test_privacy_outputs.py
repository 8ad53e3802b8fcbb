"""Strict parsing of untrusted block output and validation of declared outputs."""

from __future__ import annotations

import json

import pytest

from privacy.outputs import (
    MAX_RESULT_BYTES,
    BlockOutcome,
    OutputSpecError,
    make_output_spec,
    parse_block_output,
    validate_output_specs,
)

SPECS = [make_output_spec("a", 0, 10, 5), make_output_spec("b", -1, 1)]


def envelope(values: object, status: str = "ok") -> bytes:
    return json.dumps({"status": status, "values": values}).encode()


def test_valid_output_parses_every_value() -> None:
    parsed = parse_block_output(envelope({"a": 3, "b": 0.25}), SPECS)
    assert parsed.outcome is BlockOutcome.OK
    assert parsed.values == {"a": 3.0, "b": 0.25}


def test_only_the_last_line_counts() -> None:
    raw = envelope({"a": 1, "b": 0}) + b"\n" + envelope({"a": 2, "b": 0}) + b"\n\n"
    assert parse_block_output(raw, SPECS).values["a"] == 2.0


@pytest.mark.parametrize(
    "raw",
    [
        None,
        b"",
        b"   \n  ",
        b"not json at all",
        b"[1, 2, 3]",
        b'{"status": "ok"}',
        b'{"status": "ok", "values": [1, 2]}',
        b'{"status": "error", "error": "ValueError"}',
        b'{"values": {"a": 1, "b": 0}}',
        b"\xff\xfe\x00garbage",
        envelope({"a": 1, "b": 0, "c": 2}),  # undeclared name
        envelope({"a": 1, "__class__": 0}),
        b"[" * 100_000,  # deep nesting must not crash the parser
    ],
)
def test_anything_else_defaults_the_whole_block(raw: bytes | None) -> None:
    parsed = parse_block_output(raw, SPECS)
    assert parsed.outcome is BlockOutcome.DEFAULTED
    assert parsed.values == {"a": 5.0, "b": -1.0}


def test_an_oversized_line_is_garbage_even_if_valid_json() -> None:
    padding = "x" * MAX_RESULT_BYTES
    raw = json.dumps({"status": "ok", "values": {"a": 1, "b": 0}, "pad": padding}).encode()
    assert parse_block_output(raw, SPECS).outcome is BlockOutcome.DEFAULTED


@pytest.mark.parametrize(
    "value",
    [
        "NaN",
        "Infinity",
        "-Infinity",
        "1e999",
        "true",
        "false",
        "null",
        '"3"',
        "[3]",
        "{}",
        "1" * 400,
    ],
)
def test_non_finite_or_non_numeric_values_take_their_default(value: str) -> None:
    raw = ('{"status": "ok", "values": {"a": ' + value + ', "b": 0.5}}').encode()
    parsed = parse_block_output(raw, SPECS)
    assert parsed.outcome is BlockOutcome.PARTIAL
    assert parsed.values == {"a": 5.0, "b": 0.5}


def test_missing_value_takes_its_default() -> None:
    parsed = parse_block_output(envelope({"b": 0.5}), SPECS)
    assert parsed.outcome is BlockOutcome.PARTIAL
    assert parsed.values == {"a": 5.0, "b": 0.5}


def test_parsing_does_not_clip() -> None:
    # Clipping is the aggregator's job; the parser reports what it read.
    assert parse_block_output(envelope({"a": 1e9, "b": -7}), SPECS).values == {"a": 1e9, "b": -7.0}


@pytest.mark.parametrize(
    ("name", "lo", "hi", "default"),
    [
        ("", 0, 1, None),
        ("bad name", 0, 1, None),
        ("x" * 65, 0, 1, None),
        ("a", 1, 1, None),
        ("a", 2, 1, None),
        ("a", float("nan"), 1, None),
        ("a", 0, float("inf"), None),
        ("a", 0, 1e13, None),
        ("a", 0, 1, 2),
        ("a", 0, 1, float("nan")),
    ],
)
def test_bad_declarations_are_refused_with_a_reason(
    name: str, lo: float, hi: float, default: float | None
) -> None:
    with pytest.raises(OutputSpecError) as error:
        make_output_spec(name, lo, hi, default)
    assert str(error.value)


def test_default_falls_back_to_lo() -> None:
    assert make_output_spec("a", -3, 3).default == -3.0


def test_declaration_list_checks() -> None:
    with pytest.raises(OutputSpecError, match="at least one"):
        validate_output_specs([])
    with pytest.raises(OutputSpecError, match="twice"):
        validate_output_specs([make_output_spec("a", 0, 1), make_output_spec("a", 0, 2)])
    with pytest.raises(OutputSpecError, match="at most"):
        validate_output_specs([make_output_spec(f"o{i}", 0, 1) for i in range(101)])

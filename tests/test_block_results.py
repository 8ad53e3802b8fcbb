"""A block's result as it crosses from a data node to the trusted reducer: parsed and clipped
where it ran, read back strictly (anything off is refused, not repaired) and clipped again."""

from __future__ import annotations

from typing import Any

import pytest

from privacy.outputs import BlockOutcome, make_output_spec
from runner.pipeline import BlockResult, block_result
from runner.wire import block_result_from_wire, block_result_to_wire
from sandbox.container import BlockRun, RunEnd

OUTPUTS = [make_output_spec("a", 0.0, 10.0, 5.0), make_output_spec("b", -1.0, 1.0, 0.0)]
EXPECTED = frozenset({3, 4})


def _wire(**changes: Any) -> dict[str, Any]:
    result = BlockResult(3, {"a": 2.5, "b": 1.0}, BlockOutcome.OK, RunEnd.EXITED, 0, 0.02,
                         sandbox="runc/zygote")  # fmt: skip
    wire = block_result_to_wire(result)
    wire.update(changes)
    return wire


def test_a_result_survives_the_round_trip() -> None:
    result = block_result_from_wire(_wire(), OUTPUTS, EXPECTED)
    assert result == BlockResult(3, {"a": 2.5, "b": 1.0}, BlockOutcome.OK, RunEnd.EXITED, 0, 0.02,
                                 sandbox="runc/zygote")  # fmt: skip


def test_values_out_of_bounds_are_clipped_again_by_the_reducer() -> None:
    result = block_result_from_wire(_wire(values={"a": 1e9, "b": -7}), OUTPUTS, EXPECTED)
    assert result.values == {"a": 10.0, "b": -1.0}


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"index": 7}, "not asked"),
        ({"index": True}, "not asked"),
        ({"index": "3"}, "not asked"),
        ({"values": {"a": 1.0}}, "exactly"),
        ({"values": {"a": 1.0, "b": 0.0, "c": 1.0}}, "exactly"),
        ({"values": {"a": float("nan"), "b": 0.0}}, "finite"),
        ({"values": {"a": "1", "b": 0.0}}, "finite"),
        ({"values": {"a": 10**400, "b": 0.0}}, "finite"),
        ({"values": {"a": True, "b": 0.0}}, "finite"),
        ({"values": [1.0, 0.0]}, "exactly"),
        ({"exit_code": "0"}, "malformed"),
        ({"seconds": float("inf")}, "malformed"),
        ({"log": "x" * 100_000}, "too long"),
        ({"rows": [[1, 2]]}, "exactly the fields"),
        ({"sandbox": None}, "sandbox malformed"),
        ({"sandbox": 3}, "sandbox malformed"),
        ({"sandbox": "runsc/" + "x" * 60}, "too long"),
    ],
)
def test_anything_off_is_refused(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        block_result_from_wire(_wire(**changes), OUTPUTS, EXPECTED)


@pytest.mark.parametrize(("field", "value"), [("outcome", "great"), ("end", "vanished")])
def test_unknown_outcomes_and_ends_are_refused(field: str, value: str) -> None:
    with pytest.raises(ValueError):
        block_result_from_wire(_wire(**{field: value}), OUTPUTS, EXPECTED)


def test_the_node_parses_and_clips_before_sending_and_keeps_only_the_stderr_tail() -> None:
    run = BlockRun(
        RunEnd.NONZERO, 1, b'{"status": "ok", "values": {"a": 99, "b": 0.5}}', b"e" * 20_000, 1.5
    )
    result = block_result(4, run, OUTPUTS)
    assert result.values == {"a": 10.0, "b": 0.5} and result.outcome is BlockOutcome.OK
    assert (
        result.log.startswith("--- block 4 (nonzero_exit, exit 1) ---") and len(result.log) < 9000
    )
    garbage = block_result(4, BlockRun(RunEnd.EXITED, 0, b"id,fare\n1,2.5", b"", 0.1), OUTPUTS)
    assert garbage.values == {"a": 5.0, "b": 0.0} and garbage.outcome is BlockOutcome.DEFAULTED
    assert garbage.log == ""  # what the code printed is never carried, only parsed


def test_a_result_without_its_sandbox_is_refused() -> None:
    """An older node that does not say where the block ran is refused, not guessed about."""
    wire = _wire()
    del wire["sandbox"]
    with pytest.raises(ValueError, match="exactly the fields"):
        block_result_from_wire(wire, OUTPUTS, EXPECTED)

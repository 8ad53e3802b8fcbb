"""Every format that crosses between the reducer and a data node (``runner.wire``): each
survives a round trip through JSON, as the broker carries it, unchanged; what a node sends back
is refused when anything is off (block results: tests/test_block_results.py)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from privacy.outputs import BlockOutcome, make_output_spec
from privacy.query import QueryPlan, block_partials, parse_plan
from runner.pipeline import BlockResult
from runner.synthesize import Declaration, SynthesisSpec
from runner.wire import (
    block_result_from_wire,
    block_result_to_wire,
    declaration_from_wire,
    declaration_to_wire,
    limits_from_wire,
    limits_to_wire,
    outputs_from_wire,
    outputs_to_wire,
    partials_from_wire,
    partials_to_wire,
    policy_from_wire,
    policy_to_wire,
    synthesis_spec_from_wire,
    synthesis_spec_to_wire,
)
from sandbox.container import RunEnd, SandboxLimits
from tests.test_privacy_query import POLICY, PRIVATE_STATIONS, random_trips


def _carried(wire: Any) -> Any:
    return json.loads(json.dumps(wire))  # what the broker carries


def test_a_block_result_round_trips_with_its_sandbox() -> None:
    outputs = [make_output_spec("a", 0.0, 10.0), make_output_spec("b", -1.0, 1.0)]
    log = "--- block 4 (timeout, exit None) ---\n"
    result = BlockResult(4, {"a": 2.5, "b": -1.0}, BlockOutcome.DEFAULTED, RunEnd.TIMEOUT, None,
                         1.25, log, "runsc/container")  # fmt: skip
    wire = _carried(block_result_to_wire(result))
    assert block_result_from_wire(wire, outputs, frozenset({4})) == result


def test_outputs_round_trip_and_are_validated_again() -> None:
    outputs = [make_output_spec("mean_fare", 0, 15, 2.5), make_output_spec("n", 0, 1e6)]
    assert outputs_from_wire(_carried(outputs_to_wire(outputs))) == outputs
    with pytest.raises(ValueError, match="default"):
        outputs_from_wire([{"name": "x", "lo": 0.0, "hi": 1.0, "default": 7.0}])


def test_limits_round_trip_and_unknown_fields_are_left_out() -> None:
    limits = SandboxLimits(memory_bytes=512 << 20, wall_seconds=2.5, pids=32)
    assert limits_from_wire(_carried(limits_to_wire(limits))) == limits
    assert limits_from_wire({**limits_to_wire(limits), "gpus": 4}) == limits


def test_a_policy_round_trips() -> None:
    assert policy_from_wire(_carried(policy_to_wire(POLICY))) == POLICY


def test_a_declaration_round_trips() -> None:
    declared = Declaration({"card": "int64", "fare": "double", "line": "string"}, "card",
                           {"fare": [0.0, 10.0]}, {"line": ["a", "b"]})  # fmt: skip
    assert declaration_from_wire(_carried(declaration_to_wire(declared))) == declared


@pytest.mark.parametrize(
    "spec",
    [
        SynthesisSpec(0.5),
        SynthesisSpec(1.0, rows=500, rows_per_unit=3, bins={"fare": 8},
                      time_bounds={"ts": ("2026-03-02", "2026-03-09")},
                      grid_seconds={"ts": 900}, marginals=[("line", "fare")],
                      analysis={"group_by": ["line"], "aggregates": [{"name": "n",
                                                                      "op": "count"}]}),
    ],
)  # fmt: skip
def test_a_synthesis_spec_round_trips(spec: SynthesisSpec) -> None:
    assert synthesis_spec_from_wire(_carried(synthesis_spec_to_wire(spec))) == spec


# --- partials (a data node's answer to a query chunk) ---------------------------------------


def wire_plan(public: bool) -> QueryPlan:
    """A plan with every kind of partial; grouped by station, a public key set or not."""
    return parse_plan(
        {"group_by": ["station"],
         "aggregates": [{"name": "n", "op": "count"},
                        {"name": "m", "op": "mean", "column": "fare", "lo": 0, "hi": 10},
                        {"name": "p", "op": "quantile", "column": "fare", "lo": 0, "hi": 10,
                         "q": 0.5, "bins": 4}],
         "max_rows_per_unit": 3, "max_groups_per_unit": 2},
        POLICY if public else PRIVATE_STATIONS,
    )  # fmt: skip


@pytest.mark.parametrize("public", [True, False])
def test_partials_cross_the_wire_unchanged(public: bool) -> None:
    plan = wire_plan(public)
    partials = block_partials(plan, random_trips(30, seed=11), "card")
    wire = json.loads(json.dumps(partials_to_wire(partials)))  # what the broker carries
    back = partials_from_wire(wire, plan)
    assert partials_to_wire(back) == partials_to_wire(partials)
    assert back.keys == partials.keys


@pytest.mark.parametrize(
    ("change", "says"),
    [
        (lambda w: w.update(counts=w["counts"][:-1]), "cells"),
        (lambda w: w.update(counts=[-1, *w["counts"][1:]]), "cells"),
        (lambda w: w.update(keys=[["x"]]), "cells"),
        (lambda w: w["sums"].pop("sumsq:fare", None) or w["sums"].update(extra=[0.0] * 3), "sums"),
        (lambda w: w["sums"].update({"sum:fare": [float("nan")] * len(w["counts"])}), "sums"),
        (
            lambda w: w["histograms"].update({"hist:fare": [[0, 0, 0]] * len(w["counts"])}),
            "histograms",
        ),
        (
            lambda w: w["histograms"].update({"hist:fare": [[-1, 0, 0, 0]] * len(w["counts"])}),
            "histograms",
        ),
    ],
)
def test_malformed_partials_from_a_node_are_refused(change: Any, says: str) -> None:
    plan = wire_plan(public=True)
    wire = partials_to_wire(block_partials(plan, random_trips(30, seed=12), "card"))
    change(wire)
    with pytest.raises(ValueError, match=says):
        partials_from_wire(wire, plan)


def test_private_key_partials_with_impossible_unit_counts_are_refused() -> None:
    plan = wire_plan(public=False)
    wire = partials_to_wire(block_partials(plan, random_trips(30, seed=13), "card"))
    wire["units"] = [count + 1 for count in wire["counts"]]  # more units than rows
    with pytest.raises(ValueError, match="unit counts"):
        partials_from_wire(wire, plan)
    with pytest.raises(ValueError, match="JSON object"):
        partials_from_wire("nope", plan)

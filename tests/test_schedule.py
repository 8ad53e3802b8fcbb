"""The public schedule and the contestant's timeline (runner.schedule): pure, the clock given."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from runner.schedule import (
    ScheduleError,
    ScheduleRules,
    aggregate_schedule,
    block_seconds_from_sample,
    query_schedule,
    timeline,
)

RULES = ScheduleRules(
    min_block_seconds=0.5,
    max_block_seconds=60,
    default_block_seconds=2,
    start_seconds=10,
    block_overhead_seconds=0.25,
    query_seconds=7,
)
T0 = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


@pytest.mark.parametrize(
    ("blocks", "slots", "asked", "block_seconds", "length"),
    [
        (100, 2, None, 2.0, 10 + 50 * 2.25),
        (101, 2, None, 2.0, 10 + 51 * 2.25),
        (6, 2, 4.0, 4.0, 10 + 3 * 4.25),
        (1, 8, 0.5, 0.5, 10 + 0.75),
        (5, 0, 1.0, 1.0, 10 + 5 * 1.25),  # no slot counts as one
    ],
)
def test_the_length_follows_from_public_numbers_only(
    blocks: int, slots: int, asked: float | None, block_seconds: float, length: float
) -> None:
    schedule = aggregate_schedule(RULES, blocks, slots, asked)
    assert schedule.block_seconds == block_seconds
    assert schedule.seconds == pytest.approx(length)
    assert query_schedule(RULES).seconds == 7


@pytest.mark.parametrize("asked", [0.1, 61, float("inf"), float("nan"), -1])
def test_a_block_time_outside_the_limits_is_refused_naming_them(asked: float) -> None:
    with pytest.raises(ScheduleError, match=r"between 0.5 and 60 .*unseen run --sample"):
        aggregate_schedule(RULES, 10, 2, asked)


def test_the_default_never_exceeds_the_node_limit() -> None:
    tight = ScheduleRules(max_block_seconds=1.5, default_block_seconds=2)
    assert aggregate_schedule(tight, 4, 2).block_seconds == 1.5


def test_before_the_schedule_ends_every_true_state_looks_running() -> None:
    started = at(3)
    for state in ("running", "awaiting_review", "failed", "released", "rejected"):
        for now in (at(3), at(8), at(22.999)):
            seen = timeline(state, T0, started, at(5), 20, now)
            assert (seen.state, seen.updated_at, seen.revealed) == ("running", started, False)
            assert seen.release_at == at(23)
            assert seen.fraction == pytest.approx((now - started).total_seconds() / 20)


def test_at_the_end_the_true_state_shows_with_the_scheduled_time() -> None:
    for state in ("awaiting_review", "failed"):
        seen = timeline(state, T0, at(3), at(5), 20, at(23))
        assert (seen.state, seen.updated_at, seen.fraction, seen.revealed) == (
            state, at(23), 1.0, True,
        )  # fmt: skip


def test_a_decision_shows_no_earlier_than_the_end_and_at_its_own_time_after() -> None:
    early = timeline("released", T0, at(3), at(10), 20, at(30))
    assert (early.state, early.updated_at) == ("released", at(23))
    late = timeline("rejected", T0, at(3), at(40), 20, at(41))
    assert (late.state, late.updated_at) == ("rejected", at(40))


def test_queued_shows_its_submission_time_and_an_overrun_stays_running() -> None:
    queued = timeline("queued", T0, None, T0, 20, at(100))
    assert (queued.state, queued.updated_at, queued.release_at, queued.fraction) == (
        "queued", T0, None, 0.0,
    )  # fmt: skip
    overrun = timeline("running", T0, at(3), at(5), 20, at(30))
    assert (overrun.state, overrun.fraction, overrun.revealed) == ("running", 1.0, False)
    # failed before a worker took it (its files could not be written): nothing ran
    assert timeline("failed", T0, None, at(1), 20, at(2)).state == "failed"


@pytest.mark.parametrize(
    ("sample_seconds", "block_seconds"),
    [(0.01, 0.5), (0.2, 1.0), (0.34, 1.5), (1.0, 3.0), (5.0, 15.0), (30.0, 60.0)],
)
def test_the_default_from_a_sample_run_is_a_margin_on_a_grid(
    sample_seconds: float, block_seconds: float
) -> None:
    assert block_seconds_from_sample(RULES, sample_seconds) == block_seconds

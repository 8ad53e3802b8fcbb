"""The fixed public schedule of a full-data job, and the timeline a contestant sees of it.

Why: contestant code that sleeps when a target person is in its block shows, without a
schedule, as a stall in progress and a later release: membership of one person, outside any
noise. Following GUPT (Mohan et al. 2012), every block gets the same public time T (a block
over T gets its declared defaults, decided by its own run alone), the job's length is fixed at
submission from public numbers (k blocks, the slots that run them, T), the worker is held until
that length has passed whatever the blocks did, and the contestant sees the job change state
exactly then. Pure functions: the clock is an argument.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta


class ScheduleError(ValueError):
    """A requested block time outside the node's public limits; the message names them."""


@dataclass(frozen=True)
class ScheduleRules:
    """A node's public scheduling settings (all in seconds).

    ``start_seconds`` covers the sandbox's start (containers, the zygote's warm-up) and the
    release; ``block_overhead_seconds`` what a block costs beyond its own T (the fork, the
    kill of an overrunning block, the handing over of its answer). Both must cover the worst
    case on the node, or a job overruns its schedule (organizers see it in the report).
    """

    min_block_seconds: float = 0.5
    max_block_seconds: float = 60.0
    default_block_seconds: float = 2.0
    start_seconds: float = 10.0
    block_overhead_seconds: float = 0.25
    query_seconds: float = 10.0

    def block_seconds(self, asked: float | None) -> float:
        """The job's T: the one asked for, or the default, within the node's limits."""
        if asked is None:
            return min(self.default_block_seconds, self.max_block_seconds)
        if not (math.isfinite(asked) and self.min_block_seconds <= asked <= self.max_block_seconds):
            raise ScheduleError(
                f"block_seconds must be between {self.min_block_seconds:g} and "
                f"{self.max_block_seconds:g} on this node; got {asked}. Time one block on the "
                "sample with `unseen run --sample` and ask for a few times that"
            )
        return float(asked)


#: A default T from a run on the sample: this many times its time, on a half-second grid.
SAMPLE_MARGIN = 3.0
SAMPLE_GRID_SECONDS = 0.5


def block_seconds_from_sample(rules: ScheduleRules, sample_seconds: float) -> float:
    """The default T for code already run on the public sample: a margin over that run's
    time (which includes the sandbox's start, and a sample is usually larger than a block),
    rounded up to the grid, within the node's limits. Public: the sample is."""
    wanted = math.ceil(SAMPLE_MARGIN * sample_seconds / SAMPLE_GRID_SECONDS) * SAMPLE_GRID_SECONDS
    return min(rules.max_block_seconds, max(rules.min_block_seconds, wanted))


@dataclass(frozen=True)
class Schedule:
    """Public at submission: each block's time and the job's length from its start."""

    block_seconds: float
    seconds: float


def aggregate_schedule(
    rules: ScheduleRules, blocks: int, slots: int, asked: float | None = None
) -> Schedule:
    """k blocks run ``slots`` at a time, each in at most T plus the overhead: the job's length
    is the start allowance plus ``ceil(k / slots)`` such waves."""
    block_seconds = rules.block_seconds(asked)
    waves = math.ceil(blocks / max(1, slots))
    length = rules.start_seconds + waves * (block_seconds + rules.block_overhead_seconds)
    return Schedule(block_seconds, round(length, 3))


def query_schedule(rules: ScheduleRules) -> Schedule:
    """A query runs trusted code only; its length is the node's public query time."""
    return Schedule(0.0, rules.query_seconds)


@dataclass(frozen=True)
class Timeline:
    """What a contestant sees of a full-data job at one moment: a function of the public
    schedule, the clock and the job's state only once the schedule has ended."""

    state: str
    updated_at: datetime
    release_at: datetime | None
    fraction: float  # of the schedule elapsed, 0..1
    revealed: bool  # the schedule has ended: state, error class and decision may show


def timeline(
    state: str,
    created_at: datetime,
    started_at: datetime | None,
    decided_at: datetime,
    schedule_seconds: float,
    now: datetime,
) -> Timeline:
    """The contestant's view of a job's life.

    Queued until a worker takes it (the queue moves only as scheduled jobs end, so that time is
    the schedule's too); then "running" until ``started_at + schedule_seconds`` whatever
    happened inside; then the true state. ``decided_at`` (the job's last change) shows only for
    an organizer's decision taken after the schedule ended; a job still running after its end
    (an overrun: the node was slower than its rules say) stays "running" until it is done.
    """
    if started_at is None:
        return Timeline(state, created_at, None, 0.0, state != "queued")
    release_at = started_at + timedelta(seconds=schedule_seconds)
    if now < release_at or state == "running":
        elapsed = (now - started_at).total_seconds()
        fraction = min(1.0, max(0.0, elapsed / schedule_seconds)) if schedule_seconds else 1.0
        return Timeline("running", started_at, release_at, fraction, False)
    if state in ("released", "rejected"):
        return Timeline(state, max(release_at, decided_at), release_at, 1.0, True)
    return Timeline(state, release_at, release_at, 1.0, True)

"""A job's life in one table: its states, the failure classes a team may see, and every allowed
transition with the audit action it writes and what it does to the team's budget.

Why one table: a state written by hand in several places, each with its audit entry and budget
effect beside it, drifts (a refund forgotten here, an audit entry there). Here each move is a
row; the persistence layer has one function that performs a row (compare-and-set on the state,
the audit entry and the budget effect in one transaction) and nothing else writes the state.
The docs' diagram is generated from this table (``mermaid()``). Pure: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class JobState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    AWAITING_REVIEW = "awaiting_review"
    PARTIALLY_REVIEWED = "partially_reviewed"  # approved by some, not yet all, reviewers
    RELEASED = "released"
    REJECTED = "rejected"
    FAILED = "failed"


TERMINAL_STATES = frozenset({JobState.RELEASED, JobState.REJECTED, JobState.FAILED})
#: Where an organizer's decision is still open.
IN_REVIEW = frozenset({JobState.AWAITING_REVIEW, JobState.PARTIALLY_REVIEWED})


class ErrorClass(StrEnum):
    """The coarse failure classes a contestant may see for a full-data job."""

    INFRASTRUCTURE = "infrastructure"  # sandbox or storage trouble
    INTERRUPTED = "interrupted"  # server restarted mid-run
    INTERNAL = "internal"  # a bug on our side


class BudgetEffect(StrEnum):
    """What a transition does to the reservation made at submission."""

    NONE = "none"
    COMMIT = "commit"  # reserved → spent
    RETURN = "return"  # reserved → free again


class Move(StrEnum):
    """The events of a job's life; each names one row of ``TRANSITIONS``."""

    CLAIM = "claim"  # a worker takes the job
    COMPLETE = "complete"  # the noisy values are stored (noise drawn: charged)
    FAIL_UNTOUCHED = "fail_untouched"  # failed before anything touched the full data
    FAIL_CHARGED = "fail_charged"  # failed after the code or plan touched it, or after noise
    APPROVE = "approve"  # one reviewer of several approves
    RELEASE = "release"  # the last approval needed: the team sees the values
    REJECT = "reject"  # any reviewer rejects, with a reason the team sees


@dataclass(frozen=True)
class Transition:
    move: Move
    sources: frozenset[JobState]
    target: JobState
    audit: str  # the audit chain's action
    budget: BudgetEffect


def _row(
    move: Move, sources: set[JobState], target: JobState, audit: str, budget: BudgetEffect
) -> Transition:
    return Transition(move, frozenset(sources), target, audit, budget)


_ROWS = (
    _row(Move.CLAIM, {JobState.QUEUED}, JobState.RUNNING, "job.started", BudgetEffect.NONE),
    _row(Move.COMPLETE, {JobState.RUNNING}, JobState.AWAITING_REVIEW, "job.awaiting_review",
         BudgetEffect.COMMIT),
    _row(Move.FAIL_UNTOUCHED, {JobState.QUEUED, JobState.RUNNING}, JobState.FAILED,
         "job.failed", BudgetEffect.RETURN),
    _row(Move.FAIL_CHARGED, {JobState.RUNNING}, JobState.FAILED, "job.failed",
         BudgetEffect.COMMIT),  # a queued job has touched nothing
    _row(Move.APPROVE, {JobState.AWAITING_REVIEW}, JobState.PARTIALLY_REVIEWED, "job.approved",
         BudgetEffect.NONE),
    _row(Move.RELEASE, set(IN_REVIEW), JobState.RELEASED, "job.released", BudgetEffect.NONE),
    _row(Move.REJECT, set(IN_REVIEW), JobState.REJECTED, "job.rejected", BudgetEffect.NONE),
)  # fmt: skip
TRANSITIONS: dict[Move, Transition] = {row.move: row for row in _ROWS}
#: Every job is created queued (full data, budget reserved in the same transaction) or, for a
#: run on the public sample, released at once (no budget: the sample is public).
INITIAL_STATES = frozenset({JobState.QUEUED, JobState.RELEASED})


def allowed(source: JobState, target: JobState) -> list[Move]:
    """The moves that take a job from ``source`` to ``target`` (none: the move is refused)."""
    return [
        row.move for row in TRANSITIONS.values() if source in row.sources and row.target == target
    ]


def mermaid() -> str:
    """The state diagram, from the table (docs/lifecycle.md embeds it)."""
    lines = ["stateDiagram-v2", "    [*] --> queued: submit (budget reserved)",
             "    [*] --> released: run on the public sample"]  # fmt: skip
    for row in TRANSITIONS.values():
        effect = "" if row.budget is BudgetEffect.NONE else f", budget {row.budget.value}"
        for source in sorted(row.sources):
            lines.append(f"    {source.value} --> {row.target.value}: {row.move.value}{effect}")
    lines += [f"    {state.value} --> [*]" for state in sorted(TERMINAL_STATES)]
    return "\n".join(lines)


def table() -> str:
    """The table as Markdown (docs/lifecycle.md embeds it)."""
    lines = ["| move | from | to | audit | budget |", "|---|---|---|---|---|"]
    for row in TRANSITIONS.values():
        sources = ", ".join(sorted(state.value for state in row.sources))
        lines.append(f"| {row.move.value} | {sources} | {row.target.value} | `{row.audit}` | "
                     f"{row.budget.value} |")  # fmt: skip
    return "\n".join(lines)


if __name__ == "__main__":  # python -m runner.lifecycle > the generated part of the docs
    print(f"```mermaid\n{mermaid()}\n```\n\n{table()}")

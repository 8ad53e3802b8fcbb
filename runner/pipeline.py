"""The aggregate-mode job pipeline: run every block in the sandbox, parse, clip, combine, noise.

Pure orchestration over two injected edges — a ``BlockRunner`` (the sandbox) and a progress
callback — so the same code runs in the embedded worker and, later, in Celery tasks.
Block outcomes and logs are collected for organizers only; the contestant-facing result is the
noisy release and nothing else.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from privacy.outputs import BlockOutcome, Combine, OutputSpec, parse_block_output
from privacy.sample_aggregate import BlockAccumulator, ReleasedValue
from runner.blocks import BlockLayout
from sandbox.container import BlockRun, RunEnd

#: Organizer-only log kept per job: the first blocks' stderr, each capped.
LOG_BLOCKS_KEPT = 5
LOG_BYTES_PER_BLOCK = 8 * 1024


class BlockRunner(Protocol):
    def __call__(self, code_path: Path, block_path: Path) -> BlockRun: ...

    def finish_job(self, code_path: Path) -> None:
        """Release whatever the job held (slot containers); called once its blocks are done."""


class InfrastructureError(RuntimeError):
    """The sandbox itself failed (Docker down, image gone) — not the contestant's code."""


@dataclass(frozen=True)
class AggregateJob:
    code_path: Path
    layout: BlockLayout
    outputs: list[OutputSpec]
    combine: Combine
    epsilon: float


@dataclass
class AggregateReport:
    """Organizer-facing diagnostics of one run; never sent to a contestant."""

    blocks: int = 0
    ends: dict[str, int] = field(default_factory=dict)
    outcomes: dict[str, int] = field(default_factory=dict)
    block_seconds_total: float = 0.0
    logs: list[str] = field(default_factory=list)

    @property
    def blocks_defaulted(self) -> int:
        return self.outcomes.get(BlockOutcome.DEFAULTED.value, 0)


@dataclass(frozen=True)
class AggregateResult:
    released: list[ReleasedValue]
    report: AggregateReport


def _record(report: AggregateReport, index: int, run: BlockRun, outcome: BlockOutcome) -> None:
    report.blocks += 1
    report.ends[run.end.value] = report.ends.get(run.end.value, 0) + 1
    report.outcomes[outcome.value] = report.outcomes.get(outcome.value, 0) + 1
    report.block_seconds_total += run.seconds
    if len(report.logs) < LOG_BLOCKS_KEPT and (run.stderr or run.end is not RunEnd.EXITED):
        text = run.stderr[-LOG_BYTES_PER_BLOCK:].decode("utf-8", "replace")
        report.logs.append(f"--- block {index} ({run.end.value}, exit {run.exit_code}) ---\n{text}")


def run_aggregate(
    job: AggregateJob,
    run_block: BlockRunner,
    slots: int,
    progress: Callable[[int, int], None] | None = None,
    max_sandbox_errors: int = 0,
) -> AggregateResult:
    """Run all blocks (``slots`` at a time), then release once with fresh noise.

    Anything the untrusted code does — crash, hang, OOM, garbage — gives that block its
    declared defaults. Only sandbox failures (more than ``max_sandbox_errors`` of them) abort
    the job, *before* any noise is drawn, so its reserved budget can be returned.
    """
    accumulator = BlockAccumulator(job.outputs, job.combine, job.layout.blocks)
    report = AggregateReport()
    lock = threading.Lock()
    sandbox_errors = 0
    done = 0

    def one(index: int) -> None:
        nonlocal sandbox_errors, done
        run = run_block(job.code_path, job.layout.block_path(index))
        parsed = parse_block_output(run.stdout, job.outputs)
        with lock:
            if run.end is RunEnd.SANDBOX_ERROR:
                sandbox_errors += 1
            accumulator.add(index, parsed.values)
            _record(report, index, run, parsed.outcome)
            done += 1
            if progress is not None:
                progress(done, job.layout.blocks)

    try:
        with ThreadPoolExecutor(max_workers=max(1, slots), thread_name_prefix="block") as pool:
            for future in [pool.submit(one, i) for i in range(job.layout.blocks)]:
                future.result()
    finally:
        run_block.finish_job(job.code_path)

    if sandbox_errors > max_sandbox_errors:
        detail = report.logs[-1] if report.logs else ""
        raise InfrastructureError(
            f"{sandbox_errors} of {job.layout.blocks} blocks could not be run in the sandbox; "
            f"check the Docker engine and the runner image. {detail[-500:]}"
        )
    return AggregateResult(accumulator.release(job.epsilon), report)

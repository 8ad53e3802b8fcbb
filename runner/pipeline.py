"""The aggregate-mode job pipeline: run every block in the sandbox, parse, clip, combine, noise.

Pure orchestration over injected edges — where block results come from (the sandbox here, or
a data node's Celery worker running the same ``local_block_results``) and a progress callback.
Block outcomes and logs are collected for organizers only; the contestant-facing result is the
noisy release and nothing else.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from privacy.outputs import BlockOutcome, Combine, OutputSpec, parse_block_output
from privacy.sample_aggregate import BlockAccumulator, ReleasedValue, clip
from runner.blocks import BlockLayout
from sandbox.container import BlockRun, RunEnd

#: Organizer-only log kept per job: the first blocks' stderr, each capped.
LOG_BLOCKS_KEPT = 5
LOG_BYTES_PER_BLOCK = 8 * 1024


class BlockRunner(Protocol):
    def __call__(
        self, code_path: Path, block_path: Path, wall_seconds: float | None = None
    ) -> BlockRun:
        """Run one block; ``wall_seconds`` (the job's public T) replaces the node's limit."""

    def finish_job(self, code_path: Path) -> None:
        """Release whatever the job held (slot containers); called once its blocks are done."""


class InfrastructureError(RuntimeError):
    """The sandbox itself failed (Docker down, image gone) — not the contestant's code.
    ``touched``: some block's code did run on its data (the job is then charged)."""

    def __init__(self, message: str, touched: bool) -> None:
        super().__init__(message)
        self.touched = touched


@dataclass(frozen=True)
class AggregateJob:
    code_path: Path
    layout: BlockLayout
    outputs: list[OutputSpec]
    combine: Combine
    epsilon: float
    node: str = "local"  # the data node holding the dataset
    block_seconds: float = 0.0  # every block's public time T; 0: the node's own limit

    @property
    def job_id(self) -> str:
        return self.code_path.parent.name


@dataclass(frozen=True)
class BlockResult:
    """One block's run as the trusted side keeps it: its output parsed strictly and clipped,
    how the run ended, and (for the organizer only) the end of its stderr. Never the raw
    output: whoever ran the block (this process or a data node) parsed it. Its form on the
    wire, and the strict reading of it, are in ``runner.wire``."""

    index: int
    values: dict[str, float]
    outcome: BlockOutcome
    end: RunEnd
    exit_code: int | None
    seconds: float
    log: str = ""  # organizer-only; empty when the block wrote no stderr and exited
    sandbox: str = ""  # the node's runtime and isolation form, e.g. "runsc/zygote"


@dataclass
class AggregateReport:
    """Organizer-facing diagnostics of one run; never sent to a contestant."""

    blocks: int = 0
    ends: dict[str, int] = field(default_factory=dict)
    outcomes: dict[str, int] = field(default_factory=dict)
    block_seconds_total: float = 0.0
    logs: list[str] = field(default_factory=list)
    sandboxes: dict[str, int] = field(default_factory=dict)  # blocks per runtime/isolation

    @property
    def blocks_defaulted(self) -> int:
        return self.outcomes.get(BlockOutcome.DEFAULTED.value, 0)


@dataclass(frozen=True)
class AggregateResult:
    released: list[ReleasedValue]
    report: AggregateReport


def block_result(index: int, run: BlockRun, outputs: list[OutputSpec]) -> BlockResult:
    """Parse and clip one run's output where it ran; keep only the end of its stderr."""
    parsed = parse_block_output(run.stdout, outputs)
    clipped = {
        spec.name: clip(parsed.values.get(spec.name, spec.default), spec) for spec in outputs
    }
    log = ""
    if run.stderr or run.end is not RunEnd.EXITED:
        text = run.stderr[-LOG_BYTES_PER_BLOCK:].decode("utf-8", "replace")
        log = f"--- block {index} ({run.end.value}, exit {run.exit_code}) ---\n{text}"
    return BlockResult(
        index, clipped, parsed.outcome, run.end, run.exit_code, run.seconds, log, run.sandbox
    )


def _record(report: AggregateReport, result: BlockResult) -> None:
    report.blocks += 1
    report.ends[result.end.value] = report.ends.get(result.end.value, 0) + 1
    report.outcomes[result.outcome.value] = report.outcomes.get(result.outcome.value, 0) + 1
    report.block_seconds_total += result.seconds
    if result.sandbox:
        report.sandboxes[result.sandbox] = report.sandboxes.get(result.sandbox, 0) + 1
    if len(report.logs) < LOG_BLOCKS_KEPT and result.log:
        report.logs.append(result.log)


def local_block_results(
    job: AggregateJob,
    run_block: BlockRunner,
    slots: int,
    blocks: Sequence[int] | None = None,
    finish: bool = True,
) -> Iterator[BlockResult]:
    """Run blocks here, ``slots`` at a time, in the sandbox; yield each as it finishes.
    The job's sandbox containers are released when the last block is done, unless the caller
    (a node running one chunk of many) keeps them with ``finish=False``."""
    indices = range(job.layout.blocks) if blocks is None else blocks

    wall = job.block_seconds or None

    def one(index: int) -> BlockResult:
        run = run_block(job.code_path, job.layout.block_path(index), wall)
        return block_result(index, run, job.outputs)

    try:
        if slots <= 1:  # in this thread: a sandbox keyed by thread finds its warm slot again
            for index in indices:
                yield one(index)
            return
        with ThreadPoolExecutor(max_workers=slots, thread_name_prefix="block") as pool:
            for future in as_completed([pool.submit(one, index) for index in indices]):
                yield future.result()
    finally:
        if finish:
            run_block.finish_job(job.code_path)


def run_aggregate(
    job: AggregateJob,
    results: Iterable[BlockResult],
    progress: Callable[[int, int], None] | None = None,
    max_sandbox_errors: int = 0,
) -> AggregateResult:
    """Take every block's result, then release once with fresh noise.

    Anything the untrusted code does — crash, hang, OOM, garbage — gives that block its
    declared defaults. Only sandbox failures (more than ``max_sandbox_errors`` of them) abort
    the job, *before* any noise is drawn; its reserved budget is returned only if no block's
    code ran at all.
    """
    accumulator = BlockAccumulator(job.outputs, job.combine, job.layout.blocks, job.epsilon)
    report = AggregateReport()
    sandbox_errors = 0
    for result in results:
        if result.end is RunEnd.SANDBOX_ERROR:  # could not start: the code never ran
            sandbox_errors += 1
        accumulator.add(result.index, result.values)  # refuses a block counted twice
        _record(report, result)
        if progress is not None:
            progress(report.blocks, job.layout.blocks)

    if sandbox_errors > max_sandbox_errors:
        detail = report.logs[-1] if report.logs else ""
        raise InfrastructureError(
            f"{sandbox_errors} of {job.layout.blocks} blocks could not be run in the sandbox; "
            f"check the Docker engine and the runner image. {detail[-500:]}",
            touched=sandbox_errors < report.blocks,
        )
    return AggregateResult(accumulator.release(), report)

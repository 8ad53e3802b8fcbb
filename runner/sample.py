"""Runs on the public sample: the contestant's debugging loop, with everything shown.

The sample is public (the organizer's file, never rows of the full data), so a run on it
returns the parsed values unclipped and unnoised, the block's stdout and stderr, the traceback
and how the run ended — and charges no budget. It goes through the same sandbox and the same
strict parser as a full-data block, so what works here works there.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from privacy.outputs import OutputSpec, parse_block_output
from runner.pipeline import BlockRunner


@dataclass(frozen=True)
class SampleRun:
    values: dict[str, float]
    outcome: str  # ok | partial | defaulted, as the full-data parser would judge it
    reason: str
    end: str
    exit_code: int | None
    stdout: str
    stderr: str
    seconds: float


CODE_FILE = "analysis.py"


def write_code(jobs_dir: Path, job_id: str, code: str) -> Path:
    """The job's code as a world-readable file: the sandbox's uid mounts it read-only."""
    directory = jobs_dir / job_id
    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o755)
    path = directory / CODE_FILE
    path.write_text(code, encoding="utf-8")
    os.chmod(path, 0o644)
    return path


def run_on_sample(
    code_path: Path, sample_path: Path, outputs: list[OutputSpec], run_block: BlockRunner
) -> SampleRun:
    try:
        run = run_block(code_path, sample_path)
    finally:
        run_block.finish_job(code_path)
    parsed = parse_block_output(run.stdout, outputs)
    return SampleRun(
        values=parsed.values,
        outcome=parsed.outcome.value,
        reason=parsed.reason,
        end=run.end.value,
        exit_code=run.exit_code,
        stdout=run.stdout.decode("utf-8", "replace"),
        stderr=run.stderr.decode("utf-8", "replace"),
        seconds=round(run.seconds, 3),
    )

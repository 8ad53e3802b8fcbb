"""Following a job from the terminal (``unseen submit``, ``query``, ``watch``): a live bar of
its public schedule and every state change, then one line saying how it ended, what became of
its ε and what to do next."""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from client.api import UnseenClient

FINAL = frozenset({"awaiting_review", "released", "rejected", "failed"})


def schedule_line(job: dict[str, Any]) -> str:
    plan = job.get("schedule") or {}
    if not plan:
        return ""
    per_block = f"each block has {plan['block_seconds']:g} s; " if plan["block_seconds"] else ""
    return (
        f"schedule: {per_block}the job runs {plan['seconds']:g} s from when a worker takes it, "
        "and changes state then, however fast its blocks are"
    )


def watch_job(client: UnseenClient, job_id: str, quiet: bool = False) -> dict[str, Any]:
    """Poll until the job rests (reviewed, or final), drawing progress on stderr."""
    out = Console(stderr=True, highlight=False)
    last_state = ""
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=out, disable=quiet) as progress:  # fmt: skip
        task = progress.add_task("queued", total=None)
        while True:
            job = client.job(job_id)
            blocks = job["progress"]
            progress.update(task, description=job["state"], completed=blocks["blocks_done"],
                            total=blocks["blocks_total"] or None)  # fmt: skip
            if job["state"] != last_state and not quiet:
                release_at = (job.get("schedule") or {}).get("release_at")
                until = ""
                if job["state"] == "running" and release_at:
                    until = f" (on schedule until {str(release_at)[11:19]} UTC)"
                progress.console.print(f"state: {job['state']}{until}")
                last_state = job["state"]
            if job["state"] in FINAL:
                break
            time.sleep(0.5)
    if not quiet:
        out.print(outcome(job), markup=False)
    return job


def resubmit_hint(job: dict[str, Any]) -> str:
    eps = f"-e {job['epsilon']:g}"
    if job.get("mode") == "query":
        return f"`unseen query PLAN.json -d {job['dataset']} {eps}`"
    return f"`unseen submit FILE.py -d {job['dataset']} {eps}`"


def charge_words(job: dict[str, Any]) -> str:
    """What became of the job's ε, in words (the API's ``charge``)."""
    eps = f"{job['epsilon']:g}"
    return {
        "charged": f"its ε {eps} was charged (its code or plan ran on the full data)",
        "returned": f"its ε {eps} was returned to your budget (nothing touched the full data)",
        "reserved": f"its ε {eps} is held until its schedule ends",
        "none": "no budget was involved (a run on the public sample)",
    }.get(str(job.get("charge")), f"its ε {eps}: see `unseen budget`")


def outcome(job: dict[str, Any]) -> str:
    """One line: how the job ended, what became of its ε, and what to do next."""
    state, short = job["state"], job["id"][:8]
    if state == "awaiting_review":
        return f"awaiting_review: an organizer reviews it; see it with `unseen result {short}`"
    if state == "released":
        return f"released: see it with `unseen result {short}`"
    if state == "rejected":
        reason = job.get("review_reason") or "no reason given"
        return (f"rejected by the organizers: {reason}; {charge_words(job)}; change it and "
                f"submit again with {resubmit_hint(job)}")  # fmt: skip
    if state == "failed":
        why = {"interrupted": "the server stopped while it ran",
               "infrastructure": "the sandbox or storage failed, not your code",
               "internal": "a bug on our side"}.get(str(job.get("error_class")), "")  # fmt: skip
        cls = f" ({job['error_class']}: {why})" if job.get("error_class") else ""
        return (f"failed{cls}; {charge_words(job)}; you can submit it again with "
                f"{resubmit_hint(job)}")  # fmt: skip
    return f"{state}; follow it with `unseen watch {short}`"

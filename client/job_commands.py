"""The contestant's journey from a terminal: the catalog, samples, full-data jobs, watching
them run, their released results, and the team's budget."""

from __future__ import annotations

import csv
import json
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from client.cli_common import EXIT_FAILED, AsJson, Token, Url, connected, errors
from client.run_command import read_analysis

FINAL = frozenset({"awaiting_review", "released", "rejected", "failed"})
console = Console(highlight=False)


def datasets(url: Url = None, token: Token = None, as_json: AsJson = False) -> None:
    """The catalog of your contest: units, columns, public bounds and key sets.

    Example: unseen datasets
    """
    with connected(url, token) as client:
        found = client.datasets()
        rounds = {c["name"]: c["rounds"] for c in client.contests()}
    if as_json:
        console.print_json(json.dumps(found))
        return
    open_now = sorted({r["number"] for rs in rounds.values() for r in rs if r["open_now"]})
    console.print(f"rounds open now: {', '.join(map(str, open_now)) or 'none'}")
    table = Table("name", "unit", "columns", "bounds", "key sets", "blocks", "sample rows")
    for d in found:
        keys = ", ".join(f"{k} ({len(v)})" for k, v in d["key_sets"].items())
        bounds = ", ".join(f"{k} [{lo:g}, {hi:g}]" for k, (lo, hi) in d["bounds"].items())
        table.add_row(d["name"], d["unit_column"], ", ".join(d["columns"]), bounds, keys,
                      str(d["blocks"]), str(d["sample_rows"]))  # fmt: skip
    console.print(table)


def sample(
    dataset: Annotated[str, typer.Argument(help="Dataset whose public sample to download.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Where to write the Parquet file.")],
    url: Url = None,
    token: Token = None,
) -> None:
    """Download a dataset's public sample (made by the organizers; never rows of the full data).

    Example: unseen sample transport_cards -o cards-sample.parquet
    """
    with connected(url, token) as client:
        client.download_sample(dataset, out)
    console.print(f"sample of {dataset} written to {out} ({out.stat().st_size:,} bytes)")


def submit(
    file: Annotated[Path, typer.Argument(help="Python file defining analyze(df).")],
    dataset: Annotated[str, typer.Option("--dataset", "-d", help="Dataset to run on.")],
    epsilon: Annotated[float, typer.Option("--epsilon", "-e", help="Privacy budget to spend.")],
    output: Annotated[
        list[str] | None,
        typer.Option("--output", "-o", help="name:lo:hi[:default]; default: the file's OUTPUTS"),
    ] = None,
    combine: Annotated[str, typer.Option(help="How blocks combine: mean or sum.")] = "mean",
    block_seconds: Annotated[
        float | None,
        typer.Option(
            "--block-seconds",
            help="Every block's time T: a block still running after T gets its defaults. "
            "Default: the node's (see `unseen schedule`). Time your code with "
            "`unseen run --sample` and ask for a few times that.",
        ),
    ] = None,
    wait: Annotated[bool, typer.Option(help="Watch it until it is reviewed.")] = True,
    url: Url = None,
    token: Token = None,
    as_json: AsJson = False,
) -> None:
    """Submit FILE.py to run on the full data; only noised, reviewed outputs come back.

    Example: unseen submit examples/mean_fare_by_period.py -d transport_cards -e 0.5
    """
    source, outputs = read_analysis(file, output)
    with connected(url, token) as client:
        job = client.submit(
            dataset, source, outputs, epsilon, combine=combine, block_seconds=block_seconds
        )
        if not as_json:
            console.print(f"submitted job {job['id']} on {dataset} (ε={epsilon:g})")
            console.print(_schedule_line(job))
        if wait:
            job = _watch(client, job["id"], quiet=as_json)
    if as_json:
        console.print_json(json.dumps(job, default=str))


def jobs(url: Url = None, token: Token = None, as_json: AsJson = False) -> None:
    """Your team's jobs, newest first.

    Example: unseen jobs
    """
    with connected(url, token) as client:
        found = client.jobs()
    if as_json:
        console.print_json(json.dumps(found, default=str))
        return
    table = Table("job", "dataset", "mode", "state", "ε", "blocks", "submitted")
    for job in found:
        progress = job["progress"]
        table.add_row(job["id"], job["dataset"], job["mode"], job["state"], f"{job['epsilon']:g}",
                      f"{progress['blocks_done']}/{progress['blocks_total']}",
                      str(job["created_at"])[:19])  # fmt: skip
    console.print(table)


def watch(
    job_id: Annotated[str, typer.Argument(help="The job to follow.")],
    url: Url = None,
    token: Token = None,
) -> None:
    """Follow a job: a live bar of blocks done and every state change, until it is reviewed.

    Example: unseen watch 3f2a...
    """
    with connected(url, token) as client:
        job = _watch(client, job_id)
    if job["state"] == "failed":
        raise typer.Exit(EXIT_FAILED)


def _schedule_line(job: dict[str, Any]) -> str:
    plan = job.get("schedule") or {}
    if not plan:
        return ""
    per_block = f"each block has {plan['block_seconds']:g} s; " if plan["block_seconds"] else ""
    return (
        f"schedule: {per_block}the job runs {plan['seconds']:g} s from when a worker takes it, "
        "and changes state then, however fast its blocks are"
    )


def schedule(url: Url = None, token: Token = None, as_json: AsJson = False) -> None:
    """The node's public schedule rules: the block time you may ask for, and how a job's
    length follows from it (it does not depend on the data, so neither does what you see).

    Example: unseen schedule
    """
    with connected(url, token) as client:
        rules = client.schedule_rules()
    if as_json:
        console.print_json(json.dumps(rules))
        return
    console.print(
        f"block time T: {rules['min_block_seconds']:g} to {rules['max_block_seconds']:g} s "
        f"(default {rules['default_block_seconds']:g} s)\n"
        f"job length: {rules['start_seconds']:g} s + ceil(blocks / {rules['slots']}) * "
        f"(T + {rules['block_overhead_seconds']:g} s); a query: {rules['query_seconds']:g} s"
    )


def _watch(client: Any, job_id: str, quiet: bool = False) -> dict[str, Any]:
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
        reason = f" ({job['error_class']})" if job.get("error_class") else ""
        tail = {
            "awaiting_review": "an organizer reviews it; see it with `unseen result`",
            "released": "released: see it with `unseen result`",
        }.get(job["state"], job.get("review_reason") or "")
        out.print(f"{job['state']}{reason}{': ' + tail if tail else ''}")
    return job


def result(
    job_id: Annotated[str, typer.Argument(help="A released job.")],
    as_csv: Annotated[bool, typer.Option("--csv", help="Print CSV.")] = False,
    url: Url = None,
    token: Token = None,
    as_json: AsJson = False,
) -> None:
    """The released values of a job with their noise scale, 95 % error bound and ε.

    Example: unseen result 3f2a... --csv > result.csv
    """
    with connected(url, token) as client:
        job = client.job(job_id)
    cells: list[dict[str, Any]] = job.get("result") or []
    if as_json:
        console.print_json(json.dumps({"job": job_id, "state": job["state"], "result": cells}))
        return
    if not cells:
        errors.print(f"job {job_id} is {job['state']}: nothing released (yet)")
        raise typer.Exit(EXIT_FAILED)
    keys = list(cells[0].get("keys") or {})
    if as_csv:
        writer = csv.writer(sys.stdout)
        writer.writerow([*keys, "output", "value", "noise_scale", "error_bound_95", "epsilon"])
        for c in cells:
            writer.writerow([*(c["keys"][k] for k in keys), c["name"], c["value"],
                             c["noise_scale"], c["error_bound_95"], c["epsilon"]])  # fmt: skip
        return
    table = Table(*keys, "output", "value", "noise scale", "95% error", "ε")
    for c in cells:
        table.add_row(*(str(c["keys"][k]) for k in keys), c["name"], f"{c['value']:g}",
                      f"{c['noise_scale']:.4g}", f"±{c['error_bound_95']:.4g}",
                      f"{c['epsilon']:.4g}")  # fmt: skip
    console.print(table)


def budget(url: Url = None, token: Token = None, as_json: AsJson = False) -> None:
    """Your team's privacy budget per population (the people behind one or more datasets: one
    budget for all of them): cap, spent, held by running jobs, left; and what the population
    has left contest-wide, over all teams. A job needs both; "available" is the smaller.

    Example: unseen budget
    """
    with connected(url, token) as client:
        found = client.budget()
    if as_json:
        console.print_json(json.dumps(found))
        return
    table = Table("team", "population", "datasets", "ε cap", "spent", "reserved", "remaining",
                  "population left", "available", "δ available")  # fmt: skip
    for b in found:
        table.add_row(b["team"], b["population"], ", ".join(b["datasets"]), f"{b['cap']:g}",
                      f"{b['spent']:g}", f"{b['reserved']:g}", f"{b['remaining']:g}",
                      f"{b['population_remaining']:g} of {b['population_cap']:g}",
                      f"{b['available']:g}", f"{b['delta_available']:g}")  # fmt: skip
    console.print(table)

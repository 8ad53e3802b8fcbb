"""The contestant's journey from a terminal: the catalog, samples, full-data jobs, watching
them run, their released results, and the team's budget."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from client import ids
from client.cli_common import (
    EXIT_FAILED,
    AsJson,
    Quiet,
    Token,
    Url,
    connected,
    errors,
    finite,
    print_ids,
)
from client.pricing import confirm_spend
from client.run_command import read_analysis
from client.watching import outcome, schedule_line, watch_job

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
    epsilon: Annotated[
        float,
        typer.Option("--epsilon", "-e", help="Privacy budget to spend.", callback=finite),
    ],
    output: Annotated[
        list[str] | None,
        typer.Option("--output", "-o", help="name:lo:hi[:default]; default: the file's OUTPUTS"),
    ] = None,
    combine: Annotated[str, typer.Option(help="How blocks combine: mean or sum.")] = "mean",
    block_seconds: Annotated[
        float | None,
        typer.Option(
            "--block-seconds",
            callback=finite,
            help="Every block's time T: a block still running after T gets its defaults. "
            "Default: the node's (see `unseen schedule`). Time your code with "
            "`unseen run --sample` and ask for a few times that.",
        ),
    ] = None,
    wait: Annotated[bool, typer.Option(help="Watch it until it is reviewed.")] = True,
    yes: Annotated[
        bool, typer.Option("--yes", "-y", help="Do not ask before spending (on a terminal).")
    ] = False,
    url: Url = None,
    token: Token = None,
    as_json: AsJson = False,
) -> None:
    """Submit FILE.py to run on the full data; only noised, reviewed outputs come back. It
    shows each output's noise scale and 95 % error first and, on a terminal, asks before
    spending ε (--yes skips the question).

    Example: unseen submit examples/mean_fare_by_period.py -d transport_cards -e 0.5
    """
    source, outputs = read_analysis(file, output)
    with connected(url, token) as client:
        priced = client.estimate(dataset, outputs, epsilon, combine, code=source)
        what = f"ε={epsilon:g} of your budget on {dataset} for {file.name}"
        confirm_spend(console, priced, what, yes, quiet=as_json)
        job = client.submit(
            dataset, source, outputs, epsilon, combine=combine, block_seconds=block_seconds
        )
        if not as_json:
            console.print(f"submitted job {job['id']} on {dataset} (ε={epsilon:g})")
            console.print(schedule_line(job))
        if wait:
            job = watch_job(client, job["id"], quiet=as_json)
    if as_json:
        console.print_json(json.dumps(job, default=str))


def jobs(
    url: Url = None, token: Token = None, as_json: AsJson = False, quiet: Quiet = False
) -> None:
    """Your team's jobs, newest first.

    Example: unseen jobs
    """
    with connected(url, token) as client:
        found = client.jobs()
    if quiet:
        print_ids(found)
        return
    if as_json:
        console.print_json(json.dumps(found, default=str))
        return
    shown = ids.short_ids(job["id"] for job in found)
    table = Table()  # the id whole: it is what the user types next
    table.add_column("job", no_wrap=True, min_width=max(map(len, shown.values()), default=8))
    for heading in ("dataset", "mode", "state", "ε", "blocks", "when"):
        table.add_column(heading, overflow="fold")
    for job in found:
        progress = job["progress"]
        table.add_row(shown[job["id"]], job["dataset"], job["mode"], job["state"],
                      _epsilon_cell(job), f"{progress['blocks_done']}/{progress['blocks_total']}",
                      str(job["created_at"])[5:16].replace("T", " "))  # fmt: skip
    console.print(table)
    if found:
        console.print("any unique start of a job id works: `unseen result " +
                      f"{shown[found[0]['id']]}`")  # fmt: skip


def _epsilon_cell(job: dict[str, Any]) -> str:
    """The job's ε and what became of it: held, charged, or returned (not spent)."""
    charge = job.get("charge", "reserved")
    if charge == "none":
        return "-"
    word = {"reserved": "held"}.get(charge, charge)
    return f"{job['epsilon']:g} {word}"


def watch(
    job_id: Annotated[str, typer.Argument(help="The job to follow (or its id's start).")],
    url: Url = None,
    token: Token = None,
) -> None:
    """Follow a job: a live bar of blocks done and every state change, until it is reviewed.

    Example: unseen watch 3f2a9c01
    """
    with connected(url, token) as client:
        job = watch_job(client, ids.job_id(client, job_id))
    if job["state"] == "failed":
        raise typer.Exit(EXIT_FAILED)


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
        f"(T + {rules['block_overhead_seconds']:g} s); a query: {rules['query_seconds']:g} s\n"
        f"sandboxes: {rules['sandbox']} (runtime/isolation; in the container form T also "
        "covers a container's start)"
    )


def result(
    job_id: Annotated[str, typer.Argument(help="A released job (or its id's start).")],
    as_csv: Annotated[bool, typer.Option("--csv", help="Print CSV.")] = False,
    url: Url = None,
    token: Token = None,
    as_json: AsJson = False,
) -> None:
    """The released values of a job with their noise scale, 95 % error bound and ε.

    Example: unseen result 3f2a9c01 --csv > result.csv
    """
    with connected(url, token) as client:
        job = client.job(ids.job_id(client, job_id))
    cells: list[dict[str, Any]] = job.get("result") or []
    if as_json:
        console.print_json(json.dumps({"job": job["id"], "state": job["state"], "result": cells,
                                       "charge": job.get("charge")}))  # fmt: skip
        return
    if not cells:
        errors.print(f"job {job['id'][:8]}: {_not_released(job)}", markup=False)
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


def _not_released(job: dict[str, Any]) -> str:
    if job["state"] in ("rejected", "failed"):
        return outcome(job)
    if job["state"] == "released":  # a release with no cell: partition selection kept none
        return "released, with no value: partition selection kept no key"
    return f"{job['state']}, nothing released yet; {outcome(job)}"


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

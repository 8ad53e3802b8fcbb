"""``unseen estimate`` and ``unseen query``: query mode from the terminal, over HTTP only."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from client.cli_common import (
    EXIT_USAGE,
    AsJson,
    Token,
    Url,
    connected,
    errors,
    finite,
    read_json_file,
)
from client.pricing import noise_table
from client.run_command import read_analysis
from client.watching import schedule_line, watch_job

Dataset = Annotated[str, typer.Option("--dataset", "-d", help="Dataset to query.")]
Epsilon = Annotated[
    float,
    typer.Option("--epsilon", "-e", help="Privacy budget to spend.", callback=finite),
]
Delta = Annotated[
    float,
    typer.Option(
        "--delta",
        callback=finite,
        help="Only when grouping by a column without a public key set: the δ that DP "
        "partition selection spends (e.g. 1e-8).",
    ),
]
PlanFile = Annotated[
    Path | None, typer.Argument(help="Plan as JSON (see README, Query mode).", show_default=False)
]
CountBy = Annotated[
    list[str] | None,
    typer.Option("--count-by", help="Shortcut: count per value of this column (repeatable)."),
]


def _plan(plan_file: Path | None, count_by: list[str] | None) -> dict[str, Any]:
    if plan_file is not None and count_by:
        errors.print("give a PLAN.json or --count-by, not both")
        raise typer.Exit(EXIT_USAGE)
    if plan_file is not None:
        plan = read_json_file(plan_file, "plan")
        if not isinstance(plan, dict):
            errors.print(f"{plan_file} must hold one JSON object: the plan")
            raise typer.Exit(EXIT_USAGE)
        return plan
    if count_by:
        return {"group_by": list(count_by), "aggregates": [{"name": "count", "op": "count"}]}
    errors.print("give a PLAN.json or --count-by COLUMN")
    raise typer.Exit(EXIT_USAGE)


def estimate(
    dataset: Annotated[str, typer.Option("--dataset", "-d", help="Dataset to price it on.")],
    epsilon: Epsilon,
    file: Annotated[
        Path | None,
        typer.Argument(
            help="FILE.py (an aggregate job, as `unseen submit` takes it) or PLAN.json (a "
            "query plan, see README, Query mode).",
            show_default=False,
        ),
    ] = None,
    count_by: CountBy = None,
    output: Annotated[
        list[str] | None,
        typer.Option("--output", "-o", help="FILE.py: name:lo:hi[:default]; default: OUTPUTS"),
    ] = None,
    combine: Annotated[str, typer.Option(help="FILE.py: how blocks combine, mean or sum.")] = (
        "mean"
    ),
    delta: Delta = 0.0,
    url: Url = None,
    token: Token = None,
    as_json: AsJson = False,
) -> None:
    """Noise scale and 95 % error bound of a job or a plan, before spending anything.

    Examples: unseen estimate examples/mean_fare_by_period.py -d transport_cards -e 0.5;
    unseen estimate --count-by station_id -d transport_cards -e 0.5
    """
    if file is not None and file.suffix == ".py":
        if count_by:
            errors.print("give FILE.py or --count-by, not both")
            raise typer.Exit(EXIT_USAGE)
        source, outputs = read_analysis(file, output)
        with connected(url, token) as client:
            quantities = client.estimate(dataset, outputs, epsilon, combine, code=source)
    else:
        plan = _plan(file, count_by)
        with connected(url, token) as client:
            quantities = client.estimate(dataset, plan=plan, epsilon=epsilon, delta=delta)
    if as_json:
        Console().print_json(json.dumps(quantities))
        return
    Console(highlight=False).print(noise_table(quantities))


def query(
    dataset: Dataset,
    epsilon: Epsilon,
    plan_file: PlanFile = None,
    count_by: CountBy = None,
    delta: Delta = 0.0,
    wait: Annotated[bool, typer.Option(help="Wait until reviewed or released.")] = True,
    url: Url = None,
    token: Token = None,
    as_json: AsJson = False,
) -> None:
    """Submit a query-mode job: the plan runs on the full data, only a DP release comes back.

    Example: unseen query --count-by line -d transport_cards -e 0.5
    """
    plan = _plan(plan_file, count_by)
    console = Console(highlight=False)
    with connected(url, token) as client:
        job = client.query(dataset, plan, epsilon, delta)
        if not as_json:
            spent = f"ε={epsilon:g}" + (f", δ={delta:g}" if delta else "")
            console.print(f"submitted query {job['id']} on {dataset} ({spent})")
            if schedule_line(job):
                console.print(schedule_line(job))
        if wait:
            job = watch_job(client, job["id"], quiet=as_json)
    if as_json:
        console.print_json(json.dumps(job, default=str))
        return
    if not wait:
        console.print(f"state: {job['state']}; follow it with `unseen watch {job['id'][:8]}`")
    elif job.get("result"):
        show_cells(console, job["result"])


def show_cells(console: Console, cells: list[dict[str, Any]]) -> None:
    if not cells:
        console.print("no cell was released: partition selection kept no key")
        return
    keys = list(cells[0].get("keys") or {})
    table = Table(*keys, "output", "value", "noise scale", "95% error")
    for cell in cells:
        row = [str(cell["keys"][k]) for k in keys]
        table.add_row(*row, cell["name"], f"{cell['value']:g}", f"{cell['noise_scale']:.4g}",
                      f"±{cell['error_bound_95']:.4g}")  # fmt: skip
    console.print(table)

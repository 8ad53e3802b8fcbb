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
from client.pricing import bounds_advice, noise_table
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
    Path | None,
    typer.Argument(
        help='Plan as JSON: {"group_by": [...], "aggregates": [{"name", "op", ...}], "filter"?, '
        '"max_rows_per_unit"?, "max_groups_per_unit"?} (README, "The plan as JSON").',
        show_default=False,
    ),
]
CountBy = Annotated[
    list[str] | None,
    typer.Option("--count-by", help="Shortcut: count per value of this column (repeatable)."),
]
RowsPerUnit = Annotated[
    int | None,
    typer.Option(
        "--rows-per-unit",
        min=1,
        help="R: a unit's rows counted in one cell (default: the dataset's maximum). The error "
        "grows with R; overrides the plan file's.",
        show_default=False,
    ),
]
GroupsPerUnit = Annotated[
    int | None,
    typer.Option(
        "--groups-per-unit",
        min=1,
        help="G: the cells a unit counts in (default: the dataset's maximum). The error grows "
        "with G; overrides the plan file's.",
        show_default=False,
    ),
]


def _plan(
    plan_file: Path | None,
    count_by: list[str] | None,
    rows_per_unit: int | None = None,
    groups_per_unit: int | None = None,
) -> dict[str, Any]:
    if plan_file is not None and count_by:
        errors.print("give a PLAN.json or --count-by, not both")
        raise typer.Exit(EXIT_USAGE)
    if plan_file is not None:
        plan = read_json_file(plan_file, "plan")
        if not isinstance(plan, dict):
            errors.print(f"{plan_file} must hold one JSON object: the plan")
            raise typer.Exit(EXIT_USAGE)
    elif count_by:
        plan = {"group_by": list(count_by), "aggregates": [{"name": "count", "op": "count"}]}
    else:
        errors.print("give a PLAN.json or --count-by COLUMN")
        raise typer.Exit(EXIT_USAGE)
    if rows_per_unit is not None:
        plan["max_rows_per_unit"] = rows_per_unit
    if groups_per_unit is not None:
        plan["max_groups_per_unit"] = groups_per_unit
    return plan


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
    rows_per_unit: RowsPerUnit = None,
    groups_per_unit: GroupsPerUnit = None,
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
    unseen estimate --count-by station_id --rows-per-unit 4 -d transport_cards -e 0.5
    """
    if file is not None and file.suffix == ".py":
        if count_by or rows_per_unit or groups_per_unit:
            errors.print(
                "--count-by, --rows-per-unit and --groups-per-unit are for query plans; "
                "FILE.py declares its outputs' bounds"
            )
            raise typer.Exit(EXIT_USAGE)
        source, outputs = read_analysis(file, output)
        with connected(url, token) as client:
            quantities = client.estimate(dataset, outputs, epsilon, combine, code=source)
    else:
        plan = _plan(file, count_by, rows_per_unit, groups_per_unit)
        with connected(url, token) as client:
            quantities = client.estimate(dataset, plan=plan, epsilon=epsilon, delta=delta)
    if as_json:
        Console().print_json(json.dumps(quantities))
        return
    console = Console(highlight=False)
    console.print(noise_table(quantities))
    advice = bounds_advice(quantities)
    if advice:
        console.print(advice)


def query(
    dataset: Dataset,
    epsilon: Epsilon,
    plan_file: PlanFile = None,
    count_by: CountBy = None,
    rows_per_unit: RowsPerUnit = None,
    groups_per_unit: GroupsPerUnit = None,
    delta: Delta = 0.0,
    wait: Annotated[bool, typer.Option(help="Wait until reviewed or released.")] = True,
    url: Url = None,
    token: Token = None,
    as_json: AsJson = False,
) -> None:
    """Submit a query-mode job: the plan runs on the full data, only a DP release comes back.

    Examples: unseen query --count-by line --rows-per-unit 4 -d transport_cards -e 0.5;
    unseen query plan.json -d transport_cards -e 0.5 (format: README, "The plan as JSON")
    """
    plan = _plan(plan_file, count_by, rows_per_unit, groups_per_unit)
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

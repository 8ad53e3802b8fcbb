"""What a job's release will cost and how noisy it will be, shown before anything is spent:
``unseen estimate`` prints it, ``unseen submit`` prints it and asks on a terminal."""

from __future__ import annotations

import sys
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from client.cli_common import EXIT_FAILED, errors


def noise_table(quantities: list[dict[str, Any]]) -> Table:
    table = Table("quantity", "ε", "sensitivity", "noise scale", "95% error")
    for q in quantities:
        table.add_row(q["name"], f"{q['epsilon']:g}", f"{q['sensitivity']:g}",
                      f"{q['noise_scale']:.4g}", f"±{q['error_bound_95']:.4g}")  # fmt: skip
    return table


def bounds_advice(quantities: list[dict[str, Any]]) -> str | None:
    """Which contribution bound drives a plan's error, and the flag that lowers it.

    Every noisy quantity of a plan moves by at most G·R per unit (partition selection by G), so
    the noise scales with both; the larger factor is the one with the most to give back when
    set to what a unit really contributes (the defaults are the dataset's maxima)."""
    sized = [q for q in quantities if q.get("max_rows_per_unit") and q.get("max_groups_per_unit")]
    if not sized:
        return None  # aggregate mode: the outputs' own bounds set the noise
    rows, groups = int(sized[0]["max_rows_per_unit"]), int(sized[0]["max_groups_per_unit"])
    product = f"G·R = {groups} x {rows} = {groups * rows:,}"
    if rows > groups:
        lead = f"R = {rows} rows per unit per cell drives it (lower it with --rows-per-unit)"
    elif groups > rows:
        lead = f"G = {groups} cells per unit drives it (lower it with --groups-per-unit)"
    else:
        lead = "R and G weigh the same (--rows-per-unit, --groups-per-unit)"
    return (
        f"error ∝ {product}: {lead}; set each to what one unit really contributes (a "
        "unit's rows and cells beyond them are dropped)"
    )


def confirm_spend(
    console: Console, quantities: list[dict[str, Any]], what: str, yes: bool, quiet: bool
) -> None:
    """Show the noise of ``what`` and, on a terminal without ``--yes``, ask before spending;
    a no exits 1 with nothing spent."""
    if not quiet:
        console.print(f"before spending: {what}")
        console.print(noise_table(quantities))
    if yes or not sys.stdin.isatty():
        return
    if not typer.confirm("spend it?", default=False, err=True):
        errors.print("not submitted: nothing spent (add --yes to skip this question)")
        raise typer.Exit(EXIT_FAILED)

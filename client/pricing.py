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

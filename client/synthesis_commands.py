"""`unseen datasets synthesize` and `unseen datasets fidelity`: DP synthetic public samples,
made from the full data on its node and charged to its population (organizers)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from client.cli_common import EXIT_USAGE, AsJson, Token, Url, connected, errors, read_json_file
from client.organizer_commands import datasets_app

console = Console(highlight=False)

Rows = Annotated[int | None, typer.Option(help="Rows of the synthetic sample (default 20000).")]
RowsPerUnit = Annotated[
    int | None,
    typer.Option(help="R: each unit counts with at most R rows (default 10); noise grows with R."),
]
Times = Annotated[
    list[str] | None,
    typer.Option("--time", help="column:START:END public time range, ISO dates (repeatable)."),
]
Grids = Annotated[
    list[str] | None, typer.Option("--grid", help="column:SECONDS time grid (default 3600).")
]
Bins = Annotated[
    list[str] | None, typer.Option("--bins", help="column:N bins of a bounded number (default 16).")
]
Marginals = Annotated[
    list[str] | None,
    typer.Option("--marginal", help="a:b, a 2-way marginal that matters (default: MST picks)."),
]
Analysis = Annotated[
    Path | None,
    typer.Option(
        help="A query plan (JSON, as `unseen query --plan`) whose exact answers the fidelity "
        "report compares (default: rows and each bounded number's mean by the smallest key set)."
    ),
]
Manifest = Annotated[
    Path | None, typer.Option(help="A `unseen data generate` manifest: time ranges from it.")
]


def _pairs(items: list[str] | None, what: str) -> list[tuple[str, str]]:
    out = []
    for item in items or []:
        column, sep, rest = item.partition(":")
        if not sep or not rest:
            raise typer.BadParameter(f"{item!r}: write {what}")
        out.append((column, rest))
    return out


def synthesis_body(
    name: str, epsilon: float, rows: int | None, rows_per_unit: int | None, times: list[str] | None,
    grids: list[str] | None, bins: list[str] | None, marginals: list[str] | None,
    manifest: Path | None, analysis: Path | None = None,
) -> dict[str, Any]:  # fmt: skip
    """The request body of a synthesis, from the command line (and a manifest's time ranges)."""
    body: dict[str, Any] = {"epsilon": epsilon, "time_bounds": {}}
    if manifest is not None:
        entries = read_json_file(manifest, "manifest").get("datasets", [])
        entry = next((e for e in entries if e.get("name") == name), None)
        if entry is None:
            errors.print(f"{manifest} describes no dataset named {name!r}")
            raise typer.Exit(EXIT_USAGE)
        body["time_bounds"].update(entry.get("time_bounds", {}))
    for column, rest in _pairs(times, "column:START:END"):
        start, sep, end = rest.rpartition(":") if rest.count(":") == 1 else _iso_pair(rest)
        if not sep:
            raise typer.BadParameter(f"{column}:{rest}: write column:START:END")
        body["time_bounds"][column] = [start, end]
    try:
        body["grid_seconds"] = {c: int(v) for c, v in _pairs(grids, "column:SECONDS")}
        body["bins"] = {c: int(v) for c, v in _pairs(bins, "column:N")}
    except ValueError as exc:
        raise typer.BadParameter(f"a whole number is needed: {exc}") from exc
    if marginals:
        body["marginals"] = [list(p) for p in _pairs(marginals, "a:b")]
    if analysis is not None:
        body["analysis"] = read_json_file(analysis, "analysis plan")
    if rows is not None:
        body["rows"] = rows
    if rows_per_unit is not None:
        body["rows_per_unit"] = rows_per_unit
    return body


def _iso_pair(rest: str) -> tuple[str, str, str]:
    """START:END where both may hold colons (2026-03-02T00:00:00): split at the middle one."""
    parts = rest.split(":")
    half = len(parts) // 2
    return ":".join(parts[:half]), ":", ":".join(parts[half:])


@datasets_app.command("synthesize")
def synthesize(
    name: Annotated[str, typer.Argument(help="Dataset whose public sample to make.")],
    epsilon: Annotated[
        float, typer.Option("--epsilon", "-e", help="ε, charged to its population.")
    ],
    rows: Rows = None,
    rows_per_unit: RowsPerUnit = None,
    time: Times = None,
    grid: Grids = None,
    bins: Bins = None,
    marginal: Marginals = None,
    manifest: Manifest = None,
    analysis: Analysis = None,
    url: Url = None,
    token: Token = None,
    as_json: AsJson = False,
) -> None:
    """Make the dataset's public sample a DP synthetic table of its full data (made on the
    data's node; the rows never leave it), charged ε to its population's contest-wide cap, and
    show the fidelity report.

    Example: unseen datasets synthesize transport_cards --epsilon 1 --rows 20000
             --time ts:2026-03-02:2026-03-09
    """
    body = synthesis_body(name, epsilon, rows, rows_per_unit, time, grid, bins, marginal,
                          manifest, analysis)  # fmt: skip
    with connected(url, token, timeout=1800.0) as client:
        made = client.synthesize(name, **body)
    if as_json:
        console.print_json(json.dumps(made, default=str))
        return
    console.print(f"{name}: synthetic sample of {made['rows']:,} rows, ε={made['epsilon']:g} "
                  "charged to its population; `unseen sample` now serves it")  # fmt: skip
    show_report(made["report"])


@datasets_app.command("fidelity")
def fidelity(
    name: Annotated[str, typer.Argument(help="Dataset.")],
    url: Url = None,
    token: Token = None,
    as_json: AsJson = False,
) -> None:
    """The fidelity report of the dataset's syntheses, newest first (organizers only: it is
    computed from the full data).

    Example: unseen datasets fidelity transport_cards
    """
    with connected(url, token) as client:
        found = client.syntheses(name)
    if as_json:
        console.print_json(json.dumps(found, default=str))
        return
    if not found:
        console.print(f"{name} has no synthesis yet: `unseen datasets synthesize {name} -e E`")
        return
    for s in found:
        charged = "charged" if s["charged"] else "returned"
        error = f" ({s['error']})" if s["error"] else ""
        console.print(f"synthesis {s['id']} at {s['created_at']}: {s['state']}, "
                      f"ε={s['epsilon']:g} {charged}, {s['rows']:,} rows{error}")  # fmt: skip
        if s["report"]:
            show_report(s["report"])


def show_report(report: dict[str, Any]) -> None:
    """The summary: errors (total variation distance from the full data) side by side."""
    table = Table(
        "marginals", "synthetic (DP)", "real rows (same size)", "independent 1-way (DP)",
        title="fidelity: total variation distance from the full data, mean (max); lower is better",
    )  # fmt: skip
    for way, found in report["summary"].items():
        table.add_row(way, *(f"{found[k]['mean']:.3f} ({found[k]['max']:.3f})"
                             for k in ("synthetic", "real_rows", "independent")))  # fmt: skip
    console.print(table)
    analysis = report.get("analysis")
    if analysis:
        show_analysis(analysis)
    console.print(f"pairs measured: {', '.join(' x '.join(p) for p in report['pairs']) or 'none'} "
                  f"({'selected by MST' if report['pairs_selected'] else 'named'}); each unit "
                  f"bounded to {report['rows_per_unit']} rows")  # fmt: skip


def show_analysis(analysis: dict[str, Any]) -> None:
    """Per aggregate of the analysis: its mean absolute error over the cells, each table's."""
    keys = ", ".join(k["name"] if isinstance(k, dict) else str(k)
                     for k in analysis["plan"].get("group_by", [])) or "everything"  # fmt: skip
    which = "the default analysis" if analysis["default"] else "your analysis"
    table = Table(
        "aggregate", "full data (mean |value|)", "synthetic (DP)", "real rows (same size)",
        "independent 1-way (DP)",
        title=f"{which}, by {keys} ({analysis['cells_total']:,} answers): mean absolute error "
        "against the full data's exact answer (relative); counts scaled to the full data",
    )  # fmt: skip
    for row in analysis["summary"]:
        cells = []
        for k in ("synthetic", "real_rows", "independent"):
            error, relative = row[k], row[f"{k}_relative"]
            shown = "n/a" if error is None else f"{error:g}"
            cells.append(shown if relative is None else f"{shown} ({relative:.1%})")
        table.add_row(f"{row['aggregate']} ({row['op']})", f"{row['full_mean_abs']:g}", *cells)
    console.print(table)

"""`unseen data generate`: write the three synthetic SODA-like datasets and their manifest."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

from syndata.soda import DATASETS, SIZES, write_all

app = typer.Typer(
    help="Synthetic SODA-like data for demos, tests and benchmarks.", no_args_is_help=True
)
console = Console(stderr=True)


@app.callback()
def data() -> None:
    """Synthetic SODA-like data: metro cards, taxi GPS, bus events."""


def _check(value: str, valid: list[str], option: str) -> None:
    if value not in valid:
        raise typer.BadParameter(
            f"unknown value {value!r}; use one of: {', '.join(valid)}", param_hint=option
        )


@app.command()
def generate(
    out: Annotated[Path, typer.Option(help="Directory to write the Parquet files into.")],
    size: Annotated[
        str, typer.Option(help=f"One of {', '.join(SIZES)}: ~20k, ~200k or 10M card rows.")
    ] = "demo",
    seed: Annotated[int, typer.Option(help="Same seed, same data.")] = 1,
    only: Annotated[
        list[str] | None,
        typer.Option(help=f"Only this dataset (repeatable): {', '.join(DATASETS)}."),
    ] = None,
) -> None:
    """Write transport_cards, taxi_gps and bus_events as Parquet, then manifest.json.

    Example: unseen data generate --size demo --seed 1 --out var/data
    """
    _check(size, list(SIZES), "--size")
    for name in only or []:
        _check(name, list(DATASETS), "--only")
    started = time.perf_counter()
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
        disable=size != "bench",
    ) as bar:
        tasks: dict[str, TaskID] = {}

        def show(name: str, done: int, total: int) -> None:
            if name not in tasks:
                tasks[name] = bar.add_task(name, total=total)
            bar.update(tasks[name], completed=done)

        manifest = write_all(out, size, seed, only, show)
    for entry in manifest["datasets"]:
        console.print(f"{entry['name']}: {entry['rows']:,} rows -> {out / entry['file']}")
    console.print(f"manifest -> {out / 'manifest.json'} ({time.perf_counter() - started:.1f} s)")


if __name__ == "__main__":
    app()

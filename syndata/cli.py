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

#: The generator's size and dataset names, written out so `unseen --help` need not import
#: pandas and numpy (tests/test_cli_startup.py checks they match syndata.soda's).
SIZE_NAMES = ("test", "demo", "bench")
DATASET_NAMES = ("transport_cards", "taxi_gps", "bus_events")

#: What this group needs beyond the client (the server extra); `unseen` checks it at start.
REQUIRES = ("numpy", "pandas", "pyarrow")

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
        str, typer.Option(help=f"One of {', '.join(SIZE_NAMES)}: ~20k, ~200k or 10M card rows.")
    ] = "demo",
    seed: Annotated[int, typer.Option(help="Same seed, same data.")] = 1,
    only: Annotated[
        list[str] | None,
        typer.Option(help=f"Only this dataset (repeatable): {', '.join(DATASET_NAMES)}."),
    ] = None,
) -> None:
    """Write transport_cards, taxi_gps and bus_events as Parquet, then manifest.json.

    Example: unseen data generate --size demo --seed 1 --out var/data
    """
    _check(size, list(SIZE_NAMES), "--size")
    for name in only or []:
        _check(name, list(DATASET_NAMES), "--only")
    from syndata.soda import write_all  # pandas and numpy: only when generating

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

"""`unseen data generate`: write the three synthetic SODA-like datasets and their manifest."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from syndata.soda import GENERATORS, SIZES, dataset_infos, write_dataset

app = typer.Typer(
    help="Synthetic SODA-like data for demos, tests and benchmarks.", no_args_is_help=True
)
console = Console(stderr=True)


@app.callback()
def data() -> None:
    """Synthetic SODA-like data: metro cards, taxi GPS, bus events."""


@app.command()
def generate(
    out: Annotated[Path, typer.Option(help="Directory to write the Parquet files into.")],
    size: Annotated[
        str, typer.Option(help="demo (~200k card rows), test (~20k), bench (10M).")
    ] = "demo",
    seed: Annotated[int, typer.Option(help="Same seed, same bytes.")] = 1,
    only: Annotated[
        list[str] | None, typer.Option(help="Generate only this dataset (repeatable).")
    ] = None,
) -> None:
    """Write transport_cards, taxi_gps and bus_events as Parquet plus manifest.json.

    Example: unseen data generate --size demo --seed 1 --out var/data
    """
    if size not in SIZES:
        raise typer.BadParameter(
            f"unknown size {size!r}; use one of: {', '.join(SIZES)}", param_hint="--size"
        )
    chosen = only or list(GENERATORS)
    unknown = [name for name in chosen if name not in GENERATORS]
    if unknown:
        raise typer.BadParameter(
            f"unknown dataset {unknown[0]!r}; use one of: {', '.join(GENERATORS)}",
            param_hint="--only",
        )
    spec = SIZES[size]
    out.mkdir(parents=True, exist_ok=True)
    entries = []
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
        disable=size != "bench",
    ) as bar:
        tasks: dict[str, int] = {}

        def show(name: str, done: int, total: int) -> None:
            if name not in tasks:
                tasks[name] = bar.add_task(name, total=total)
            bar.update(tasks[name], completed=done)

        for info in dataset_infos(spec):
            if info.name not in chosen:
                continue
            rows = write_dataset(info.name, spec, seed, out / info.file, show)
            entries.append({**asdict(info), "rows": rows, "size": size, "seed": seed})
            console.print(f"{info.name}: {rows:,} rows -> {out / info.file}")
    manifest = {"size": size, "seed": seed, "datasets": entries}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")


if __name__ == "__main__":
    app()

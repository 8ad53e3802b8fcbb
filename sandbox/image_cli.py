"""`unseen images ...`: build and inspect the runner image."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console

#: What this group needs beyond the client (the server extra); `unseen` checks it at start.
REQUIRES = ("docker",)

app = typer.Typer(help="Build and inspect the sandbox runner image.", no_args_is_help=True)
console = Console(stderr=True)


@app.command()
def build(
    server: Annotated[
        bool, typer.Option("--server", help="Also build the server image for docker-compose.")
    ] = False,
) -> None:
    """Build the runner image offline (debootstrap base, host wheels); quick when present.

    Example: unseen images build --server
    """
    # The Docker SDK is imported by the command that needs it, not by every `unseen` start.
    from sandbox.image import ImageBuildError, build_runner_image, build_server_image

    with console.status("building the runner image") as status:

        def show(line: str) -> None:
            status.update(line[:100])
            if not console.is_terminal:
                console.print(line, markup=False, highlight=False)

        try:
            tag = (build_server_image if server else build_runner_image)(show)
        except ImageBuildError as exc:
            console.print(f"[red]image build failed:[/] {exc}", highlight=False)
            raise typer.Exit(1) from exc
    typer.echo(tag)


@app.command()
def status() -> None:
    """Print the runner image's tag; exit 1 if it is not built.

    Example: unseen images status
    """
    from sandbox.image import ImageMissingError, ensure_runner_image

    try:
        typer.echo(ensure_runner_image())
    except ImageMissingError as exc:
        console.print(f"[red]{exc}", highlight=False)
        raise typer.Exit(1) from exc


if __name__ == "__main__":
    app()

"""`unseen server ...`: run the embedded server (API + worker + SQLite) on this machine."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(help="Run the unseen server on this machine.", no_args_is_help=True)


@app.callback()
def server() -> None:
    """Run the unseen server on this machine (API, embedded worker, SQLite)."""


@app.command("run")
def run(
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    data_dir: Annotated[
        Path | None, typer.Option(help="State directory (default $UNSEEN_DATA_DIR or var/server).")
    ] = None,
) -> None:
    """Serve the API with an embedded worker.

    Example: unseen server run --port 8000 --data-dir var/server
    """
    import uvicorn

    from api.app import create_app
    from api.settings import load_settings

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    settings = load_settings(data_dir)
    typer.echo(
        f"unseen server: data in {settings.data_dir}, bootstrap token in "
        f"{settings.data_dir / 'bootstrap-token'} (or $UNSEEN_BOOTSTRAP_TOKEN)",
        err=True,
    )
    uvicorn.run(create_app(settings), host=host, port=port, log_level="warning")


if __name__ == "__main__":
    app()

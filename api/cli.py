"""`unseen server ...`: run the embedded server (API + worker + SQLite) on this machine."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Annotated

import typer

#: What this group needs beyond the client (the server extra); `unseen` checks it at start.
REQUIRES = ("fastapi", "uvicorn", "sqlalchemy", "pandas", "docker")

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
    processes: Annotated[
        int,
        typer.Option(
            min=1,
            max=64,
            envvar="UNSEEN_API_PROCESSES",
            help="API processes sharing the port (one of them also runs the jobs): one per "
            "core for the most requests per second.",
        ),
    ] = 1,
) -> None:
    """Serve the API with an embedded worker.

    Example: unseen server run --port 8000 --data-dir var/server --processes 2
    """
    import uvicorn

    from api.app import create_app
    from api.settings import load_settings

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    settings = load_settings(data_dir)
    _migrate(settings.database_url)
    typer.echo(
        f"unseen server: data in {settings.data_dir}, bootstrap token in "
        f"{settings.data_dir / 'bootstrap-token'} (or $UNSEEN_BOOTSTRAP_TOKEN)",
        err=True,
    )
    if processes == 1:
        uvicorn.run(create_app(settings), host=host, port=port, log_level="warning")
        return
    # Each process builds its own app from the environment: pass the data dir on that way.
    os.environ["UNSEEN_DATA_DIR"] = str(settings.data_dir)
    uvicorn.run(
        "api.app:create_app",
        factory=True,
        workers=processes,
        host=host,
        port=port,
        log_level="warning",
    )


@app.command()
def migrate(
    data_dir: Annotated[
        Path | None, typer.Option(help="State directory (default $UNSEEN_DATA_DIR or var/server).")
    ] = None,
) -> None:
    """Bring the database ($UNSEEN_DATABASE_URL, or SQLite in the data directory) to this
    version's schema; the server also does it at every start.

    Example: UNSEEN_DATABASE_URL=postgresql+psycopg://unseen@db/unseen unseen server migrate
    """
    from api.settings import load_settings

    settings = load_settings(data_dir)
    revision = _migrate(settings.database_url)
    typer.echo(f"database at schema revision {revision}")


def _migrate(url: str) -> str | None:
    from sqlalchemy.exc import OperationalError

    from api.db import Database
    from api.migrate import SchemaError, current_revision

    try:
        database = Database(url)
    except (SchemaError, OperationalError) as exc:
        typer.echo(f"error: {str(exc).splitlines()[0]}", err=True)
        raise typer.Exit(1) from exc
    try:
        return current_revision(database.engine)
    finally:
        database.dispose()


if __name__ == "__main__":
    app()

"""The `unseen` command. Contestant and organizer commands talk HTTP only; server-side groups
(`data`, `images`, `server`) plug in through the ``unseen.commands`` entry-point group, so a
client-only install has none of them and imports no server code."""

from __future__ import annotations

from importlib.metadata import entry_points

import typer

from client import job_commands
from client.account_commands import login, logout
from client.audit_commands import audit_app
from client.organizer_commands import (
    datasets_app,
    licences_app,
    populations_app,
    review_app,
    teams_app,
)
from client.query_commands import estimate, query
from client.run_command import run
from client.synthesis_commands import synthesize as _synthesize  # noqa: F401 (registers it)

app = typer.Typer(
    name="unseen",
    help="Use-but-not-see compute for open-data contests.",
    no_args_is_help=True,
)


app.command("login")(login)
app.command("logout")(logout)
app.add_typer(datasets_app, name="datasets")
app.command("sample")(job_commands.sample)
app.command("run")(run)
app.command("submit")(job_commands.submit)
app.command("jobs")(job_commands.jobs)
app.command("watch")(job_commands.watch)
app.command("result")(job_commands.result)
app.command("budget")(job_commands.budget)
app.command("schedule")(job_commands.schedule)
app.command("estimate")(estimate)
app.command("query")(query)
app.add_typer(teams_app, name="teams")
app.add_typer(licences_app, name="licences")
app.add_typer(review_app, name="review")
app.add_typer(populations_app, name="populations")
app.add_typer(audit_app, name="audit")


def _mount_plugins() -> None:
    for entry in entry_points(group="unseen.commands"):
        try:
            sub_app = entry.load()
        except ImportError as exc:  # the server extra is not installed here
            hidden = typer.Typer(help=f"(unavailable: {exc.name} is not installed)")
            app.add_typer(hidden, name=entry.name, hidden=True)
            continue
        app.add_typer(sub_app, name=entry.name)


_mount_plugins()


def main() -> None:
    app()


if __name__ == "__main__":
    main()

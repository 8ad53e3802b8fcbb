"""The `unseen` command. Contestant and organizer commands talk HTTP only; server-side groups
(`data`, `images`, `server`) plug in through the ``unseen.commands`` entry-point group, so a
client-only install has none of them and imports no server code."""

from __future__ import annotations

import importlib.util
import sys
from importlib.metadata import entry_points

import typer

from client import job_commands
from client.account_commands import login, logout
from client.audit_commands import audit_app
from client.contest_commands import budgets_app, contests_app
from client.organizer_commands import (
    datasets_app,
    licences_app,
    populations_app,
    review_app,
    teams_app,
)
from client.people_commands import organizers_app, password, users_app
from client.query_commands import estimate, query
from client.run_command import run
from client.synthesis_commands import synthesize as _synthesize  # noqa: F401 (registers it)
from client.token_commands import tokens_app

app = typer.Typer(
    name="unseen",
    help="Use-but-not-see compute for open-data contests.",
    no_args_is_help=True,
)


app.command("login")(login)
app.command("logout")(logout)
app.command("password")(password)
app.add_typer(organizers_app, name="organizers")
app.add_typer(users_app, name="users")
app.add_typer(contests_app, name="contests")
app.add_typer(budgets_app, name="budgets")
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
app.add_typer(tokens_app, name="tokens")


def _missing_module(module: str) -> str | None:
    """The first module a plugin declares it needs (its ``REQUIRES``) that is not installed;
    found without importing it, so a start stays quick."""
    required: tuple[str, ...] = getattr(sys.modules.get(module), "REQUIRES", ())
    return next((name for name in required if importlib.util.find_spec(name) is None), None)


def _mount_stand_in(group: str, missing: str) -> None:
    """Stands in for a server-side group this install lacks: any use of it says what to
    install, in one line, instead of a traceback or "No such command"."""

    def refuse() -> None:
        typer.echo(
            f"error: `unseen {group}` needs the server's packages ({missing} is not installed "
            "here); install them with: pip install 'unseen[server]'",
            err=True,
        )
        raise typer.Exit(2)

    app.command(
        group,
        # rich renders help as markup: "\\[" keeps the brackets of the extra's name
        help="(needs the server's packages: pip install 'unseen\\[server]')",
        context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
        add_help_option=False,
    )(refuse)


def _mount_plugins() -> None:
    for entry in entry_points(group="unseen.commands"):
        try:
            sub_app = entry.load()
        except ImportError as exc:  # a plugin module that imports its packages at the top
            _mount_stand_in(entry.name, exc.name or "a package")
            continue
        missing = _missing_module(entry.module)
        if missing is not None:
            _mount_stand_in(entry.name, missing)
            continue
        app.add_typer(sub_app, name=entry.name)


_mount_plugins()


def main() -> None:
    app()


if __name__ == "__main__":
    main()

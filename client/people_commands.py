"""Accounts from the terminal: the first organizers (with the bootstrap token), teams and their
members, an organizer's reset of a contestant's forgotten password, and `unseen password` to
change one's own. Every new password is shown once, here, and never again."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from client import config
from client.api import UnseenClient
from client.cli_common import (
    EXIT_USAGE,
    AsJson,
    Token,
    Url,
    connected,
    errors,
    one_line_errors,
)
from client.config import NotLoggedIn
from client.organizer_commands import teams_app
from client.passwords import AskPassword, PasswordStdin, chosen, stdin_line

console = Console(highlight=False)
organizers_app = typer.Typer(help="Organizers (made with the server's bootstrap token).",
                             no_args_is_help=True)  # fmt: skip
users_app = typer.Typer(help="Users' accounts (organizers).", no_args_is_help=True)

Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="Names only, one per line.")]


def _bootstrap_token(given: str | None, data_dir: Path) -> str:
    if given:
        return given
    try:
        return (data_dir / "bootstrap-token").read_text(encoding="utf-8").strip()
    except OSError:
        errors.print("give the server's bootstrap token: --bootstrap-token or "
                     f"UNSEEN_BOOTSTRAP_TOKEN (the server keeps it in {data_dir}/bootstrap-token; "
                     "on its machine, --data-dir DIR reads it)")  # fmt: skip
        raise typer.Exit(EXIT_USAGE) from None


def _server(url: str | None) -> str:
    try:
        return config.resolve(url, None)[0]
    except NotLoggedIn:
        errors.print("no server given; pass --url URL or set UNSEEN_URL")
        raise typer.Exit(EXIT_USAGE) from None


def _show_password(name: str, password: str, url: str, logged_in: bool = False) -> None:
    console.print(f"password of {name} (shown once, now): {password}")
    if not logged_in:
        console.print(f"{name} logs in with `unseen login {url} --name {name}` and changes "
                      "it with `unseen password`")  # fmt: skip


@organizers_app.command("add")
def add_organizer(
    name: Annotated[str, typer.Argument(help="The organizer's user name.")],
    password_stdin: PasswordStdin = False,
    ask_password: AskPassword = False,
    login: Annotated[
        bool, typer.Option("--login", help="Keep the new organizer's token, as `unseen login`.")
    ] = False,
    bootstrap_token: Annotated[
        str | None,
        typer.Option(envvar="UNSEEN_BOOTSTRAP_TOKEN", help="The server's bootstrap secret."),
    ] = None,
    data_dir: Annotated[
        Path,
        typer.Option(
            envvar="UNSEEN_DATA_DIR",
            help="On the server's machine: read its bootstrap-token file from here.",
        ),
    ] = Path("var/server"),
    url: Url = None,
    as_json: AsJson = False,
) -> None:
    """Create an organizer with the server's bootstrap token; without --password-stdin or
    --ask-password a password is generated and shown once.

    Example: unseen organizers add olga --login
    """
    server = _server(url)
    secret = _bootstrap_token(bootstrap_token, data_dir)
    password, made_here = chosen(password_stdin, ask_password)
    with one_line_errors(server), UnseenClient(server, secret) as client:
        created = client.create_organizer(name, password)
    if login:
        config.save(server, created["token"], created["name"])
    if as_json:
        shown: dict[str, Any] = {**created, **({"password": password} if made_here else {})}
        console.print_json(json.dumps(shown))
        return
    console.print(f"organizer {name} created")
    if made_here:
        _show_password(name, password, server, logged_in=login)
    if login:
        console.print(f"logged in to {server} as {name}; token kept in {config.config_path()}")


@teams_app.command("create")
def create_team(
    name: Annotated[str, typer.Argument(help="The team's name.")],
    contest: Annotated[
        str | None, typer.Option(help="Contest it enters (default: the only one).")
    ] = None,
    url: Url = None,
    token: Token = None,
) -> None:
    """Create a team; it gets a budget on each of its contest's populations.

    Example: unseen teams create team-alpha --contest soda-2027
    """
    with connected(url, token) as client:
        client.create_team(name, contest)
    console.print(f"team {name} created; add members with `unseen teams add-member {name} NAME`")


@teams_app.command("list")
def list_teams(url: Url = None, token: Token = None, quiet: Quiet = False,
               as_json: AsJson = False) -> None:  # fmt: skip
    """Every team: contest and members (`unseen teams` shows the way to round two too).

    Example: unseen teams list -q
    """
    with connected(url, token) as client:
        found = client.teams_status()
    if as_json:
        console.print_json(json.dumps(found, default=str))
    elif quiet:
        for team in found:
            console.out(team["name"], highlight=False)
    else:
        table = Table("team", "contest", "members")
        for t in found:
            members = ", ".join(m["name"] for m in t["members"]) or "-"
            table.add_row(t["name"], t["contest"] or "-", members)
        console.print(table)


@teams_app.command("add-member")
def add_member(
    team: Annotated[str, typer.Argument(help="The team.")],
    name: Annotated[str, typer.Argument(help="The contestant's user name.")],
    password_stdin: PasswordStdin = False,
    ask_password: AskPassword = False,
    url: Url = None,
    token: Token = None,
    as_json: AsJson = False,
) -> None:
    """Add a contestant to a team; without --password-stdin or --ask-password a password is
    generated and shown once, for you to hand over.

    Example: unseen teams add-member team-alpha alice
    """
    password, made_here = chosen(password_stdin, ask_password)
    with connected(url, token) as client:
        created = client.add_member(team, name, password)
        server = client.url
    if as_json:
        shown: dict[str, Any] = {**created, **({"password": password} if made_here else {})}
        console.print_json(json.dumps(shown))
        return
    console.print(f"{name} added to {team}")
    if made_here:
        _show_password(name, password, server)


@users_app.command("reset-password")
def reset_password(
    name: Annotated[str, typer.Argument(help="The contestant who forgot their password.")],
    url: Url = None,
    token: Token = None,
    as_json: AsJson = False,
) -> None:
    """Give a contestant a temporary password (shown once) and revoke all their tokens.

    Example: unseen users reset-password alice
    """
    with connected(url, token) as client:
        reset = client.reset_password(name)
        server = client.url
    if as_json:
        console.print_json(json.dumps(reset))
        return
    console.print(f"{name}'s password is reset and their {reset['tokens_revoked']} token(s) "
                  "revoked")  # fmt: skip
    _show_password(name, reset["password"], server)


def password(
    password_stdin: Annotated[
        bool,
        typer.Option(
            "--password-stdin",
            help="Read two lines from standard input: the current password (empty if "
            "you have none), then the new one.",
        ),
    ] = False,
    url: Url = None,
    token: Token = None,
) -> None:
    """Change your password (after a reset: replace the temporary one). Your tokens stay.

    Example: unseen password
    """
    if password_stdin:
        current = sys.stdin.readline().rstrip("\r\n")
        new = stdin_line("new password")
    else:
        current = typer.prompt("current password (Enter if you have none)", default="",
                               show_default=False, hide_input=True)  # fmt: skip
        new = typer.prompt("new password", hide_input=True, confirmation_prompt=True)
    if current and current == new:
        errors.print("the new password is the current one; pick another")
        raise typer.Exit(EXIT_USAGE)
    with connected(url, token) as client:
        client.set_password(new, current or None)
    console.print("password changed; log in with it from now on")

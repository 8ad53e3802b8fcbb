"""Where a new account's password comes from on the command line: generated (shown once),
read from standard input (scripts, password managers) or asked for on the terminal."""

from __future__ import annotations

import secrets
import sys
from typing import Annotated

import typer

from client.cli_common import EXIT_USAGE, errors

PasswordStdin = Annotated[
    bool, typer.Option("--password-stdin", help="Read the password from standard input.")
]
AskPassword = Annotated[
    bool, typer.Option("--ask-password", help="Type the password (hidden) instead.")
]


def generated() -> str:
    """16 URL-safe characters (96 random bits): long and varied enough for the server."""
    return secrets.token_urlsafe(12)


def stdin_line(what: str) -> str:
    line = sys.stdin.readline().rstrip("\r\n")
    if not line:
        errors.print(f"no {what} on standard input; pipe one line in (or leave out "
                     "--password-stdin)")  # fmt: skip
        raise typer.Exit(EXIT_USAGE)
    return line


def chosen(password_stdin: bool, ask: bool) -> tuple[str, bool]:
    """The password for a new account and whether it was generated here (then show it)."""
    if password_stdin and ask:
        errors.print("give --password-stdin or --ask-password, not both")
        raise typer.Exit(EXIT_USAGE)
    if password_stdin:
        return stdin_line("password"), False
    if ask:
        return str(typer.prompt("password", hide_input=True, confirmation_prompt=True)), False
    return generated(), True

"""`unseen login` and `unseen logout`: get a token once, keep it in the user's config file."""

from __future__ import annotations

import sys
from typing import Annotated

import typer
from rich.console import Console

from client import config
from client.api import UnseenClient
from client.cli_common import EXIT_FAILED, Token, Url, connected, errors, one_line_errors
from client.token_commands import seconds, when


def login(
    url: Annotated[str, typer.Argument(help="The contest's server, e.g. https://unseen.example")],
    name: Annotated[str | None, typer.Option("--name", "-n", help="Your user name.")] = None,
    token: Annotated[
        str | None, typer.Option("--token", help="Keep a token you were given instead.")
    ] = None,
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from standard input.")
    ] = False,
    expires_in: Annotated[
        str | None,
        typer.Option(
            "--expires-in",
            help="How long the token lasts, e.g. 7d, 12h (default and maximum: the server's).",
        ),
    ] = None,
) -> None:
    """Log in and keep the token in your config file (readable by you only).

    Example: unseen login https://unseen.example --name alice --expires-in 7d
    """
    url, until = url.rstrip("/"), ""
    lifetime = seconds(expires_in) if expires_in is not None else None
    with one_line_errors(url), UnseenClient(url, token) as client:
        if token is not None:
            user = client.me()["name"]
        else:
            name = name or typer.prompt("name")
            secret = sys.stdin.readline().rstrip("\n") if password_stdin else None
            secret = secret or typer.prompt("password", hide_input=True)
            issued = client.login(name, secret, label="unseen CLI", expires_in=lifetime)
            token, user = issued["token"], issued["name"]
            if issued.get("expires_at"):
                until = f"; it expires {when(issued['expires_at'])} UTC"
    path = config.save(url, token, user)
    Console(highlight=False).print(
        f"logged in to {url} as {user}; token kept in {path} (0600){until}"
    )


def logout(url: Url = None, token: Token = None) -> None:
    """Revoke the token in use and forget it.

    Example: unseen logout
    """
    with connected(url, token) as client:
        current = next((t for t in client.tokens() if t["current"]), None)
        if current is None:
            errors.print("the server does not know this token as yours; nothing revoked")
            raise typer.Exit(EXIT_FAILED)
        client.revoke_token(current["id"])
    config.forget()
    Console(highlight=False).print("logged out: the token is revoked and forgotten")

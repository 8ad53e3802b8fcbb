"""`unseen tokens list` and `unseen tokens revoke`: see where you are logged in, and end it.

Secrets are never shown: the server keeps only their hashes, and a list shows each token's id.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from client.cli_common import EXIT_USAGE, AsJson, Token, Url, connected, errors
from client.ids import HEX, _pick, short_ids

tokens_app = typer.Typer(
    help="Your API tokens: list them, revoke one or all the others; their lifetimes."
)

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_DURATION = re.compile(r"^(\d+)([smhd]?)$")


def seconds(text: str, flag: str = "--expires-in") -> int:
    """``90d``, ``12h``, ``30m``, ``600s`` or ``600`` as seconds; a usage error otherwise."""
    found = _DURATION.match(text.strip().lower())
    if not found:
        errors.print(f"{flag} {text!r}: give a number with d, h, m or s, e.g. 30d or 12h")
        raise typer.Exit(EXIT_USAGE)
    return int(found.group(1)) * _UNITS[found.group(2) or "s"]


def when(value: str | None, form: str = "%Y-%m-%d %H:%M") -> str:
    if value is None:
        return "-"
    at = datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)
    return at.strftime(form)


def _state(token: dict[str, Any], now: datetime) -> str:
    if token["revoked_at"] is not None:
        return "revoked"
    expires = token.get("expires_at")
    if expires is not None and datetime.fromisoformat(expires.replace("Z", "+00:00")) <= now:
        return "expired"
    return "current" if token["current"] else "live"


@tokens_app.command("list")
def list_tokens(
    url: Url = None,
    token: Token = None,
    as_json: AsJson = False,
    of: Annotated[
        str | None, typer.Option("--of", help="Organizers: another user's tokens.")
    ] = None,
) -> None:
    """Your tokens (times in UTC): which one is this session's ("current"), when each expires,
    when it was last used. Secrets are never shown; revoke one by its id.

    Example: unseen tokens list
    """
    with connected(url, token) as client:
        tokens = client.tokens(of)
    if as_json:
        print(json.dumps(tokens, indent=2))
        return
    now = datetime.now(UTC)
    shown = short_ids(t["id"] for t in tokens)
    # 80 columns: ids whole, the label shortened if need be.
    table = Table(box=None, padding=(0, 1, 0, 0), pad_edge=False)
    table.add_column("id", no_wrap=True)
    table.add_column("label", no_wrap=True, overflow="ellipsis", max_width=14)
    for heading in ("created", "expires (UTC)", "last used", "state"):
        table.add_column(heading, no_wrap=True)
    for t in tokens:
        table.add_row(shown[t["id"]], t["label"], when(t["created_at"], "%Y-%m-%d"),
                      when(t["expires_at"]), when(t["last_used_at"]), _state(t, now))  # fmt: skip
    Console(highlight=False).print(table)


@tokens_app.command("revoke")
def revoke(
    token_id: Annotated[
        str | None, typer.Argument(help="The token's id, or any unique start of it.")
    ] = None,
    all_others: Annotated[
        bool, typer.Option("--all-others", help="Revoke every token but this session's.")
    ] = False,
    url: Url = None,
    token: Token = None,
) -> None:
    """Revoke one token at once, or all but the one in use (a lost laptop).

    Example: unseen tokens revoke 3f2a9c01    |    unseen tokens revoke --all-others
    """
    if (token_id is None) == (not all_others):
        errors.print("give a token id (see `unseen tokens list`) or --all-others, not both")
        raise typer.Exit(EXIT_USAGE)
    out = Console(highlight=False)
    with connected(url, token) as client:
        if all_others:
            revoked = client.revoke_other_tokens()
            out.print(f"revoked {len(revoked)} other token(s); this session's stays")
            return
        assert token_id is not None
        ref = token_id.strip().lower()
        if not HEX.match(ref):
            errors.print(f"{token_id!r} is not a token id; copy one from `unseen tokens list`")
            raise typer.Exit(EXIT_USAGE)
        ids = [t["id"] for t in client.tokens() if t["id"].startswith(ref)]
        chosen = _pick("token", ref, ids, "unseen tokens list")
        client.revoke_token(chosen)
    out.print(f"revoked token {short_ids([chosen])[chosen]}")


def duration(total: int) -> str:
    """Seconds as the largest whole unit that fits: 2592000 -> 30d, 5400 -> 90m."""
    for unit, size in sorted(_UNITS.items(), key=lambda item: -item[1]):
        if total % size == 0:
            return f"{total // size}{unit}"
    return f"{total}s"


@tokens_app.command("policy")
def policy(
    default: Annotated[
        str | None,
        typer.Option(
            "--default", help="Organizers: a new token's lifetime, e.g. 30d.", show_default=False
        ),
    ] = None,
    maximum: Annotated[
        str | None,
        typer.Option(
            "--max",
            help="Organizers: the most a login may ask for, e.g. 90d; live "
            "tokens past it are cut back to it.",
            show_default=False,
        ),
    ] = None,
    url: Url = None,
    token: Token = None,
    as_json: AsJson = False,
) -> None:
    """How long tokens last: show the default and maximum lifetime, or (organizers) set them.

    Example: unseen tokens policy    |    unseen tokens policy --default 7d --max 30d
    """
    out = Console(highlight=False)
    with connected(url, token) as client:
        found = client.token_policy()
        if default is not None or maximum is not None:
            found = client.set_token_policy(
                seconds(default, "--default") if default else found["default_seconds"],
                seconds(maximum, "--max") if maximum else found["max_seconds"],
            )
    if as_json:
        out.print_json(json.dumps(found))
        return
    who = (
        f"set by {found['set_by']} at {when(found['set_at'])}"
        if found["set_by"]
        else ("the server's settings")
    )
    out.print(f"tokens last {duration(found['default_seconds'])} by default, at most "
              f"{duration(found['max_seconds'])} ({who})")  # fmt: skip
    if found.get("tokens_shortened"):
        out.print(f"{found['tokens_shortened']} live token(s) cut back to the new maximum")

"""What every command talking to the server shares: connection options, one-line errors, exit
codes scripts can rely on (0 ok, 1 request failed, 2 usage, 3 refused by policy or budget)."""

from __future__ import annotations

import json
import math
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import httpx
import typer
from rich.console import Console

from client.config import NotLoggedIn, resolve

if TYPE_CHECKING:
    from client.api import UnseenClient

EXIT_FAILED, EXIT_USAGE, EXIT_REFUSED = 1, 2, 3
REFUSALS = frozenset({"bad_code", "bad_plan", "budget_exceeded", "not_admitted", "contest_closed",
                      "cap_below_spent", "cap_above_population", "population_conflict",
                      "population_exists", "population_caps_differ"})  # fmt: skip

Url = Annotated[
    str | None,
    typer.Option(envvar="UNSEEN_URL", help="Server URL (default: from `unseen login`)."),
]
Token = Annotated[
    str | None,
    typer.Option(envvar="UNSEEN_TOKEN", help="API token (default: from `unseen login`)."),
]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="Ids only, one per line (scripts).")]

errors = Console(stderr=True, highlight=False, soft_wrap=True)  # one line, however long

#: Bidirectional overrides and isolates: they reorder what a terminal shows ("Trojan Source").
_BIDI = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def verbatim(text: str) -> str:
    """Contestant text as it is, every character visible: no markup, no terminal control.

    Code and logs are the team's words; rendered as rich markup, ``[/]`` crashed the review
    and ``[white on white]`` hid a line. Control characters (escape sequences, carriage
    returns) and bidi overrides could hide or reorder lines the same way, so they are shown
    as escapes; newlines and tabs stay.
    """
    return "".join(
        ch
        if ch in "\n\t" or (ch.isprintable() and ch not in _BIDI)
        else ch.encode("unicode_escape").decode("ascii")
        for ch in text
    )


@contextmanager
def connected(url: str | None, token: str | None, timeout: float = 60.0) -> Iterator[UnseenClient]:
    """A client for the resolved server and token; refusals and network trouble become one
    line and an exit code."""
    from client.api import UnseenClient

    try:
        url, token = resolve(url, token)
    except NotLoggedIn:
        errors.print("not logged in; run `unseen login URL` (or give --url and --token)")
        raise typer.Exit(EXIT_FAILED) from None
    with one_line_errors(url), UnseenClient(url, token, timeout) as client:
        yield client


@contextmanager
def one_line_errors(url: str) -> Iterator[None]:
    """Turn the server's refusals and network trouble into one line and an exit code."""
    from client.api import UnseenError

    try:
        yield
    except UnseenError as exc:
        if exc.code == "unauthenticated" and "missing" in exc.message:
            errors.print(f"not logged in to {url}; run `unseen login {url}` (or give --token)")
            raise typer.Exit(EXIT_FAILED) from exc
        if exc.code == "token_expired":
            errors.print(f"token expired; run `unseen login {url}`")
            raise typer.Exit(EXIT_FAILED) from exc
        errors.print(f"refused: {for_the_terminal(exc.message)}", markup=False)
        raise typer.Exit(EXIT_REFUSED if exc.code in REFUSALS else EXIT_FAILED) from exc
    except httpx.HTTPError as exc:
        errors.print(f"cannot reach the server at {url} ({exc}); check --url or UNSEEN_URL")
        raise typer.Exit(EXIT_FAILED) from exc


#: The API's hints name its routes; a terminal user types commands.
_ROUTES = (
    ("GET /v1/teams/status", "`unseen teams`"),
    ("GET /v1/teams", "`unseen teams`"),
    ("GET /v1/jobs", "`unseen jobs`"),
    ("GET /v1/review", "`unseen review`"),
    ("GET /v1/schedule", "`unseen schedule`"),
    ("GET /v1/datasets", "`unseen datasets`"),
    ("GET /v1/budget", "`unseen budget`"),
    ("GET /v1/contests", "`unseen contests`"),
    ("POST /v1/contests", "`unseen contests create`"),
    ("PUT /v1/me/password", "`unseen password`"),
    (
        "this needs an organizer's token",
        "this needs an organizer: log in as one (`unseen login "
        "URL --name NAME`) or give an organizer's --token",
    ),
)
#: Request fields the CLI sets from a flag.
_FLAGS = {"epsilon": "--epsilon", "delta": "--delta", "block_seconds": "--block-seconds",
          "dataset": "--dataset", "combine": "--combine"}  # fmt: skip
_FIELD = re.compile(r"\b(" + "|".join(_FLAGS) + r"): ")


def for_the_terminal(message: str) -> str:
    """The server's message with its routes and request fields named as commands and flags."""
    for route, command in _ROUTES:
        message = message.replace(route, command)
    message = _FIELD.sub(lambda m: f"{_FLAGS[m.group(1)]}: ", message)
    return message.replace("(see GET /docs for the schema)", f"(see `{typed_command()} --help`)")


#: Command groups: their commands are two words (`unseen licences approve`).
GROUPS = frozenset({"datasets", "teams", "licences", "review", "populations", "audit", "data",
                    "images", "server", "contests", "organizers", "users", "budgets",
                    "tokens"})  # fmt: skip


def typed_command(argv: list[str] | None = None) -> str:
    """The command being run, as typed (typer calls commands outside click's context)."""
    typed = (sys.argv if argv is None else argv)[1:3]
    words = [w for w in typed if re.fullmatch(r"[a-z][a-z-]*", w)]
    if words and words[0] not in GROUPS:
        words = words[:1]
    return " ".join(["unseen", *words])


def finite(context: typer.Context, param: typer.CallbackParam, value: float | None) -> float | None:
    """Option callback: NaN and ±inf are refused in one line naming the flag."""
    if value is not None and not math.isfinite(value):
        flag = max(param.opts, key=len) if param.opts else str(param.name)
        errors.print(f"{flag} must be a finite number, not {value}; give one such as 0.5")
        raise typer.Exit(EXIT_USAGE)
    return value


def non_negative(
    context: typer.Context, param: typer.CallbackParam, value: float | None
) -> float | None:
    """Option callback for caps: NaN, ±inf and negatives are refused in one line naming the
    flag (0 is a cap: nothing more may be spent)."""
    if value is not None and not (math.isfinite(value) and value >= 0):
        flag = max(param.opts, key=len) if param.opts else str(param.name)
        errors.print(f"{flag} must be a finite number, 0 or more, not {value}; give one such as 5")
        raise typer.Exit(EXIT_USAGE)
    return value


def show_cap(console: Console, found: dict[str, Any]) -> None:
    """One line for a cap just set: a population's contest-wide one or a team's."""
    if "team" in found:
        console.print(f"{found['team']} on {found['population']}: cap ε={found['cap']:g}, "
                      f"ε={found['available']:g} available")  # fmt: skip
    else:
        console.print(f"population {found['name']}: cap ε={found['cap']:g} over all teams, "
                      f"ε={found['remaining']:g} left")  # fmt: skip


def read_json_file(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        errors.print(f"cannot read {path}: {exc.strerror}")
        raise typer.Exit(EXIT_USAGE) from exc
    except ValueError as exc:
        errors.print(f"{path} is not valid JSON ({exc}); write the {what} as a JSON object")
        raise typer.Exit(EXIT_USAGE) from exc


def print_ids(found: list[dict[str, Any]]) -> None:
    """Each item's whole id on a line of its own, nothing else: for `$(unseen ... -q)`."""
    for item in found:
        sys.stdout.write(f"{item['id']}\n")

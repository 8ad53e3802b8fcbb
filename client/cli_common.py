"""What every command talking to the server shares: connection options, one-line errors, exit
codes scripts can rely on (0 ok, 1 request failed, 2 usage, 3 refused by policy or budget)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from rich.console import Console

EXIT_FAILED, EXIT_USAGE, EXIT_REFUSED = 1, 2, 3
DEFAULT_URL = "http://127.0.0.1:8000"
REFUSALS = frozenset({"bad_code", "bad_plan", "budget_exceeded", "not_admitted", "contest_closed"})

Url = Annotated[str, typer.Option(envvar="UNSEEN_URL", help="Server URL.")]
Token = Annotated[str | None, typer.Option(envvar="UNSEEN_TOKEN", help="API token.")]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]

errors = Console(stderr=True, highlight=False)


@contextmanager
def one_line_errors(url: str) -> Iterator[None]:
    """Turn the server's refusals and network trouble into one line and an exit code."""
    from client.api import UnseenError

    try:
        yield
    except UnseenError as exc:
        errors.print(f"refused: {exc.message}")
        raise typer.Exit(EXIT_REFUSED if exc.code in REFUSALS else EXIT_FAILED) from exc
    except httpx.HTTPError as exc:
        errors.print(f"cannot reach the server at {url} ({exc}); check --url or UNSEEN_URL")
        raise typer.Exit(EXIT_FAILED) from exc


def read_json_file(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        errors.print(f"cannot read {path}: {exc.strerror}")
        raise typer.Exit(EXIT_USAGE) from exc
    except ValueError as exc:
        errors.print(f"{path} is not valid JSON ({exc}); write the {what} as a JSON object")
        raise typer.Exit(EXIT_USAGE) from exc

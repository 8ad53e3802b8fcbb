"""Where the CLI keeps the server and token `unseen login` got: one JSON file, readable by its
owner only (0600, in a 0700 directory), written atomically so a crash never leaves half of it.

Lookup order for each command: the --url/--token flags, then $UNSEEN_URL/$UNSEEN_TOKEN, then
this file (its token is used only for the server it was issued by). With none of them (after
`unseen logout`), a command says so instead of guessing a server.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


class NotLoggedIn(Exception):
    """No server given and none kept by `unseen login`."""


def config_path() -> Path:
    if os.environ.get("UNSEEN_CONFIG"):
        return Path(os.environ["UNSEEN_CONFIG"])
    base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return base / "unseen" / "config.json"


def load() -> dict[str, Any]:
    try:
        found = json.loads(config_path().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return found if isinstance(found, dict) else {}


def save(url: str, token: str, user: str) -> Path:
    path = config_path()
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    scratch = path.with_suffix(".tmp")
    fd = os.open(scratch, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump({"url": url.rstrip("/"), "token": token, "user": user}, handle)
    os.chmod(scratch, 0o600)  # also when the file existed with looser permissions
    os.replace(scratch, path)
    return path


def forget() -> bool:
    try:
        config_path().unlink()
    except FileNotFoundError:
        return False
    return True


def resolve(url: str | None, token: str | None) -> tuple[str, str | None]:
    """The server and token a command uses (see the module docstring for the order), or
    :class:`NotLoggedIn`."""
    saved = load()
    chosen = str(url or saved.get("url") or "").rstrip("/")
    if not chosen:
        raise NotLoggedIn
    if token is None and saved.get("url") == chosen:
        token = saved.get("token")
    return chosen, token

"""README's "Run a contest", run as written: its `sh` blocks, in order, each as its person
(olga the organizer, alice the contestant) in a home directory of their own, against a real
server started from nothing, as the section's set-up block says. Only what the section leaves
to the reader is supplied: the server's address and bootstrap token (the two variables its
set-up block exports), the password olga hands alice (typed at alice's login prompt), and the
signed licence alice was sent."""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from api.launcher import ServerProcess
from client.api import UnseenClient
from tests.conftest import FAST_SCHEDULE, LICENCE_PDF, ROOT

pytestmark = pytest.mark.docker
SECTION = "## Run a contest"
#: The set-up block: the server, and the two variables every later block relies on.
SET_UP = (
    "unseen server run --port 8000 --data-dir var/contest",
    "export UNSEEN_URL=http://127.0.0.1:8000",
    "export UNSEEN_BOOTSTRAP_TOKEN=$(cat var/contest/bootstrap-token)",
)


@dataclass(frozen=True)
class Block:
    who: str  # the first word of its first line: "# olga, ..." -> olga
    script: str


def section(readme: str) -> str:
    start = readme.index(f"\n{SECTION}\n")
    end = readme.find("\n## ", start + 1)
    return readme[start : end if end != -1 else None]


def blocks(text: str) -> list[Block]:
    """The section's fenced `sh` blocks, verbatim, with whose they are."""
    found = re.findall(r"^```sh\n(.*?)^```$", text, flags=re.S | re.M)
    return [Block(re.match(r"# (\w+)", script).group(1), script) for script in found]  # type: ignore[union-attr]


def test_the_sections_blocks_are_found() -> None:
    text = section((ROOT / "README.md").read_text(encoding="utf-8"))
    for line in SET_UP:
        assert line in text, line
    found = blocks(text)
    assert [b.who for b in found] == ["olga", "alice", "olga", "alice", "olga", "alice"]
    assert "unseen organizers add olga" in found[0].script


def run_as(block: Block, home: Path, env: dict[str, str], stdin: str = "") -> str:
    """``block`` in ``bash -e`` from ``home``, with only the project's `unseen` on PATH added.
    A session of its own: no terminal, so a password prompt reads standard input."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("UNSEEN_")}
    environment.update({"HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config"),
                        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
                        "COLUMNS": "200", "NO_COLOR": "1", **env})  # fmt: skip
    done = subprocess.run(
        ["bash", "-e", "-o", "pipefail", "-x", "-c", block.script],
        input=stdin, capture_output=True, text=True, env=environment, cwd=home, timeout=600,
        start_new_session=True,
    )  # fmt: skip
    assert done.returncode == 0, f"{block.who}'s block failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout + done.stderr


def test_run_a_contest_from_an_empty_server(runner_image: str, tmp_path: Path) -> None:
    found = blocks(section((ROOT / "README.md").read_text(encoding="utf-8")))
    olga, alice = tmp_path / "olga", tmp_path / "alice"
    olga.mkdir()
    alice.mkdir()
    (alice / "signed-licence.pdf").write_bytes(LICENCE_PDF)
    settings = {**FAST_SCHEDULE, "UNSEEN_NODE": f"readme-{secrets.token_hex(3)}",
                "UNSEEN_DEFAULT_BLOCKS": "6", "UNSEEN_SLOTS": "2"}  # fmt: skip
    # as the set-up block says: `unseen server run --data-dir var/contest` where olga works
    server = ServerProcess(olga / "var" / "contest", secrets.token_urlsafe(16), env=settings)
    server.start()
    try:
        env = {
            "olga": {"UNSEEN_URL": server.url, "UNSEEN_BOOTSTRAP_TOKEN": server.bootstrap_token},
            "alice": {"UNSEEN_URL": server.url},
        }
        homes = {"olga": olga, "alice": alice}
        said: list[str] = []
        password = ""
        for block in found:
            typed = password + "\n" if block.who == "alice" else ""
            said.append(run_as(block, homes[block.who], env[block.who], typed))
            if not password:
                password = _password_of("alice", said[0])
        created, catalog, admitted, submitted, reviewed, result = said
        assert "password of olga (shown once, now)" in created and "(open now)" in created
        assert "team-alpha on transport_cards: cap ε=2" in created
        assert "logged in" in catalog and "transport_cards" in catalog
        assert "nothing" in admitted  # round two blocked by nothing
        assert "awaiting_review" in submitted
        assert "value (noised)" in reviewed and "released" in reviewed
        assert "mean_fare" in result and "noise scale" in result

        organizer = UnseenClient(server.url).login("olga", _password_of("olga", created))
        rows = UnseenClient(server.url, organizer["token"]).results()
        assert [(r["team"], r["output"]) for r in rows] == [("team-alpha", "mean_fare")]
        assert rows[0]["epsilon"] == 0.5 and rows[0]["noise_scale"] > 0
        assert f"{rows[0]['value']:g}" in result
    finally:
        server.stop()


def _password_of(name: str, said: str) -> str:
    return said.split(f"password of {name} (shown once, now): ")[1].split()[0]

"""The server image carries every file the runner image's tag is a hash of.

Its Dockerfile copies each, and the repository's .dockerignore (the build context is the
repository root, everything ignored but what is named) lets each through.

The embedded server computes the runner's tag from those files (``sandbox.image``); one left
out of ``images/server/Dockerfile`` stops the whole compose stack at start (it happened: a new
file of the runner image, and every compose test failed at once). Checked here without Docker.
"""

from __future__ import annotations

import re

from sandbox.image import REPO_ROOT, RUNNER


def copied_by_server_image() -> set[str]:
    text = (REPO_ROOT / "images" / "server" / "Dockerfile").read_text()
    joined = text.replace("\\\n", " ")
    copied: set[str] = set()
    for line in joined.splitlines():
        if line.startswith("COPY") and "--from" not in line:
            copied.update(re.split(r"\s+", line.strip())[1:-1])
    return copied


def test_every_hashed_runner_file_is_in_the_server_image() -> None:
    copied = copied_by_server_image()
    needed = {
        str(path.relative_to(REPO_ROOT))
        for path in (*RUNNER.hashed, *RUNNER.shared)
        if path.is_file()
    }
    missing = {
        name
        for name in needed
        if name not in copied and not any(name.startswith(f"{d.rstrip('/')}/") for d in copied)
    }
    assert not missing, f"add to images/server/Dockerfile: {sorted(missing)}"


def let_through_dockerignore() -> set[str]:
    lines = (REPO_ROOT / ".dockerignore").read_text().splitlines()
    return {line[1:].rstrip("/") for line in lines if line.startswith("!")}


def test_every_hashed_runner_file_reaches_the_server_build_context() -> None:
    allowed = let_through_dockerignore()
    needed = {
        str(path.relative_to(REPO_ROOT))
        for path in (*RUNNER.hashed, *RUNNER.shared)
        if path.is_file()
    }
    missing = {
        name
        for name in needed
        if name not in allowed and not any(name.startswith(f"{d}/") for d in allowed)
    }
    assert not missing, f"add to .dockerignore as !<path>: {sorted(missing)}"

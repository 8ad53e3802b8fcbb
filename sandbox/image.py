"""Build the runner image with no container registry: debootstrap → docker import → docker build.

The Dockerfile starts ``FROM debian:bookworm-slim``. Where that tag is missing (no registry to
pull from), an equivalent minimal base is made locally with debootstrap and imported under the
same tag, so the one Dockerfile builds both offline and online. Python packages are wheels the
host downloads at the versions pinned in ``constraints.txt`` (the host's own), installed with
``--no-index`` inside the build. The image tag is a hash of everything that goes into it, so a
change to the Dockerfile, the harness or a pin makes a new image and nothing stale is reused.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Callable
from pathlib import Path

import docker
from docker.errors import BuildError, DockerException, ImageNotFound

REPO_ROOT = Path(__file__).resolve().parents[1]
IMAGES_DIR = REPO_ROOT / "images"
RUNNER_DIR = IMAGES_DIR / "runner"
CONSTRAINTS = REPO_ROOT / "constraints.txt"
RUNNER_REPO = "unseen-runner"
BASE_TAG = "debian:bookworm-slim"
DEBIAN_SUITE = "bookworm"
DEBIAN_MIRROR = os.environ.get("UNSEEN_DEBIAN_MIRROR", "http://deb.debian.org/debian")
HASHED_INPUTS = ("Dockerfile", "harness.py", "requirements.txt")
WHEEL_PLATFORMS = (
    "manylinux_2_28_x86_64",
    "manylinux_2_27_x86_64",
    "manylinux_2_17_x86_64",
    "manylinux2014_x86_64",
)

Progress = Callable[[str], None]


class ImageMissingError(RuntimeError):
    """The runner image is not built; the message says how to build it."""


class ImageBuildError(RuntimeError):
    """A build step failed; the message names the step and the fix."""


def _quiet(_line: str) -> None:
    pass


def runner_image_tag() -> str:
    """``unseen-runner:<12 hex>``, a hash over the image's inputs and the pinned versions."""
    digest = hashlib.sha256()
    for name in HASHED_INPUTS:
        digest.update(name.encode() + b"\0" + (RUNNER_DIR / name).read_bytes() + b"\0")
    digest.update(CONSTRAINTS.read_bytes())
    return f"{RUNNER_REPO}:{digest.hexdigest()[:12]}"


def _client(client: docker.DockerClient | None) -> docker.DockerClient:
    return client or docker.from_env(timeout=600)


def _has_image(client: docker.DockerClient, tag: str) -> bool:
    try:
        client.images.get(tag)
    except ImageNotFound:
        return False
    return True


def ensure_runner_image(client: docker.DockerClient | None = None, tag: str | None = None) -> str:
    """Return the runner image's tag if it is built; else raise with the command that builds it."""
    tag = tag or runner_image_tag()
    if not _has_image(_client(client), tag):
        raise ImageMissingError(
            f"runner image {tag} is not built; run `unseen images build` (or `make image`)"
        )
    return tag


def build_base_image(client: docker.DockerClient, progress: Progress = _quiet) -> None:
    """Make ``debian:bookworm-slim`` locally with debootstrap (minbase) unless it exists."""
    if _has_image(client, BASE_TAG):
        progress(f"base image {BASE_TAG} present")
        return
    debootstrap = shutil.which("debootstrap") or "/usr/sbin/debootstrap"
    if not Path(debootstrap).exists():
        raise ImageBuildError("debootstrap is missing: run `apt-get install debootstrap`")
    if os.geteuid() != 0:
        raise ImageBuildError("debootstrap needs root: run `sudo unseen images build`")
    with tempfile.TemporaryDirectory(prefix="unseen-rootfs-") as scratch:
        rootfs = Path(scratch) / "rootfs"
        progress(f"debootstrap --variant=minbase {DEBIAN_SUITE} (about a minute)")
        done = subprocess.run(
            [debootstrap, "--variant=minbase", DEBIAN_SUITE, str(rootfs), DEBIAN_MIRROR],
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            raise ImageBuildError(
                f"debootstrap failed ({done.returncode}); is {DEBIAN_MIRROR} reachable? "
                f"{done.stderr[-800:]}"
            )
        for cache in ("var/cache/apt/archives", "var/lib/apt/lists"):
            for entry in (rootfs / cache).glob("*"):
                if entry.is_file():
                    entry.unlink()
        progress(f"docker import as {BASE_TAG}")
        archive = Path(scratch) / "rootfs.tar"
        with tarfile.open(archive, "w") as tar:
            tar.add(rootfs, arcname=".")
        repository, tag = BASE_TAG.split(":")
        client.api.import_image_from_file(str(archive), repository=repository, tag=tag)
    if not _has_image(client, BASE_TAG):
        raise ImageBuildError(f"docker import did not produce {BASE_TAG}")


def _requirements() -> list[str]:
    lines = (RUNNER_DIR / "requirements.txt").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def download_wheels(target: Path, progress: Progress = _quiet) -> None:
    """Fetch cp311 manylinux wheels of the image's packages at the pinned versions."""
    stamp = target / ".complete"
    fingerprint = hashlib.sha256(
        (RUNNER_DIR / "requirements.txt").read_bytes() + CONSTRAINTS.read_bytes()
    ).hexdigest()
    if stamp.exists() and stamp.read_text() == fingerprint:
        progress("wheels present")
        return
    shutil.rmtree(target, ignore_errors=True)
    (target / "_pip").mkdir(parents=True)
    progress("downloading wheels at the pinned versions")
    platforms = [arg for p in WHEEL_PLATFORMS for arg in ("--platform", p)]
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--quiet",
        "--only-binary=:all:",
        "--python-version",
        "3.11",
        "--implementation",
        "cp",
        "--abi",
        "cp311",
        *platforms,
        "-c",
        str(CONSTRAINTS),
        "-d",
        str(target),
        *_requirements(),
    ]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise ImageBuildError(f"pip download failed; is PyPI reachable? {done.stderr[-800:]}")
    pip_dir = target / "_pip"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--quiet",
            "--only-binary=:all:",
            "--no-deps",
            "-d",
            str(pip_dir),
            "pip",
        ],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise ImageBuildError(f"pip download of pip failed: {done.stderr[-800:]}")
    next(pip_dir.glob("pip-*.whl")).rename(pip_dir / "pip.whl")
    shutil.copyfile(RUNNER_DIR / "requirements.txt", target / "requirements.txt")
    shutil.copyfile(CONSTRAINTS, target / "constraints.txt")
    stamp.write_text(fingerprint)


def build_runner_image(
    progress: Progress | None = None, client: docker.DockerClient | None = None
) -> str:
    """Build everything that is missing and return the runner image's tag. Idempotent."""
    say = progress or _quiet
    engine = _client(client)
    tag = runner_image_tag()
    if _has_image(engine, tag):
        say(f"runner image {tag} present")
        return tag
    try:
        build_base_image(engine, say)
        download_wheels(RUNNER_DIR / "wheels", say)
        say(f"docker build {tag}")
        _image, logs = engine.images.build(
            path=str(RUNNER_DIR),
            tag=tag,
            rm=True,
            forcerm=True,
            pull=False,
            labels={"unseen.runner": "1"},
        )
        for chunk in logs:
            line = str(chunk.get("stream", "")).rstrip()
            if line:
                say(line)
    except BuildError as exc:
        tail = "\n".join(str(c.get("stream", c.get("error", ""))) for c in exc.build_log)[-1500:]
        raise ImageBuildError(f"docker build failed: {exc.msg}\n{tail}") from exc
    except DockerException as exc:
        raise ImageBuildError(f"Docker engine error: {exc}; is the engine running?") from exc
    engine.images.get(tag).tag(RUNNER_REPO, "latest")
    return tag

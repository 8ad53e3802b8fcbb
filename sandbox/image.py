"""Build the runner image with no container registry: debootstrap → docker import → docker build.

The Dockerfile starts ``FROM debian:bookworm-slim``. Where that tag is missing (no registry to
pull from), an equivalent minimal base is made locally with debootstrap and imported under the
same tag, so the one Dockerfile builds both offline and online. Python packages are wheels the
host downloads at the versions pinned in ``constraints.txt`` (the host's own), installed with
``--no-index`` inside the build. The image tag is a hash of everything that goes into it, so a
change to the Dockerfile, the harness or a pin makes a new image and nothing stale is reused.

Project files the image shares with the host (``privacy/block_line.py``, the result line's one
definition) go into its build context at their repository paths: the image runs the very file
the host reads its output with, never a copy kept by hand.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import docker
from docker.errors import BuildError, DockerException, ImageNotFound

REPO_ROOT = Path(__file__).resolve().parents[1]
IMAGES_DIR = REPO_ROOT / "images"
RUNNER_DIR = IMAGES_DIR / "runner"
CONSTRAINTS = REPO_ROOT / "constraints.txt"
RUNNER_REPO = "unseen-runner"
SERVER_REPO = "unseen-server"
BASE_TAG = "debian:bookworm-slim"
DEBIAN_SUITE = "bookworm"
DEBIAN_MIRROR = os.environ.get("UNSEEN_DEBIAN_MIRROR", "http://deb.debian.org/debian")
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


@dataclass(frozen=True)
class ImageSpec:
    """One image this project builds: its context, its Python packages, what its tag hashes."""

    repo: str
    context: Path
    dockerfile: str  # relative to the context
    requirements: tuple[str, ...]
    hashed: tuple[Path, ...]  # files and package directories whose bytes define the tag
    wheels: Path  # where host-downloaded wheels go, inside the context
    # project files added to the context at their repository paths (hashed too)
    shared: tuple[Path, ...] = ()

    def tag(self) -> str:
        digest = hashlib.sha256()
        for root in (*self.hashed, *self.shared, CONSTRAINTS):
            files = sorted(root.rglob("*.py")) if root.is_dir() else [root]
            for path in files:
                name = path.relative_to(REPO_ROOT).as_posix()
                digest.update(name.encode() + b"\0" + path.read_bytes() + b"\0")
        digest.update("\n".join(self.requirements).encode())
        return f"{self.repo}:{digest.hexdigest()[:12]}"


def _listed(path: Path) -> tuple[str, ...]:
    lines = path.read_text().splitlines()
    return tuple(line.strip() for line in lines if line.strip() and not line.startswith("#"))


def _server_requirements() -> tuple[str, ...]:
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    return tuple(project["dependencies"]) + tuple(project["optional-dependencies"]["server"])


RUNNER = ImageSpec(
    repo=RUNNER_REPO,
    context=RUNNER_DIR,
    dockerfile="Dockerfile",
    requirements=_listed(RUNNER_DIR / "requirements.txt"),
    hashed=(
        RUNNER_DIR / "Dockerfile",
        RUNNER_DIR / "harness.py",
        RUNNER_DIR / "zygote.py",
        RUNNER_DIR / "janitor.py",
        RUNNER_DIR / "confine.py",
    ),
    wheels=RUNNER_DIR / "wheels",
    shared=(REPO_ROOT / "privacy" / "block_line.py",),
)


def server_spec() -> ImageSpec:
    """The embedded server as a container (docker-compose); it starts sandboxes on the host."""
    sources = tuple(REPO_ROOT / name for name in ("api", "runner", "sandbox", "privacy"))
    return ImageSpec(
        repo=SERVER_REPO,
        context=REPO_ROOT,
        dockerfile="images/server/Dockerfile",
        requirements=_server_requirements(),
        hashed=(IMAGES_DIR / "server" / "Dockerfile", *RUNNER.hashed, *RUNNER.shared, *sources),
        wheels=IMAGES_DIR / "server" / "wheels",
    )


def _quiet(_line: str) -> None:
    pass


def runner_image_tag() -> str:
    """``unseen-runner:<12 hex>``, a hash over the image's inputs and the pinned versions."""
    return RUNNER.tag()


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


def _pip(*args: str) -> None:
    done = subprocess.run([sys.executable, "-m", "pip", *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise ImageBuildError(f"pip {args[0]} failed; is PyPI reachable? {done.stderr[-800:]}")


def download_wheels(spec: ImageSpec, progress: Progress = _quiet) -> None:
    """Fetch cp311 manylinux wheels of the image's packages at the pinned versions."""
    target = spec.wheels
    stamp = target / ".complete"
    fingerprint = hashlib.sha256(
        "\n".join(spec.requirements).encode() + CONSTRAINTS.read_bytes()
    ).hexdigest()
    if stamp.exists() and stamp.read_text() == fingerprint:
        progress("wheels present")
        return
    shutil.rmtree(target, ignore_errors=True)
    (target / "_pip").mkdir(parents=True)
    progress(f"downloading wheels for {spec.repo} at the pinned versions")
    platforms = [arg for p in WHEEL_PLATFORMS for arg in ("--platform", p)]
    _pip(
        "download", "--quiet", "--only-binary=:all:", "--python-version", "3.11",
        "--implementation", "cp", "--abi", "cp311", *platforms,
        "-c", str(CONSTRAINTS), "-d", str(target), *spec.requirements,
    )  # fmt: skip
    _pip("download", "--quiet", "--only-binary=:all:", "--no-deps", "-d", str(target / "_pip"),
         "pip")  # fmt: skip
    next((target / "_pip").glob("pip-*.whl")).rename(target / "_pip" / "pip.whl")
    (target / "requirements.txt").write_text("\n".join(spec.requirements) + "\n")
    shutil.copyfile(CONSTRAINTS, target / "constraints.txt")
    stamp.write_text(fingerprint)


def _no_caches(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
    return None if "__pycache__" in info.name.split("/") else info


def write_context(spec: ImageSpec, archive: IO[bytes]) -> None:
    """The build context as a tar: the context directory, plus the project files the image
    shares with the host at their repository paths (the Dockerfile copies them from there)."""
    with tarfile.open(fileobj=archive, mode="w") as tar:
        for entry in sorted(spec.context.iterdir()):
            tar.add(entry, arcname=entry.name, filter=_no_caches)
        for path in spec.shared:
            tar.add(path, arcname=path.relative_to(REPO_ROOT).as_posix())
    archive.seek(0)


def _docker_build(engine: docker.DockerClient, spec: ImageSpec, tag: str, say: Progress) -> None:
    options: dict[str, object] = {
        "dockerfile": spec.dockerfile,
        "tag": tag,
        "rm": True,
        "forcerm": True,
        "pull": False,
        "labels": {spec.repo.replace("unseen-", "unseen."): "1"},
    }
    with tempfile.TemporaryFile(prefix="unseen-context-") as archive:
        if spec.shared:  # a context of our own making: the directory and the shared files
            write_context(spec, archive)
            _image, logs = engine.images.build(fileobj=archive, custom_context=True, **options)
        else:  # the directory as docker sends it (its .dockerignore applies)
            _image, logs = engine.images.build(path=str(spec.context), **options)
        for chunk in logs:
            line = str(chunk.get("stream", "")).rstrip()
            if line:
                say(line)


def build_image(
    spec: ImageSpec, progress: Progress | None = None, client: docker.DockerClient | None = None
) -> str:
    """Build everything that is missing for ``spec`` and return its tag. Idempotent."""
    say = progress or _quiet
    engine = _client(client)
    tag = spec.tag()
    if _has_image(engine, tag):
        say(f"image {tag} present")
        return tag
    try:
        build_base_image(engine, say)
        download_wheels(spec, say)
        say(f"docker build {tag}")
        _docker_build(engine, spec, tag, say)
    except BuildError as exc:
        tail = "\n".join(str(c.get("stream", c.get("error", ""))) for c in exc.build_log)[-1500:]
        raise ImageBuildError(f"docker build failed: {exc.msg}\n{tail}") from exc
    except DockerException as exc:
        raise ImageBuildError(f"Docker engine error: {exc}; is the engine running?") from exc
    engine.images.get(tag).tag(spec.repo, "latest")
    return tag


def build_runner_image(
    progress: Progress | None = None, client: docker.DockerClient | None = None
) -> str:
    """The sandbox's runner image: what every block runs in."""
    return build_image(RUNNER, progress, client)


def build_server_image(
    progress: Progress | None = None, client: docker.DockerClient | None = None
) -> str:
    """The server as a container (docker-compose); needs the runner image on the same engine."""
    build_runner_image(progress, client)
    return build_image(server_spec(), progress, client)

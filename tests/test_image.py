"""The runner image: built offline from the local base, same package versions as the host."""

from __future__ import annotations

import json
from importlib.metadata import version

import docker
import pytest

from sandbox import image as image_module
from sandbox.image import (
    BASE_TAG,
    RUNNER_REPO,
    ImageMissingError,
    build_runner_image,
    ensure_runner_image,
    runner_image_tag,
)

pytestmark = pytest.mark.docker

PACKAGES = ["numpy", "pandas", "pyarrow", "scipy", "scikit-learn"]


@pytest.fixture(scope="module")
def client() -> docker.DockerClient:
    return docker.from_env()


def run_python(client: docker.DockerClient, tag: str, source: str) -> str:
    output = client.containers.run(
        tag, entrypoint=["python3", "-c", source], network_mode="none", remove=True
    )
    return output.decode().strip()


def test_tag_is_a_content_hash_and_present(client: docker.DockerClient, runner_image: str) -> None:
    assert runner_image == runner_image_tag()
    assert runner_image.startswith(f"{RUNNER_REPO}:") and len(runner_image.split(":")[1]) == 12
    assert ensure_runner_image(client) == runner_image
    assert client.images.get(runner_image).labels.get("unseen.runner") == "1"
    assert client.images.get(BASE_TAG)  # the locally made base carries the Dockerfile's FROM


def test_second_build_is_a_no_op(runner_image: str) -> None:
    lines: list[str] = []
    assert build_runner_image(lines.append) == runner_image
    assert lines == [f"image {runner_image} present"]


def test_default_user_is_not_root(client: docker.DockerClient, runner_image: str) -> None:
    assert run_python(client, runner_image, "import os; print(os.getuid())") == "10001"


def test_package_versions_match_the_host(client: docker.DockerClient, runner_image: str) -> None:
    probe = (
        "import json, importlib.metadata as m; "
        f"print(json.dumps({{p: m.version(p) for p in {PACKAGES!r}}}))"
    )
    inside = json.loads(run_python(client, runner_image, probe))
    assert inside == {name: version(name) for name in PACKAGES}


def test_a_missing_image_names_the_command_that_builds_it(
    client: docker.DockerClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(image_module, "runner_image_tag", lambda: f"{RUNNER_REPO}:000000000000")
    with pytest.raises(ImageMissingError, match="unseen images build"):
        ensure_runner_image(client)

"""A data node's worker settings (``runner.node_settings``): read once, every variable honoured,
a misspelt isolation form or runtime refused at start."""

from __future__ import annotations

from pathlib import Path

import pytest

from runner.node_settings import NodeSettings, load_node_settings


def test_defaults_without_any_variable() -> None:
    settings = load_node_settings({})
    assert settings == NodeSettings()
    assert settings.node == "local" and settings.label is None
    assert settings.isolation is None and settings.runtime is None  # the runtime's defaults


def test_every_variable_is_read(tmp_path: Path) -> None:
    settings = load_node_settings({
        "UNSEEN_NODE": "node-a", "UNSEEN_BROKER_URL": "redis://hub:6379/0",
        "UNSEEN_NODE_DATA_DIR": str(tmp_path / "data"), "UNSEEN_NODE_JOBS_DIR": "/srv/jobs",
        "UNSEEN_RUNNER_IMAGE": "unseen-runner:x", "UNSEEN_ISOLATION": "container",
        "UNSEEN_RUNTIME": "runc", "UNSEEN_NODE_IDLE_SECONDS": "2.5",
    })  # fmt: skip
    assert settings == NodeSettings(
        label="node-a", broker_url="redis://hub:6379/0", data_dir=(tmp_path / "data").resolve(),
        jobs_dir=Path("/srv/jobs"), runner_image="unseen-runner:x", isolation="container",
        runtime="runc", idle_seconds=2.5,
    )  # fmt: skip
    assert settings.node == "node-a"


@pytest.mark.parametrize(
    ("variable", "value"), [("UNSEEN_ISOLATION", "vm"), ("UNSEEN_RUNTIME", "kata")]
)
def test_a_misspelt_sandbox_setting_stops_the_worker_at_start(variable: str, value: str) -> None:
    with pytest.raises(ValueError, match=value):
        load_node_settings({variable: value})


def test_the_worker_module_reads_them_once() -> None:
    from runner import node_tasks

    assert isinstance(node_tasks.SETTINGS, NodeSettings)
    assert node_tasks.SETTINGS.node == node_tasks.NODE

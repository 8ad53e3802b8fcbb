"""The second wall: which OCI runtime the sandboxes run under (sandbox.runtime), checked as
pure rules, then on the real engine with gVisor's runsc registered (scripts/runsc-setup).

The hardening itself is tried under both runtimes by test_hardening and test_sandbox; here:
the choice, the refusal of what a runtime does not offer, that the code's system calls reach
gVisor's kernel and not the host's, and a whole job and a sample run on a server left to pick
its runtime, which picks runsc.
"""

from __future__ import annotations

import time
from pathlib import Path

import docker
import pytest

from sandbox.container import RunEnd, SandboxLimits, hardened_config
from sandbox.docker_sandbox import DockerSandbox
from sandbox.runtime import (
    RuntimeUnavailableError,
    choose_isolation,
    choose_runtime,
)
from sandbox.zygote import ZygoteContainer, ZygoteError, zygote_config
from tests.conftest import (
    TINY_BLOCKS,
    SodaData,
    require_runtime,
    start_deployment,
)

VERSION_CODE = (
    "def analyze(df):\n"
    "    return {'gvisor': float(open('/proc/version').read().startswith('Linux version 4.4.0')),"
    " 'n': float(len(df))}\n"
)


@pytest.mark.parametrize(
    ("requested", "registered", "chosen"),
    [
        (None, {"runc"}, "runc"),
        (None, {"runc", "runsc"}, "runsc"),  # auto prefers the second wall
        ("auto", {"runc", "runsc"}, "runsc"),
        (" RUNC ", {"runc", "runsc"}, "runc"),  # asked for: kept, even with runsc there
        ("runsc", {"runc", "runsc"}, "runsc"),
    ],
)
def test_the_runtime_is_the_setting_else_runsc_when_registered(
    requested: str | None, registered: set[str], chosen: str
) -> None:
    assert choose_runtime(requested, registered) == chosen


def test_a_runtime_the_engine_lacks_is_refused_with_the_fix() -> None:
    with pytest.raises(RuntimeUnavailableError, match=r"make runsc.*UNSEEN_RUNTIME=runc"):
        choose_runtime("runsc", {"runc"})
    with pytest.raises(ValueError, match="runc, runsc, auto"):
        choose_runtime("kata", {"runc", "runsc"})


def test_each_runtime_has_its_default_form_and_runsc_refuses_the_zygote() -> None:
    assert choose_isolation(None, "runc") == "zygote"
    assert choose_isolation(None, "runsc") == "container"
    assert choose_isolation("container", "runc") == "container"
    with pytest.raises(RuntimeUnavailableError, match="UNSEEN_ISOLATION=container"):
        choose_isolation("zygote", "runsc")
    with pytest.raises(ValueError, match="zygote, container"):
        choose_isolation("vm", "runc")


def test_the_config_names_the_runtime_and_scales_pids_for_gvisor(tmp_path: Path) -> None:
    limits = SandboxLimits(pids=64)
    runc = hardened_config("img", tmp_path, tmp_path, limits, {})
    runsc = hardened_config("img", tmp_path, tmp_path, limits, {}, "runsc")
    assert (runc["runtime"], runc["pids_limit"]) == ("runc", 64)
    assert runsc["runtime"] == "runsc" and runsc["pids_limit"] > 64
    # everything else is the same hardening
    differing = {key for key in runc if runc[key] != runsc[key]}
    assert differing == {"runtime", "pids_limit"}


@pytest.mark.parametrize("runtime", ["runc", "runsc"])
def test_the_zygote_container_has_no_writable_place_a_later_block_could_share(
    tmp_path: Path, runtime: str
) -> None:
    """gVisor mounts a writable /tmp (1777) where a container has none, and does not copy
    the image's 0711 onto /scratch: both are stated, under both runtimes."""
    config = zygote_config("img", tmp_path, SandboxLimits(), {}, runtime)
    tmpfs = {path: dict.fromkeys(opts.split(",")) for path, opts in config["tmpfs"].items()}
    assert set(tmpfs) == {"/scratch", "/tmp"}
    assert "ro" in tmpfs["/tmp"] and "rw" not in tmpfs["/tmp"]
    assert "mode=0711" in tmpfs["/scratch"]


def analysis_file(tmp_path: Path, source: str) -> Path:
    """The code, readable by a sandbox's unprivileged uid."""
    tmp_path.chmod(0o755)
    code = tmp_path / "analysis.py"
    code.write_text(source)
    code.chmod(0o644)
    return code


@pytest.mark.docker
def test_code_under_runsc_talks_to_gvisor_whose_sentry_is_seccomp_confined(
    docker_client: docker.DockerClient, runner_image: str, tmp_path: Path
) -> None:
    """Inside, the kernel is gVisor's (Linux 4.4.0 by its own account, whatever the host
    runs); outside, the host process that serves the code's calls is under a seccomp filter:
    the host kernel sees only gVisor's few system calls, never the code's."""
    require_runtime(docker_client, "runsc")
    code = analysis_file(tmp_path, "import time\ndef analyze(df):\n    time.sleep(30)\n")
    config = hardened_config(
        runner_image, code, code, SandboxLimits(), {"unseen.node": "test-runtime"}, "runsc"
    )
    container = docker_client.containers.create(**config)
    try:
        container.start()
        container.reload()
        assert container.attrs["HostConfig"]["Runtime"] == "runsc"
        pid = container.attrs["State"]["Pid"]
        status = Path(f"/proc/{pid}/status").read_text()
        assert "\nSeccomp:\t2\n" in status, status[-400:]  # SECCOMP_MODE_FILTER on the host
        version = container.exec_run(["cat", "/proc/version"], user="65534:65534").output
        assert version.startswith(b"Linux version 4.4.0"), version
        host = Path("/proc/version").read_bytes()
        assert version != host
    finally:
        container.remove(force=True)


@pytest.mark.docker
def test_a_zygote_forced_under_runsc_fails_closed_before_any_block(
    docker_client: docker.DockerClient, runner_image: str, tmp_path: Path
) -> None:
    """Below the node's refusal, the zygote itself: Debian 12's gVisor says yes to a new
    mount namespace and shares the mount table anyway, so the block's /proc would reach the
    zygote. The zygote checks, and stops before a block is sent; the reason is in its log."""
    require_runtime(docker_client, "runsc")
    code = analysis_file(tmp_path, "def analyze(df):\n    return {'n': 1.0}\n")
    slot = ZygoteContainer(
        docker_client, runner_image, code, SandboxLimits(), {"unseen.node": "test-runtime"},
        "runsc",
    )  # fmt: skip
    try:
        with pytest.raises(ZygoteError, match="does not isolate mount namespaces"):
            slot.start()
    finally:
        slot.close()


@pytest.mark.docker
def test_a_node_left_to_choose_runs_blocks_in_gvisor_one_container_each(
    docker_client: docker.DockerClient, runner_image: str, tmp_path: Path
) -> None:
    require_runtime(docker_client, "runsc")
    tmp_path.chmod(0o755)
    code = tmp_path / "job" / "analysis.py"
    code.parent.mkdir(mode=0o755)
    code.write_text(VERSION_CODE)
    code.chmod(0o644)
    import pandas as pd

    block = tmp_path / "block.parquet"
    pd.DataFrame({"card_id": [1, 2], "fare": [1.0, 2.0]}).to_parquet(block)
    block.chmod(0o644)
    sandbox = DockerSandbox("test-runtime", SandboxLimits(), runner_image, runtime="auto")
    assert sandbox.describe() == "runsc/container"
    run = sandbox(code, block)
    assert run.end is RunEnd.EXITED, run.stderr[-2000:]
    assert run.sandbox == "runsc/container"
    assert b'"gvisor": 1.0' in run.stdout

    asked = DockerSandbox("test-runtime", SandboxLimits(), runner_image, "zygote", "runsc")
    assert "not offered under runsc" in str(asked.image_problem())
    refused = asked(code, block)  # never raises: a sandbox error, before any code ran
    assert refused.end is RunEnd.SANDBOX_ERROR
    assert b"UNSEEN_ISOLATION=container" in refused.stderr


@pytest.mark.docker
def test_a_server_left_to_choose_runs_jobs_and_sample_runs_under_runsc(
    docker_client: docker.DockerClient,
    runner_image: str,
    soda: SodaData,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """UNSEEN_RUNTIME unset (auto) with runsc registered: every block of a full-data job and
    the sample run go through gVisor, and organizers see it in the job's report."""
    require_runtime(docker_client, "runsc")
    env = {"UNSEEN_RUNTIME": "auto", "UNSEEN_BLOCK_SECONDS": "30", "UNSEEN_SLOTS": "2"}
    deployed = start_deployment(tmp_path_factory.mktemp("runsc-server"), soda, env)
    try:
        client = deployed.contestant
        outputs = [{"name": "gvisor", "lo": 0, "hi": 1}, {"name": "n", "lo": 0, "hi": 1e6}]
        sample = client.run_on_sample("cards_tiny", VERSION_CODE, outputs)
        assert sample["sample_run"]["values"]["gvisor"] == 1.0, sample["sample_run"]

        job = client.submit("cards_tiny", VERSION_CODE, outputs, 0.5)
        started = time.monotonic()
        done = client.wait(job["id"], timeout=300)
        assert done["state"] == "awaiting_review", (done, time.monotonic() - started)
        assert client.schedule_rules()["sandbox"] == "runsc/container"  # public, before
        report = deployed.organizer.job(job["id"])["report"]
        assert report["sandboxes"] == {"runsc/container": TINY_BLOCKS}
        assert report["outcomes"] == {"ok": TINY_BLOCKS}
    finally:
        deployed.server.stop()

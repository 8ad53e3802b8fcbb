"""`make compose-demo`: the demo flow against the scale-out stack of docker-compose.yml.

1. makes the demo data (kept between runs) and puts each provider's files on its own node:
   the transport-card data under node-a's directory, the taxi GPS under node-b's;
2. builds every image locally (runner, server, Redis, PostgreSQL: no registry) and starts the
   stack afresh (API on PostgreSQL, Redis, node-a and node-b);
3. as organizer: opens the contest, admits a team, and registers each dataset *on its node*
   with `unseen datasets register --node ...`: the node's worker partitions its own file, and
   only the layout and the public sample reach the API;
4. as the contestant: an aggregate job on the transport cards (runs on node-a) and a query on
   the taxi GPS (runs on node-b); as organizer: reviews and releases both;
5. prints the released values and stops the stack (``--keep`` leaves it running).
"""

from __future__ import annotations

import argparse
import os
import runpy
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from rich.table import Table

from client.api import UnseenClient
from client.plans import Query
from examples.demo import (
    EXAMPLE,
    WORK,
    block_seconds_for,
    console,
    manifest,
    open_contest,
    unseen,
    watch,
)

ROOT = Path(__file__).resolve().parents[1]
HOLDINGS = {"node-a": "transport_cards", "node-b": "taxi_gps"}
BLOCKS = {"transport_cards": int(os.environ.get("UNSEEN_DEMO_BLOCKS", "100")), "taxi_gps": 50}


@dataclass
class ComposeStack:
    """One docker-compose project of docker-compose.yml: its host directory, port, token."""

    host_dir: Path
    project: str
    port: int
    bootstrap: str
    server_image: str
    passwords: dict[str, str] = field(
        default_factory=lambda: {
            who: secrets.token_hex(16)
            for who in ("DB", "REDIS_HUB", "REDIS_NODE_A", "REDIS_NODE_B")
        }
    )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "UNSEEN_HOST_DIR": str(self.host_dir),
            "UNSEEN_PORT": str(self.port),
            "UNSEEN_BOOTSTRAP_TOKEN": self.bootstrap,
            "UNSEEN_SERVER_IMAGE": self.server_image,
            **{f"UNSEEN_{who}_PASSWORD": pw for who, pw in self.passwords.items()},
        }

    def compose(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        command = ["docker-compose", "-p", self.project, "-f", str(ROOT / "docker-compose.yml")]
        done = subprocess.run(
            [*command, *args], env=self.env(), capture_output=True, text=True, check=False
        )
        if check and done.returncode != 0:
            raise RuntimeError(f"docker-compose {' '.join(args)} failed:\n{done.stderr[-3000:]}")
        return done

    def node_dir(self, node: str) -> Path:
        return self.host_dir / node

    def up(self, timeout: float = 180) -> None:
        for part in ("server", *HOLDINGS):
            (self.host_dir / part).mkdir(parents=True, exist_ok=True)
        self.compose("build", "redis", "postgres")
        self.compose("up", "-d")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.5)
        raise RuntimeError(f"the stack's API never answered:\n{self.logs()}")

    def logs(self, *services: str, tail: str = "60") -> str:
        return self.compose("logs", "--no-color", "--tail", tail, *services, check=False).stdout

    def down(self) -> None:
        self.compose("down", "-v", "--remove-orphans", check=False)


@contextmanager
def running_stack(
    host_dir: Path, project: str, port: int, keep: bool = False
) -> Iterator[ComposeStack]:
    from sandbox.image import build_server_image

    stack = ComposeStack(host_dir, project, port, secrets.token_urlsafe(24), build_server_image())
    stack.down()  # a fresh stack each time: the demo is repeatable
    shutil.rmtree(host_dir, ignore_errors=True)
    try:
        stack.up()
        yield stack
    except BaseException:
        console.print(stack.logs())
        raise
    finally:
        if not keep:
            stack.down()


def make_data() -> tuple[Path, Path]:
    """The demo's tables and, for each, a sample from another seed of the generator. On the
    stack the samples stay files the organizer registers with the data (the generator's
    tables hold nobody real); synthesizing on a data node is `unseen datasets synthesize`."""
    full, sample = WORK / "data" / "full", WORK / "data" / "sample"
    for out, size, seed in ((full, "demo", "1"), (sample, "test", "2")):
        if not (out / "manifest.json").exists():
            console.print(f"[bold]generating {size} data (seed {seed}) in {out}")
            unseen("data", "generate", "--size", size, "--seed", seed, "--out", str(out))
    return full, sample


def place_files(stack: ComposeStack, full: Path, sample: Path) -> dict[str, dict[str, object]]:
    """Copy each provider's full file and sample onto its own node; nothing onto the API's."""
    entries = {str(e["name"]): e for e in manifest(full)}
    samples = {str(e["name"]): e for e in manifest(sample)}
    placed = {}
    for node, name in HOLDINGS.items():
        incoming = stack.node_dir(node) / "incoming"
        incoming.mkdir(parents=True, exist_ok=True)
        source = incoming / str(entries[name]["file"])
        sample_copy = incoming / f"sample-{samples[name]['file']}"
        shutil.copyfile(full / str(entries[name]["file"]), source)
        shutil.copyfile(sample / str(samples[name]["file"]), sample_copy)
        placed[name] = {**entries[name], "node": node, "source": source, "sample": sample_copy}
    return placed


def register_on_nodes(stack: ComposeStack, token: str, placed: dict[str, dict[str, object]],
                      full: Path) -> None:  # fmt: skip
    for name, entry in placed.items():
        subprocess.run(
            [sys.executable, "-m", "client.cli", "datasets", "register", name,
             "--node", str(entry["node"]), "--source", str(entry["source"]),
             "--sample", str(entry["sample"]), "--manifest", str(full / "manifest.json"),
             "--blocks", str(BLOCKS[name]), "--url", stack.url, "--token", token],
            check=True, cwd=ROOT,
        )  # fmt: skip


def taxi_query() -> dict[str, object]:
    return (
        Query().group_by("occupied").count("fixes").mean("mean_speed", "speed", 0, 120)
        .bound(rows_per_unit=50, groups_per_unit=2).to_dict()
    )  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", action="store_true", help="leave the stack running")
    parser.add_argument("--port", type=int, default=int(os.environ.get("UNSEEN_PORT", "8010")))
    args = parser.parse_args()
    started = time.monotonic()
    full, sample = make_data()
    # Its own directory: never the state of a stack `make compose-up` runs (var/compose).
    host_dir = Path(os.environ.get("UNSEEN_COMPOSE_DIR", ROOT / "var" / "compose-demo")).resolve()
    with running_stack(host_dir, "unseendemo", args.port, keep=args.keep) as stack:
        console.print(f"stack up at {stack.url}: api, postgres, redis, node-a, node-b")
        with UnseenClient(stack.url, stack.bootstrap) as anonymous:
            organizer = anonymous.with_token(anonymous.create_organizer("olga")["token"])
        contestant = open_contest(organizer)
        register_on_nodes(stack, str(organizer.token), place_files(stack, full, sample), full)

        outputs = runpy.run_path(str(EXAMPLE))["OUTPUTS"]
        # the nodes run the stack's runtime and form, which the API's own node states
        job = contestant.submit(
            "transport_cards", EXAMPLE.read_text(), outputs, 1.0,
            block_seconds=block_seconds_for(contestant),
        )  # fmt: skip
        console.print(f"submitted job {job['id']} on transport_cards (node-a)")
        job = watch(contestant, str(job["id"]))
        query = contestant.query("taxi_gps", taxi_query(), 1.0)
        console.print(f"submitted query {query['id']} on taxi_gps (node-b)")
        query = watch(contestant, str(query["id"]))
        for done in (job, query):
            if done["state"] != "awaiting_review":
                console.print(f"[red]{done['id']} ended {done['state']}: "
                              f"{organizer.job(str(done['id'])).get('error_detail')}")  # fmt: skip
                return 1
            organizer.release(str(done["id"]))
        job, query = contestant.job(str(job["id"])), contestant.job(str(query["id"]))

    table = Table(title="released on the compose stack")
    for column in ("dataset (node)", "output", "value", "95% error"):
        table.add_column(column)
    for value in job["result"]:
        table.add_row("transport_cards (node-a)", value["name"], f"{value['value']:.3f}",
                      f"±{value['error_bound_95']:.3f}")  # fmt: skip
    for cell in query["result"]:
        name = f"{cell['name']} occupied={cell['keys']['occupied']}"
        table.add_row("taxi_gps (node-b)", name, f"{cell['value']:.2f}",
                      f"±{cell['error_bound_95']:.2f}")  # fmt: skip
    console.print(table)
    console.print(f"compose demo done in {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

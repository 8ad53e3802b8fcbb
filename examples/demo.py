"""`make demo`: the whole walking skeleton, end to end, through the HTTP API as a client would.

1. makes the demo data (kept between runs) and the runner image (built once, offline);
2. starts a fresh embedded server (its state is wiped each run, so the demo is repeatable);
3. as organizer: opens a contest in round two, admits a team with one contestant (its signed
   licence uploaded and approved, identity verified), registers the three datasets, each with
   a DP synthetic public sample made from its full data (ε charged to its population), and
   prints each sample's fidelity summary;
4. as the contestant: estimates the noise, submits examples/mean_fare_by_period.py in
   aggregate mode against the full transport-card data, and waits;
5. as organizer: reviews and releases the output;
6. as the contestant: runs a query-mode plan (exits and mean fare per metro line in the
   morning peak, each card counted at most twice), released the same way;
7. prints the released values, their noise scale, the ε spent and the team's remaining
   budget. The server is stopped on exit.
"""

from __future__ import annotations

import json
import os
import runpy
import secrets
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from api.launcher import ServerProcess
from client.api import UnseenClient
from client.plans import Query, col, hour

ROOT = Path(__file__).resolve().parents[1]
WORK = Path(os.environ.get("UNSEEN_DEMO_DIR", ROOT / "var" / "demo"))
EXAMPLE = ROOT / "examples" / "mean_fare_by_period.py"
LICENCE = ROOT / "examples" / "signed-licence.pdf"
EPSILON = 1.0
QUERY_EPSILON = 1.0
#: ε of each dataset's synthetic public sample (organizer spending, on its population).
SAMPLE_EPSILON = 1.0
SAMPLE_ROWS = 20_000
# More blocks, less noise (scale ∝ 1/k), more container runs. UNSEEN_DEMO_BLOCKS scales down.
_k = int(os.environ.get("UNSEEN_DEMO_BLOCKS", "100"))
BLOCKS = {"transport_cards": _k, "taxi_gps": max(2, _k // 2), "bus_events": max(2, _k // 2)}
console = Console(stderr=True)


def unseen(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "client.cli", *args], check=True, cwd=ROOT)


def make_data() -> Path:
    full = WORK / "data" / "full"
    if not (full / "manifest.json").exists():
        console.print(f"[bold]generating demo data (seed 1) in {full}")
        unseen("data", "generate", "--size", "demo", "--seed", "1", "--out", str(full))
    return full


def manifest(directory: Path) -> list[dict[str, object]]:
    return json.loads((directory / "manifest.json").read_text())["datasets"]


def register_all(organizer: UnseenClient, full: Path) -> None:
    """Each dataset with a DP synthetic sample (never real rows), and its fidelity summary."""
    for entry in manifest(full):
        name = str(entry["name"])
        organizer.register_dataset(
            name=name,
            description=str(entry.get("description", "")),
            source_path=str(full / str(entry["file"])),
            synthesize={
                "epsilon": SAMPLE_EPSILON,
                "rows": SAMPLE_ROWS,
                "time_bounds": entry.get("time_bounds", {}),
            },
            unit_column=entry["unit_column"],
            bounds=entry.get("bounds", {}),
            key_sets=entry.get("key_sets", {}),
            blocks=BLOCKS.get(name, 50),
            team_epsilon=10.0,
        )
        console.print(f"registered [bold]{name}[/] ({BLOCKS.get(name, 50)} blocks)")
        print(fidelity_summary(name, organizer.syntheses(name)[0]))


def fidelity_summary(name: str, synthesis: dict[str, Any]) -> str:
    """One line per dataset: the synthetic sample's mean error against the full data, beside a
    real-row sample of the same size and independent 1-way marginals (organizers only)."""
    summary = synthesis["report"]["summary"]
    cells = "; ".join(
        f"{way} synthetic {s['synthetic']['mean']:.3f}, real rows {s['real_rows']['mean']:.3f}, "
        f"independent {s['independent']['mean']:.3f}"
        for way, s in summary.items()
    )
    return (f"synthetic sample of {name}: {synthesis['rows']:,} rows at "
            f"ε={synthesis['epsilon']:g}; mean TVD from the full data: {cells}")  # fmt: skip


def open_contest(organizer: UnseenClient) -> UnseenClient:
    """A contest in round two, and a finalist team that has done everything round two takes:
    signed licence uploaded and approved, identity verified, admitted by the organizers."""
    now = datetime.now(UTC)
    organizer.create_contest("soda-demo", "SODA-style contest on synthetic Shanghai data")
    organizer.set_round("soda-demo", 1, now - timedelta(days=30), now + timedelta(days=30))
    organizer.set_round("soda-demo", 2, now - timedelta(hours=1), now + timedelta(days=30))
    team = organizer.create_team("team-alpha")
    contestant = organizer.with_token(organizer.add_member(team["id"], "alice")["token"])
    licence = contestant.upload_licence("team-alpha", LICENCE.read_bytes(), LICENCE.name)
    organizer.approve_licence(licence["id"])
    organizer.verify_identity("alice")
    organizer.admit("team-alpha")
    console.print("contest soda-demo in round two; team-alpha admitted (licence, identity)")
    return contestant


def watch(contestant: UnseenClient, job_id: str) -> dict[str, Any]:
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    ) as progress:
        task = progress.add_task("queued", total=None)

        def update(job: dict[str, Any]) -> None:
            blocks = job["progress"]
            progress.update(
                task,
                description=str(job["state"]),
                completed=blocks["blocks_done"],
                total=blocks["blocks_total"] or None,
            )

        return contestant.wait(job_id, on_update=update, timeout=1800)


def block_seconds_for(contestant: UnseenClient) -> float:
    """Every block gets the same public time T, and the job's length follows from it. The
    example takes tens of milliseconds a block in the zygote form; a container per block (the
    form under gVisor) adds its start, about 2 s there."""
    sandbox = str(contestant.schedule_rules()["sandbox"])
    console.print(f"the node's sandboxes: {sandbox} (runtime/isolation)")
    return 1.0 if sandbox.endswith("/zygote") else 5.0


def run_query(contestant: UnseenClient, organizer: UnseenClient) -> dict:
    """Query mode: exits per metro line in the morning peak, user-level DP, no code at all."""
    plan = (
        Query()
        .where((col("event") == "out") & hour(col("ts")).between(7, 8))
        .group_by("line")
        .count("exits")
        .mean("mean_fare", "fare", lo=0, hi=15)
        .bound(rows_per_unit=2, groups_per_unit=1)
        .to_dict()
    )
    job = contestant.query("transport_cards", plan, QUERY_EPSILON)
    console.print(f"submitted query {job['id']} (ε={QUERY_EPSILON}): exits per line, 7-9 am")
    job = watch(contestant, job["id"])
    organizer.release(str(job["id"]))
    return contestant.job(str(job["id"]))


def show_query(job: dict) -> None:
    cells: dict[object, dict[str, dict]] = {}
    for cell in job["result"]:
        cells.setdefault(cell["keys"]["line"], {})[cell["name"]] = cell
    table = Table(title=f"released: query {job['id']} (each card: one line, ≤ 2 exits)")
    for column in ("line", "exits", "±95%", "mean fare", "±95%"):
        table.add_column(column, justify="right")
    for line, row in sorted(cells.items()):
        exits, fare = row["exits"], row["mean_fare"]
        table.add_row(str(line), f"{exits['value']:g}", f"{exits['error_bound_95']:.0f}",
                      f"{fare['value']:.2f}", f"{fare['error_bound_95']:.2f}")  # fmt: skip
    Console().print(table)


def main() -> int:
    started = time.monotonic()
    full = make_data()
    unseen("images", "build")
    server_dir = WORK / "server"
    shutil.rmtree(server_dir, ignore_errors=True)
    bootstrap = secrets.token_urlsafe(24)
    with ServerProcess(server_dir, bootstrap) as server:
        console.print(f"server up at {server.url} (state in {server_dir})")
        with UnseenClient(server.url, bootstrap) as anonymous:
            organizer = anonymous.with_token(anonymous.create_organizer("olga")["token"])
        contestant = open_contest(organizer)
        register_all(organizer, full)

        outputs = runpy.run_path(str(EXAMPLE))["OUTPUTS"]
        for plan in contestant.estimate("transport_cards", outputs, EPSILON):
            console.print(
                f"estimate {plan['name']}: noise scale {plan['noise_scale']:.3f}, "
                f"95% error ±{plan['error_bound_95']:.3f}"
            )
        job = contestant.submit(
            "transport_cards", EXAMPLE.read_text(), outputs, EPSILON,
            block_seconds=block_seconds_for(contestant),
        )  # fmt: skip
        schedule = job["schedule"]
        console.print(
            f"submitted job {job['id']} (ε={EPSILON}): each block has "
            f"{schedule['block_seconds']:g} s, the job runs {schedule['seconds']:g} s on schedule"
        )
        job = watch(contestant, job["id"])
        if job["state"] != "awaiting_review":
            console.print(f"[red]job ended {job['state']} ({job['error_class']})")
            return 1
        pending = organizer.job(str(job["id"]))
        console.print(
            f"organizer review: {pending['report']['blocks_defaulted']} of "
            f"{pending['report']['blocks']} blocks defaulted; releasing"
        )
        organizer.release(str(job["id"]))
        job = contestant.job(str(job["id"]))
        query = run_query(contestant, organizer)
        budget = next(b for b in contestant.budget() if "transport_cards" in b["datasets"])

    table = Table(title=f"released: job {job['id']} on transport_cards ({job['state']})")
    for column in ("output", "value", "noise scale", "95% error", "ε"):
        table.add_column(column, justify="right" if column != "output" else "left")
    for value in job["result"]:
        table.add_row(
            value["name"],
            f"{value['value']:.3f}",
            f"{value['noise_scale']:.3f}",
            f"±{value['error_bound_95']:.3f}",
            f"{value['epsilon']:.3f}",
        )
    Console().print(table)
    show_query(query)
    print(f"epsilon spent by this job: {job['epsilon']:g}, by the query: {query['epsilon']:g}")
    print(
        f"team budget on population {budget['population']}: spent {budget['spent']:g} of "
        f"{budget['cap']:g}, remaining {budget['remaining']:g} (the population has "
        f"{budget['population_remaining']:g} of {budget['population_cap']:g} left over all teams)"
    )
    print(f"demo took {time.monotonic() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

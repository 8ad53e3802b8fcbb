"""API read path under load: job status polls, released-result reads and budget reads on a
running server over loopback, side by side with GET /healthz on the same server (the baseline:
no auth, no database) and GET /v1/me (auth alone), in one run.

    .venv/bin/python -m bench.api                          # 10 s per endpoint, 16 connections
    .venv/bin/python -m bench.api --seconds 3 --connections 32

Setup (10-20 s here): small test data in var/bench/api (reused), a server (``api.cli run``
with --processes API processes, default 2: one per core) with a fresh data dir in
var/bench/api/server, an organizer, a contest and an admitted team; transport_cards in
--blocks blocks; one query job (count by line) and one aggregate job
(examples/mean_fare_by_period.py) run to review. The status poll reads the aggregate job while
it awaits review; then both are released and the query job is read with its result.

Two load generators, each a closed loop over --connections keep-alive connections for
--seconds per endpoint: wrk (Debian's ``wrk`` package; skipped with a message when absent) and
a small asyncio HTTP/1.1 client in this process that times every request. Server CPU comes
from /proc (all its processes), so "CPU ms/req" less the baseline's is the server's cost of
auth + database + JSON.

Target of the API issue: >= 1,000 req/s and p99 <= 50 ms per endpoint on this machine.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import re
import resource
import runpy
import secrets
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from api.launcher import ServerProcess
from client.api import UnseenClient
from client.plans import Query
from sandbox.image import build_runner_image
from tests.conftest import SodaData, admitted_member, open_contest

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "var" / "bench" / "api"
LOG = WORK / "server.log"
EXAMPLE = ROOT / "examples" / "mean_fare_by_period.py"
TARGET_RPS, TARGET_P99_MS = 1000.0, 50.0
PLAN = Query().group_by("line").count("trips").bound(rows_per_unit=3, groups_per_unit=2).to_dict()


@dataclass(frozen=True)
class Run:
    endpoint: str
    generator: str
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    errors: int
    server_cpu: float  # CPU seconds of the server process over the run
    client_cpu: float  # CPU seconds of the load generator over the run
    load: float  # this machine's 1-minute load average at the end of the run

    @property
    def rps(self) -> float:
        return self.requests / self.seconds

    @property
    def cpu_ms(self) -> float:
        """Server CPU per request, ms."""
        return self.server_cpu / max(self.requests, 1) * 1000

    @property
    def met(self) -> bool:
        return _verdict(self) == "met"


@dataclass(frozen=True)
class Endpoint:
    label: str
    path: str
    token: str | None


def generate_data() -> SodaData:
    """Full data (seed 1) and public sample (seed 2) of transport_cards, test size, reused."""
    for name, seed in (("full", 1), ("sample", 2)):
        out = WORK / name
        if not (out / "manifest.json").exists():
            subprocess.run(
                [sys.executable, "-m", "client.cli", "data", "generate", "--size", "test",
                 "--seed", str(seed), "--out", str(out), "--only", "transport_cards"],
                check=True, cwd=ROOT,
            )  # fmt: skip
    return SodaData(WORK / "full", WORK / "sample")


def _tree(pid: int) -> list[int]:
    """The process and its descendants (uvicorn's API processes, with --processes > 1)."""
    found = [pid]
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            found += _tree(int(child))
    return found


def server_cpu(server: ServerProcess) -> float:
    """User + system CPU seconds of the server's processes (all their threads) so far."""
    process = server._process  # the launcher keeps its Popen private; read-only use here
    assert process is not None
    total = 0
    for pid in _tree(process.pid):
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def server_threads(server: ServerProcess) -> int:
    assert server._process is not None
    threads = 0
    for pid in _tree(server._process.pid):
        status = Path(f"/proc/{pid}/status").read_text()
        threads += int(re.search(r"^Threads:\s+(\d+)", status, re.M).group(1))  # type: ignore[union-attr]
    return threads


def setup(server: ServerProcess, blocks: int) -> tuple[UnseenClient, UnseenClient, str, str]:
    """Organizer, contest, admitted team, dataset; a query and an aggregate job awaiting review.
    Returns (organizer, contestant, query job id, aggregate job id)."""
    anonymous = UnseenClient(server.url, server.bootstrap_token)
    organizer = anonymous.with_token(anonymous.create_organizer("olga")["token"])
    anonymous.close()
    open_contest(organizer, "bench")
    contestant = admitted_member(organizer, "team-bench", "bea")
    organizer.register_dataset(**generate_data().registration("transport_cards", blocks))
    query = contestant.query("transport_cards", PLAN, 1.0)["id"]
    outputs = runpy.run_path(str(EXAMPLE))["OUTPUTS"]
    aggregate = contestant.submit("transport_cards", EXAMPLE.read_text(), outputs, 1.0)["id"]
    for job_id in (query, aggregate):
        state = contestant.wait(job_id, timeout=300)["state"]
        if state != "awaiting_review":
            raise RuntimeError(f"job {job_id} ended {state}; see {LOG}")
    return organizer, contestant, query, aggregate


# --- the Python load generator -----------------------------------------------------------------


def _content_length(head: bytes) -> int:
    found = re.search(rb"\r\ncontent-length:\s*(\d+)", head, re.I)
    if found is None:
        raise ValueError("response without Content-Length")
    return int(found.group(1))


async def _connection(port: int, request: bytes, deadline: float, latencies: list[float]) -> int:
    """One keep-alive connection in a closed loop until the deadline (reconnecting after a
    failure); appends each request's latency, returns its error count."""
    errors = 0
    while time.perf_counter() < deadline:
        writer = None
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            while time.perf_counter() < deadline:
                started = time.perf_counter()
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                await reader.readexactly(_content_length(head))
                latencies.append(time.perf_counter() - started)
                errors += not head.startswith(b"HTTP/1.1 200 ")
        except (OSError, ValueError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            errors += 1
            await asyncio.sleep(0.01)  # a refused connect must not spin
        finally:
            if writer is not None:
                writer.close()
    return errors


async def _python_load(
    port: int, request: bytes, seconds: float, connections: int
) -> tuple[list[float], int, float]:
    latencies: list[float] = []
    started = time.perf_counter()
    deadline = started + seconds
    errors = await asyncio.gather(
        *(_connection(port, request, deadline, latencies) for _ in range(connections))
    )
    return latencies, sum(errors), time.perf_counter() - started


def _percentile(ordered: list[float], q: float) -> float:
    return ordered[max(math.ceil(q * len(ordered)) - 1, 0)] if ordered else math.nan


def python_run(server: ServerProcess, endpoint: Endpoint, seconds: float, conns: int) -> Run:
    auth = f"Authorization: Bearer {endpoint.token}\r\n" if endpoint.token else ""
    request = f"GET {endpoint.path} HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n{auth}\r\n"
    cpu, own = server_cpu(server), time.process_time()
    latencies, errors, elapsed = asyncio.run(
        _python_load(server.port, request.encode(), seconds, conns)
    )
    cpu, own = server_cpu(server) - cpu, time.process_time() - own
    latencies.sort()
    p50, p99 = _percentile(latencies, 0.50) * 1000, _percentile(latencies, 0.99) * 1000
    load = os.getloadavg()[0]
    return Run(endpoint.label, "python", len(latencies), elapsed, p50, p99, errors, cpu, own, load)


# --- wrk ---------------------------------------------------------------------------------------

_UNIT_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def _wrk_ms(output: str, percent: str) -> float:
    found = re.search(rf"^\s*{percent}%\s+([\d.]+)(us|ms|s|m)\s*$", output, re.M)
    return float(found.group(1)) * _UNIT_MS[found.group(2)] if found else math.nan


def wrk_run(
    server: ServerProcess, endpoint: Endpoint, seconds: float, conns: int, threads: int
) -> Run:
    headers = ["-H", f"Authorization: Bearer {endpoint.token}"] if endpoint.token else []
    command = ["wrk", f"-t{min(threads, conns)}", f"-c{conns}", f"-d{seconds:g}s", "--latency",
               *headers, f"{server.url}{endpoint.path}"]  # fmt: skip
    cpu, own = server_cpu(server), resource.getrusage(resource.RUSAGE_CHILDREN)
    output = subprocess.run(
        command, capture_output=True, text=True, check=True, timeout=seconds + 60
    ).stdout
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = server_cpu(server) - cpu
    client = after.ru_utime + after.ru_stime - own.ru_utime - own.ru_stime
    total = re.search(r"(\d+) requests in ([\d.]+)(\w+)", output)
    if total is None:
        raise RuntimeError(f"cannot read wrk's output:\n{output}")
    wrk_seconds = float(total.group(2)) * _UNIT_MS[total.group(3)] / 1000
    errors = sum(int(n) for n in re.findall(r"Non-2xx or 3xx responses: (\d+)", output))
    socket = re.search(r"connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    errors += sum(int(n) for n in socket.groups()) if socket else 0
    p50, p99 = _wrk_ms(output, "50"), _wrk_ms(output, "99")
    load = os.getloadavg()[0]
    return Run(endpoint.label, "wrk", int(total.group(1)), wrk_seconds, p50, p99, errors, cpu,
               client, load)  # fmt: skip


# --- report ------------------------------------------------------------------------------------


def _verdict(run: Run) -> str:
    missed = [what for what, bad in (("req/s", run.rps < TARGET_RPS),
              ("p99", run.p99_ms > TARGET_P99_MS), ("errors", run.errors > 0)) if bad]  # fmt: skip
    return "met" if not missed else "missed: " + ", ".join(missed)


def print_table(runs: list[Run], seconds: float, conns: int) -> None:
    target = f">= {TARGET_RPS:,.0f} req/s and p99 <= {TARGET_P99_MS:g} ms"
    print(f"\n{seconds:g} s per endpoint and generator, {conns} keep-alive connections, "
          f"loopback. Target: {target}")  # fmt: skip
    print(f"{'endpoint':<40}{'gen':>7}{'req/s':>8}{'p50 ms':>8}{'p99 ms':>8}{'errors':>7}"
          f"{'rps/base':>9}{'p99/base':>9}{'CPU ms/req':>11}{'+base':>7}{'srv CPU':>8}"
          f"{'gen CPU':>8}{'load1':>6}  target")  # fmt: skip
    base = {r.generator: r for r in runs if r.endpoint == runs[0].endpoint}
    for r in sorted(runs, key=lambda r: (r.generator != "wrk", runs.index(r))):
        b = base[r.generator]
        print(f"{r.endpoint:<40}{r.generator:>7}{r.rps:>8,.0f}{r.p50_ms:>8.1f}{r.p99_ms:>8.1f}"
              f"{r.errors:>7}{r.rps / b.rps:>8.2f}x{r.p99_ms / b.p99_ms:>8.2f}x"
              f"{r.cpu_ms:>11.2f}{r.cpu_ms - b.cpu_ms:>7.2f}{r.server_cpu / r.seconds:>8.0%}"
              f"{r.client_cpu / r.seconds:>8.0%}{r.load:>6.1f}  {_verdict(r)}")  # fmt: skip
    print("rps/base, p99/base: against GET /healthz (no auth, no database) with the same "
          "generator. CPU ms/req: server process CPU per request; +base: over the baseline's. "
          "srv/gen CPU: share of one core, server and load generator. load1: this machine's "
          f"1-minute load average at the end of the run ({os.cpu_count()} cores).")  # fmt: skip
    api = [r for r in runs if r.endpoint != runs[0].endpoint]
    print(f"target met by {sum(r.met for r in api)} of {len(api)} API runs")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="per endpoint and generator")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--wrk-threads", type=int, default=2)
    parser.add_argument(
        "--warmup", type=float, default=1.0, help="seconds per endpoint, unrecorded"
    )
    parser.add_argument("--blocks", type=int, default=4)
    parser.add_argument(
        "--processes", type=int, default=2, help="API processes (unseen server run --processes)"
    )
    args = parser.parse_args()

    wrk = shutil.which("wrk")
    if wrk is None:
        print("wrk is not installed (apt-get install -y wrk): the Python load generator only.")
    build_runner_image()
    generate_data()
    data_dir = WORK / "server"
    shutil.rmtree(data_dir, ignore_errors=True)
    LOG.unlink(missing_ok=True)
    # Its own node label: a server reaps its node's sandbox containers when it starts, and the
    # default node ("local") may be another server's on this machine (the test suite's).
    env = {"UNSEEN_SLOTS": "2", "UNSEEN_NODE": "bench-api",
           "UNSEEN_API_PROCESSES": str(args.processes)}  # fmt: skip
    server = ServerProcess(data_dir, secrets.token_urlsafe(16), env=env, log_path=LOG)
    with server:
        started = time.perf_counter()
        organizer, contestant, query, aggregate = setup(server, args.blocks)
        print(f"setup: {args.blocks} blocks, query job {query} and aggregate job {aggregate} "
              f"awaiting review in {time.perf_counter() - started:.0f} s; server {server.url}, "
              f"{args.processes} API process(es), {server_threads(server)} threads")  # fmt: skip
        token = contestant.token or ""
        endpoints = [
            Endpoint("GET /healthz (baseline)", "/healthz", None),
            Endpoint("GET /v1/me (auth only)", "/v1/me", token),
            Endpoint("GET /v1/jobs/{id} poll, awaiting review", f"/v1/jobs/{aggregate}", token),
            Endpoint("GET /v1/jobs/{id} released, with result", f"/v1/jobs/{query}", token),
            Endpoint("GET /v1/budget", "/v1/budget", token),
        ]
        runs: list[Run] = []
        for endpoint in endpoints:
            if endpoint.path == f"/v1/jobs/{query}":
                for job_id in (query, aggregate):
                    organizer.release(job_id)
                released = contestant.job(query)
                cells = len(released["result"] or [])
                print(f"released both jobs; the query job's result has {cells} cells")
            headers = {"Authorization": f"Bearer {endpoint.token}"} if endpoint.token else {}
            size = len(httpx.get(server.url + endpoint.path, headers=headers).content)
            print(f"{endpoint.label}: {size:,} bytes", flush=True)
            python_run(server, endpoint, args.warmup, args.connections)
            runs.append(python_run(server, endpoint, args.seconds, args.connections))
            if wrk is not None:
                runs.append(
                    wrk_run(server, endpoint, args.seconds, args.connections, args.wrk_threads)
                )
        print(f"server threads at the end: {server_threads(server)}")
    print_table(runs, args.seconds, args.connections)


if __name__ == "__main__":
    main()

"""The contestant's journey without surprises (issue 16), from the terminal against a real
server: syntax errors named with their line, `estimate FILE.py`, the noise shown and asked for
before ε is spent, live progress for queries, why a job was rejected or failed and what became
of its ε, IDs that fit 80 columns and work by prefix, NaN/inf refused in one line, and after
`logout` a plain "not logged in"."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.conftest import LICENCE_PDF, ROOT, Deployment
from tests.test_cli_journey import cli
from tests.test_cli_run import unseen
from tests.test_e2e_jobs import budget_on

pytestmark = pytest.mark.docker
QUICK = (
    "def analyze(df):\n    return {'n': float(len(df))}\n"
    "OUTPUTS = [{'name': 'n', 'lo': 0, 'hi': 100000}]\n"
)
BROKEN = "def analyze(df):\n    n = len(df\n    return {'n': float(n)}\nOUTPUTS = []\n"
OUTPUTS = [{"name": "n", "lo": 0, "hi": 100000}]


@pytest.fixture(scope="module")
def member(deployment: Deployment) -> str:
    return str(deployment.new_contestant("team-no-surprises", "nora").token)


@pytest.fixture
def quick(tmp_path: Path) -> Path:
    path = tmp_path / "count.py"
    path.write_text(QUICK)
    return path


def one_line(done: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    return done.stderr


def on_a_terminal(
    command: str, url: str, token: str, answer: str = ""
) -> subprocess.CompletedProcess[str]:
    """``unseen COMMAND`` under a pseudo-terminal (util-linux `script`), typing ``answer``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("UNSEEN_")}
    env.update({"UNSEEN_URL": url, "UNSEEN_TOKEN": token, "COLUMNS": "100",
                "TERM": "xterm-256color"})  # fmt: skip
    line = f"{sys.executable} -m client.cli {command}"
    return subprocess.run(
        ["script", "-qefc", line, "/dev/null"],
        input=answer, capture_output=True, text=True, env=env, cwd=ROOT, timeout=300,
    )  # fmt: skip


@pytest.mark.parametrize("command", [["submit", "-e", "0.1"], ["run", "--sample"]])
def test_a_syntax_error_is_named_with_its_line(
    deployment: Deployment, member: str, tmp_path: Path, command: list[str]
) -> None:
    broken = tmp_path / "broken.py"
    broken.write_text(BROKEN)
    before = budget_on(deployment.organizer.with_token(member), "cards_tiny")
    done = unseen(command[0], str(broken), "-d", "cards_tiny", *command[1:],
                  url=deployment.server.url, token=member)  # fmt: skip
    assert done.returncode == 2
    said = one_line(done)
    assert "broken.py, line 2" in said and "syntax error" in said and "declares no" not in said
    assert budget_on(deployment.organizer.with_token(member), "cards_tiny") == before


def test_estimate_a_python_file_spends_nothing(
    deployment: Deployment, member: str, quick: Path
) -> None:
    contestant = deployment.organizer.with_token(member)
    before = budget_on(contestant, "cards_tiny")
    priced = unseen("estimate", str(quick), "-d", "cards_tiny", "-e", "0.5", "--json",
                    url=deployment.server.url, token=member)  # fmt: skip
    assert priced.returncode == 0, priced.stderr
    (n,) = json.loads(priced.stdout)
    assert n["name"] == "n" and n["epsilon"] == 0.5 and n["noise_scale"] > 0
    table = unseen("estimate", str(quick), "-d", "cards_tiny", "-e", "0.5",
                   url=deployment.server.url, token=member)  # fmt: skip
    assert "95% error" in table.stdout and "±" in table.stdout
    banned = quick.with_name("net.py")
    banned.write_text("import socket\n" + QUICK)
    refused = unseen("estimate", str(banned), "-d", "cards_tiny", "-e", "0.5",
                     url=deployment.server.url, token=member)  # fmt: skip
    assert refused.returncode == 3 and "socket" in one_line(refused)
    assert budget_on(contestant, "cards_tiny") == before


def test_submit_shows_the_noise_and_asks_on_a_terminal(
    deployment: Deployment, member: str, quick: Path
) -> None:
    url, contestant = deployment.server.url, deployment.organizer.with_token(member)
    before = budget_on(contestant, "cards_tiny")
    command = f"submit {quick} -d cards_tiny -e 0.1 --no-wait"
    declined = on_a_terminal(command, url, member, answer="n\n")
    assert declined.returncode == 1, declined.stdout
    assert "95% error" in declined.stdout and "spend it?" in declined.stdout
    assert "not submitted: nothing spent" in declined.stdout
    assert budget_on(contestant, "cards_tiny") == before

    accepted = on_a_terminal(command, url, member, answer="y\n")
    assert accepted.returncode == 0 and "submitted job" in accepted.stdout, accepted.stdout
    skipped = on_a_terminal(command + " --yes", url, member)
    assert skipped.returncode == 0 and "spend it?" not in skipped.stdout
    assert "before spending" in skipped.stdout and "submitted job" in skipped.stdout
    assert budget_on(contestant, "cards_tiny")["reserved"] + budget_on(contestant, "cards_tiny")[
        "spent"
    ] == pytest.approx(before["spent"] + before["reserved"] + 0.2)
    # not a terminal (a script): no question, the noise is still shown first
    scripted = unseen("submit", str(quick), "-d", "cards_tiny", "-e", "0.1", "--no-wait",
                      url=url, token=member)  # fmt: skip
    assert scripted.returncode == 0, scripted.stderr
    assert scripted.stdout.index("95% error") < scripted.stdout.index("submitted job")


def test_query_shows_the_same_live_progress_as_submit(deployment: Deployment, member: str) -> None:
    shown = on_a_terminal("query --count-by line -d cards_tiny -e 0.1", deployment.server.url,
                          member)  # fmt: skip
    assert shown.returncode == 0, shown.stdout[-2000:]
    screen = shown.stdout
    assert "\x1b[" in screen and "━" in screen  # drawn live
    assert "state: running" in screen or "state: queued" in screen
    assert "awaiting_review: an organizer reviews it" in screen


def test_a_rejected_job_says_why_and_its_charge(
    deployment: Deployment, member: str, quick: Path
) -> None:
    url, contestant = deployment.server.url, deployment.organizer.with_token(member)
    job = contestant.submit("cards_tiny", QUICK, OUTPUTS, 0.1)["id"]
    assert contestant.wait(job, timeout=300)["state"] == "awaiting_review"
    assert contestant.job(job)["charge"] == "charged"  # noise was drawn
    deployment.organizer.reject(job, "outputs too fine-grained")
    said = unseen("result", job[:8], url=url, token=member)
    assert said.returncode == 1
    assert "outputs too fine-grained" in one_line(said) and "ε 0.1 was charged" in said.stderr
    assert "submit again" in said.stderr
    watched = unseen("watch", job[:8], url=url, token=member)
    assert "outputs too fine-grained" in watched.stderr
    listed = unseen("jobs", url=url, token=member)
    row = next(line for line in listed.stdout.splitlines() if job[:8] in line)
    assert "0.1 charged" in row
    sample = contestant.run_on_sample("cards_tiny", QUICK, OUTPUTS)
    assert sample["charge"] == "none"


def test_ids_fit_80_columns_and_any_unique_prefix_works(
    deployment: Deployment, member: str
) -> None:
    url, contestant = deployment.server.url, deployment.organizer.with_token(member)
    # Sample runs until two of the team's jobs share a first character (pigeonhole: <= 17).
    jobs = [j["id"] for j in contestant.jobs()]
    while len({j[0] for j in jobs}) == len(jobs):
        jobs.append(contestant.run_on_sample("cards_tiny", QUICK, OUTPUTS)["id"])
    listed = unseen("jobs", url=url, token=member, columns=80)
    assert listed.returncode == 0, listed.stderr
    assert max(map(len, listed.stdout.splitlines())) <= 80
    for job in jobs:  # each id's shown prefix is whole on its line
        assert any(job[:8] in line for line in listed.stdout.splitlines()), job

    first = jobs[-1]
    shown = unseen("result", first[:8], "--json", url=url, token=member)
    assert shown.returncode == 0 and json.loads(shown.stdout)["job"] == first
    shared = next(j[0] for j in jobs if sum(k[0] == j[0] for k in jobs) > 1)
    ambiguous = unseen("result", shared, url=url, token=member)
    assert ambiguous.returncode == 2 and "type more of the id" in one_line(ambiguous)
    unknown = next(c for c in "0123456789abcdef" if all(not j.startswith(c) for j in jobs))
    missing = unseen("watch", unknown * 6, url=url, token=member)
    assert missing.returncode == 1 and "`unseen jobs`" in one_line(missing)
    typo = unseen("result", "3f2a-x", url=url, token=member)
    assert typo.returncode == 2 and "not a job id" in one_line(typo)

    # Another team's job is not found through a prefix: a contestant matches among their own.
    theirs = deployment.contestant.run_on_sample("cards_tiny", QUICK, OUTPUTS)["id"]
    if not any(j.startswith(theirs[:12]) for j in jobs):
        probe = unseen("result", theirs[:12], url=url, token=member)
        assert probe.returncode == 1 and "no job of yours" in one_line(probe)
        headers = {"Authorization": f"Bearer {member}"}
        found = httpx.get(f"{url}/v1/jobs", params={"prefix": theirs[:12]}, headers=headers)
        assert found.status_code == 200 and found.json() == []
    assert [j["id"] for j in deployment.organizer.jobs(prefix=theirs[:12])] == [theirs]
    bad = httpx.get(f"{url}/v1/jobs", params={"prefix": "%"}, headers={"Authorization":
                    f"Bearer {member}"})  # fmt: skip
    assert bad.status_code == 422


def test_licence_ids_by_prefix(deployment: Deployment, tmp_path: Path) -> None:
    d = deployment
    org = {"UNSEEN_URL": d.server.url, "UNSEEN_TOKEN": str(d.organizer.token), "COLUMNS": "80"}
    team = d.organizer.create_team("team-prefixes")
    member = d.organizer.with_token(d.organizer.add_member(team["id"], "pim")["token"])
    licence = member.upload_licence("team-prefixes", LICENCE_PDF, "licence.pdf")["id"]
    listed = cli("licences", "list", "team-prefixes", home=tmp_path, extra=org)
    assert licence[:8] in listed.stdout and max(map(len, listed.stdout.splitlines())) <= 80
    approved = cli("licences", "approve", licence[:8], home=tmp_path, extra=org)
    assert approved.returncode == 0, approved.stderr
    assert member.licences("team-prefixes")[0]["status"] == "approved"
    unknown = next(c for c in "0123456789abcdef" if not licence.startswith(c))
    missing = cli("licences", "reject", unknown * 7, "-r", "x", home=tmp_path, extra=org)
    assert missing.returncode == 1 and "no licence" in one_line(missing)


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "NaN"])
def test_epsilon_must_be_finite_in_one_line(
    deployment: Deployment, member: str, quick: Path, value: str
) -> None:
    for command in (["submit", str(quick)], ["estimate", str(quick)], ["query", "--count-by",
                                                                       "line"]):  # fmt: skip
        done = unseen(*command, "-d", "cards_tiny", "-e", value, url=deployment.server.url,
                      token=member)  # fmt: skip
        assert done.returncode == 2, (command, done.stderr)
        assert "--epsilon must be a finite number" in one_line(done)


@pytest.mark.parametrize("route", ["/v1/jobs", "/v1/estimate", "/v1/queries"])
@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity"])
def test_the_api_says_epsilon_must_be_finite(
    deployment: Deployment, member: str, route: str, value: str
) -> None:
    contestant = deployment.organizer.with_token(member)
    before = budget_on(contestant, "cards_tiny")
    body = {
        "/v1/jobs": f'"code": {json.dumps(QUICK)}, "outputs": {json.dumps(OUTPUTS)}',
        "/v1/estimate": f'"outputs": {json.dumps(OUTPUTS)}',
        "/v1/queries": '"plan": {"aggregates": [{"name": "n", "op": "count"}]}',
    }[route]
    sent = httpx.post(
        deployment.server.url + route,
        content=f'{{"dataset": "cards_tiny", {body}, "epsilon": {value}}}'.encode(),
        headers={"Authorization": f"Bearer {member}", "Content-Type": "application/json"},
    )
    assert sent.status_code == 422, sent.text
    message = sent.json()["message"]
    assert "epsilon: Input should be a finite number" in message
    assert "less than" not in message and "greater than" not in message
    assert budget_on(contestant, "cards_tiny") == before


def test_errors_name_commands_and_flags_not_routes(
    deployment: Deployment, member: str, quick: Path
) -> None:
    url = deployment.server.url
    unknown = unseen("result", "0" * 32, url=url, token=member)
    assert unknown.returncode == 1 and "`unseen jobs`" in one_line(unknown)
    assert "/v1/" not in unknown.stderr
    too_much = unseen("submit", str(quick), "-d", "cards_tiny", "-e", "50", url=url, token=member)
    said = one_line(too_much)
    assert "--epsilon" in said and "`unseen submit --help`" in said and "/docs" not in said
    full = unseen("run", str(quick), "-d", "cards_tiny", url=url, token=member)
    assert "`unseen submit" in one_line(full) and "/v1/" not in full.stderr


def test_after_logout_commands_say_not_logged_in(deployment: Deployment, tmp_path: Path) -> None:
    member = deployment.new_contestant("team-logged-out", "lou")
    home = tmp_path / "home"
    assert cli("login", deployment.server.url, "--token", str(member.token),
               home=home).returncode == 0  # fmt: skip
    assert cli("logout", home=home).returncode == 0
    for command in (["jobs"], ["budget"], ["result", "3f2a9c01"]):
        done = cli(*command, home=home)
        assert done.returncode == 1
        said = one_line(done)
        assert "not logged in; run `unseen login URL`" in said and "127.0.0.1" not in said
    no_token = cli("jobs", "--url", deployment.server.url, home=home)
    assert no_token.returncode == 1
    assert f"run `unseen login {deployment.server.url}`" in one_line(no_token)

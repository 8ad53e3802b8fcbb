"""The organizer's journey with the CLI alone, against a real server: register a dataset,
take a team through licence, identity and admission, then review: show, release, reject."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import LICENCE_PDF, Deployment, SodaData
from tests.test_cli_journey import cli

pytestmark = pytest.mark.docker
QUICK = "def analyze(df):\n    return {'n': float(len(df))}\n"
OUTPUTS = [{"name": "n", "lo": 0, "hi": 100000}]
# What a team could send to crash the review or hide a line from the reviewer.
HOSTILE = (
    "def analyze(df):\n"
    "    print('[bold]log[/] [/]')\n"
    "    return {'n': float(len(df))}  # [/] [white on white]hidden[/white on white]"
    " \x1b[8mconcealed\x1b[0m \u202eevil\n"
)


def as_organizer(d: Deployment) -> dict[str, str]:
    return {"UNSEEN_URL": d.server.url, "UNSEEN_TOKEN": str(d.organizer.token)}


def test_register_admit_and_review_from_the_terminal(
    deployment: Deployment, soda: SodaData, tmp_path: Path
) -> None:
    d, home = deployment, tmp_path
    org = as_organizer(d)
    entry = soda.entries(soda.full)["transport_cards"]
    files = ["--source", str(soda.full / str(entry["file"])),
             "--sample", str(soda.sample / "transport_cards.parquet"), "--blocks", "2"]  # fmt: skip
    taken = cli("datasets", "register", "transport_cards", *files, "--manifest",
                str(soda.full / "manifest.json"), home=home, extra=org)  # fmt: skip
    assert taken.returncode == 1 and "already registered" in taken.stderr
    manifest = json.loads((soda.full / "manifest.json").read_text())
    manifest["datasets"][0]["name"] = "cards_cli"
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    registered = cli("datasets", "register", "cards_cli", *files, "--manifest",
                     str(tmp_path / "manifest.json"), home=home, extra=org)  # fmt: skip
    assert registered.returncode == 0, registered.stderr
    assert "registered cards_cli: 2 blocks" in registered.stdout

    team = d.organizer.create_team("team-cli-org")
    member = d.organizer.with_token(d.organizer.add_member(team["id"], "uma")["token"])
    mine = {"UNSEEN_URL": d.server.url, "UNSEEN_TOKEN": str(member.token)}
    signed = tmp_path / "signed.pdf"
    signed.write_bytes(LICENCE_PDF)
    assert cli("licences", "upload", str(signed), "--team", "team-cli-org", home=home,
               extra=mine).returncode == 0  # fmt: skip
    refused = cli("review", home=home, extra=mine)
    assert refused.returncode == 1 and "organizer" in refused.stderr

    status = {t["name"]: t for t in json.loads(cli("teams", "--json", home=home,
                                                   extra=org).stdout)}  # fmt: skip
    assert status["team-cli-org"]["licence"]["status"] == "pending"
    licence = json.loads(cli("licences", "list", "team-cli-org", "--json", home=home,
                             extra=org).stdout)[0]["id"]  # fmt: skip
    for command in (["licences", "approve", licence], ["teams", "verify", "uma"],
                    ["teams", "admit", "team-cli-org"]):  # fmt: skip
        done = cli(*command, home=home, extra=org)
        assert done.returncode == 0, done.stderr
    assert "nothing" in cli("teams", home=home, extra=org).stdout

    jobs = [member.submit("cards_cli", code, OUTPUTS, 0.2)["id"] for code in (HOSTILE, QUICK)]
    for job in jobs:
        assert member.wait(job, timeout=300)["state"] == "awaiting_review"
    queue = {j["id"] for j in json.loads(cli("review", "--json", home=home, extra=org).stdout)}
    assert set(jobs) <= queue
    shown = cli("review", "show", jobs[0], home=home, extra=org)
    assert shown.returncode == 0, shown.stderr
    assert "value (noised)" in shown.stdout and "analyze" in shown.stdout
    # verbatim: markup shown as typed, control and bidi characters as visible escapes
    assert "[/] [white on white]hidden[/white on white] \\x1b[8mconcealed" in shown.stdout
    assert "\x1b" not in shown.stdout and "\\u202eevil" in shown.stdout
    assert "[bold]log[/] [/]" in shown.stdout  # the logs, too
    assert "from the full data" in shown.stdout and "sees a rejection" in shown.stdout
    assert cli("review", "release", jobs[0], home=home, extra=org).returncode == 0
    rejected = cli("review", "reject", jobs[1], "--reason", "too fine", home=home, extra=org)
    assert rejected.returncode == 0 and "stays spent" in rejected.stdout
    assert member.job(jobs[0])["state"] == "released"
    assert member.job(jobs[1])["review_reason"] == "too fine"
    again = cli("review", "release", jobs[1], home=home, extra=org)
    assert again.returncode == 1 and "only jobs awaiting review" in again.stderr

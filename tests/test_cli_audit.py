"""`unseen audit` and `unseen audit verify` against real servers: the log as a table or JSON,
an intact chain, and a tampered one named with exit code 1."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from tests.conftest import Deployment, SodaData, start_deployment
from tests.test_cli_run import unseen

pytestmark = pytest.mark.docker


def test_audit_lists_entries_and_verify_finds_the_chain_intact(deployment: Deployment) -> None:
    url, token = deployment.server.url, deployment.organizer.token
    listed = unseen("audit", "--action", "team.created", "--json", url=url, token=token)
    assert listed.returncode == 0, listed.stderr
    events = json.loads(listed.stdout)
    assert events and all(e["action"] == "team.created" for e in events)
    table = unseen("audit", "--limit", "5", url=url, token=token)
    assert table.returncode == 0 and "action" in table.stdout
    intact = unseen("audit", "verify", url=url, token=token)
    assert intact.returncode == 0 and "audit log intact" in intact.stdout
    contestant = unseen("audit", "verify", url=url, token=deployment.contestant.token)
    assert contestant.returncode == 1 and "organizer" in contestant.stderr


def test_verify_names_the_entry_someone_changed(
    runner_image: str, soda: SodaData, tmp_path: Path
) -> None:
    d = start_deployment(tmp_path / "state", soda, {"UNSEEN_NODE": "audit-tamper"})
    try:
        with sqlite3.connect(d.server.data_dir / "unseen.db") as connection:
            connection.execute("UPDATE audit_events SET actor = 'mallory' WHERE seq = 3")
        broken = unseen("audit", "verify", url=d.server.url, token=d.organizer.token)
        assert broken.returncode == 1
        assert "broken at entry 3" in broken.stderr and "Traceback" not in broken.stderr
    finally:
        d.server.stop()

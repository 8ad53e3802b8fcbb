"""Organizers set token lifetimes (issue 16, "Accounts": "tokens with an expiry, default and
maximum set by organizers"): the server's settings hold until they do; logins then get their
default and are refused past their maximum; lowering the maximum cuts live tokens back to it
at once (a data node's credential keeps no expiry); each change is audited; contestants read
the policy but cannot set it. Against the real app over HTTP, and from the terminal."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from api.settings import AccountRules
from client.api import UnseenClient, UnseenError
from tests.test_cli_accounts import login, one_line
from tests.test_cli_journey import cli
from tests.test_login_throttle import PASSWORD, accounts_server, member
from tests.test_token_expiry import at

DAY = 86400


def close_to(value: str, expected: datetime) -> bool:
    return abs(at(value) - expected) < timedelta(minutes=1)


def test_the_servers_settings_hold_until_an_organizer_sets_the_lifetimes(tmp_path: Path) -> None:
    with accounts_server(tmp_path, AccountRules(token_days=30, token_max_days=90)) as (server, org):
        member(org, "lena")
        lena = UnseenClient(server.url).with_token(
            UnseenClient(server.url).login("lena", PASSWORD)["token"]
        )
        assert lena.token_policy() == {"default_seconds": 30 * DAY, "max_seconds": 90 * DAY,
                                       "set_by": None, "set_at": None,
                                       "tokens_shortened": None}  # fmt: skip
        node = org.create_node("node-a")
        changed = org.set_token_policy(2 * DAY, 7 * DAY)
        assert (changed["default_seconds"], changed["max_seconds"]) == (2 * DAY, 7 * DAY)
        assert changed["set_by"] == "olga" and changed["set_at"].endswith("Z")
        # lena's login token (30 days) and olga's own first ones are cut back to 7 days
        assert changed["tokens_shortened"] >= 2
        now = datetime.now(UTC)
        assert close_to(next(t for t in lena.tokens() if t["current"])["expires_at"],
                        now + timedelta(days=7))  # fmt: skip
        assert org.tokens(of="node-a")[0]["expires_at"] is None  # a node's never expires
        assert node["token"]

        fresh = UnseenClient(server.url).login("lena", PASSWORD)
        assert close_to(fresh["expires_at"], now + timedelta(days=2))
        with pytest.raises(UnseenError) as caught:
            UnseenClient(server.url).login("lena", PASSWORD, expires_in=8 * DAY)
        assert (caught.value.status, caught.value.code) == (422, "lifetime_too_long")
        assert "at most 604800 s (7 days)" in caught.value.message
        assert lena.token_policy()["set_by"] == "olga"  # contestants read it

        entry = org.audit(action="token_policy.set")[0]
        assert entry["actor"] == "olga"
        assert entry["detail"]["max_seconds"] == 7 * DAY
        assert entry["detail"]["tokens_shortened"] == changed["tokens_shortened"]


def test_raising_the_maximum_shortens_nothing(tmp_path: Path) -> None:
    with accounts_server(tmp_path, AccountRules(token_days=1, token_max_days=7)) as (_, org):
        assert org.set_token_policy(DAY, 30 * DAY)["tokens_shortened"] == 0


def test_refusals(tmp_path: Path) -> None:
    with accounts_server(tmp_path, AccountRules()) as (server, org):
        member(org, "lena")
        lena = org.with_token(UnseenClient(server.url).login("lena", PASSWORD)["token"])
        with pytest.raises(UnseenError) as caught:
            lena.set_token_policy(DAY, 2 * DAY)
        assert caught.value.status == 403
        with pytest.raises(UnseenError) as caught:
            org.set_token_policy(10 * DAY, DAY)
        assert (caught.value.status, caught.value.code) == (422, "bad_token_policy")
        assert "lower the default or raise the maximum" in caught.value.message
        for default, maximum in ((30, DAY), (DAY, 400 * DAY)):
            with pytest.raises(UnseenError) as caught:
                org.set_token_policy(default, maximum)
            assert caught.value.status == 422
        assert org.token_policy()["set_by"] is None  # nothing refused was stored
        assert org.audit(action="token_policy.set") == []


def test_the_policy_from_the_terminal(tmp_path: Path) -> None:
    with accounts_server(tmp_path, AccountRules(token_days=30, token_max_days=90)) as (server, org):
        member(org, "lena")
        home = tmp_path / "lena"
        assert login(server.url, home).returncode == 0
        shown = cli("tokens", "policy", home=home)
        assert shown.returncode == 0, shown.stderr
        assert "tokens last 30d by default, at most 90d (the server's settings)" in shown.stdout
        refused = cli("tokens", "policy", "--max", "7d", home=home)
        assert refused.returncode == 1
        assert "organizer" in one_line(refused)

        olga = tmp_path / "olga"
        org_env = {"UNSEEN_URL": server.url, "UNSEEN_TOKEN": str(org.token)}
        done = cli("tokens", "policy", "--default", "1d", "--max", "7d", home=olga, extra=org_env)
        assert done.returncode == 0, done.stderr
        assert "tokens last 1d by default, at most 7d (set by olga" in done.stdout
        assert "live token(s) cut back to the new maximum" in done.stdout
        kept = cli("tokens", "policy", "--max", "14d", home=olga, extra=org_env)
        assert "tokens last 1d by default, at most 14d" in kept.stdout  # the default kept
        bad = cli("tokens", "policy", "--max", "soon", home=olga, extra=org_env)
        assert bad.returncode == 2 and "--max 'soon'" in one_line(bad)

"""Tokens expire (issue 16, "Accounts"): the server's default lifetime unless a login asks for
another, never past its maximum; an expired token gets a 401 naming `unseen login`; a data
node's credential does not expire; tokens from before the migration get the default from then;
`DELETE /v1/tokens` revokes every token but the caller's, each revocation audited."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, text

from api.migrate import upgrade
from api.settings import AccountRules
from client.api import UnseenClient, UnseenError
from tests.test_login_throttle import PASSWORD, accounts_server, member


def at(value: str) -> datetime:
    assert value.endswith("Z"), value
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def test_a_login_asks_for_a_lifetime_up_to_the_maximum(tmp_path: Path) -> None:
    rules = AccountRules(token_days=1, token_max_days=7)
    with accounts_server(tmp_path, rules) as (server, org):
        member(org, "lena")
        anonymous = UnseenClient(server.url)
        now = datetime.now(UTC)
        default = anonymous.login("lena", PASSWORD)
        assert abs(at(default["expires_at"]) - (now + timedelta(days=1))) < timedelta(minutes=1)
        hour = anonymous.login("lena", PASSWORD, expires_in=3600)
        assert abs(at(hour["expires_at"]) - (now + timedelta(hours=1))) < timedelta(minutes=1)
        with pytest.raises(UnseenError) as caught:
            anonymous.login("lena", PASSWORD, expires_in=8 * 86400)
        error = caught.value
        assert (error.status, error.code) == (422, "lifetime_too_long")
        assert "at most 604800 s (7 days)" in error.message
        listed = {t["id"]: t for t in anonymous.with_token(hour["token"]).tokens()}
        assert len(listed) == 3  # the account's first token and two logins; not the refused one
        node = org.create_node("node-a")
        assert node.get("expires_at") is None
        assert org.tokens(of="node-a")[0]["expires_at"] is None


def test_an_expired_token_gets_a_401_naming_the_fix(tmp_path: Path) -> None:
    rules = AccountRules(token_days=2 / 86400, token_max_days=1)  # two seconds by default
    with accounts_server(tmp_path, rules) as (server, org):
        team = org.create_team("team-short")
        short = org.with_token(org.add_member(team["id"], "sam")["token"])
        assert short.me()["name"] == "sam"
        time.sleep(2.5)
        response = httpx.get(
            f"{server.url}/v1/me", headers={"Authorization": f"Bearer {short.token}"}
        )
        assert response.status_code == 401
        assert response.json() == {
            "error": "token_expired",
            "message": "token expired; run unseen login URL (this server's address) for a new one",
        }


def test_revoking_all_other_tokens_keeps_this_one_and_audits_each(tmp_path: Path) -> None:
    with accounts_server(tmp_path, AccountRules()) as (server, org):
        member(org, "lena")
        anonymous = UnseenClient(server.url)
        first, second, third = (anonymous.with_token(anonymous.login("lena", PASSWORD)["token"])
                                for _ in range(3))  # fmt: skip
        revoked = third.revoke_other_tokens()
        assert len(revoked) == 3  # the account's first token and the two other logins
        for gone in (first, second):
            with pytest.raises(UnseenError) as caught:
                gone.me()
            assert caught.value.status == 401
        assert third.me()["name"] == "lena"
        states = {t["id"]: (t["revoked_at"] is None, t["current"]) for t in third.tokens()}
        assert sorted(states.values()) == [(False, False)] * 3 + [(True, True)]
        audited = {e["detail"]["token"] for e in org.audit(action="token.revoked")}
        assert audited == set(revoked)
        assert third.revoke_other_tokens() == []  # again: nothing left to revoke


def test_tokens_from_before_the_migration_get_the_default_lifetime(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'old.db'}")
    upgrade(engine, "0009")
    with engine.begin() as connection:
        for user, role in [("u1", "contestant"), ("n1", "node")]:
            connection.execute(
                text("INSERT INTO users (id, name, role, identity_verified, created_at) "
                     "VALUES (:id, :id, :role, 0, '2026-01-01 00:00:00')"),
                {"id": user, "role": role},
            )  # fmt: skip
            connection.execute(
                text("INSERT INTO api_tokens (id, user_id, token_hash, label, created_at) "
                     "VALUES (:id, :user, :hash, 'old', '2026-01-01 00:00:00')"),
                {"id": f"t-{user}", "user": user, "hash": user * 32},
            )  # fmt: skip
    upgrade(engine)
    with engine.connect() as connection:
        rows = dict(connection.execute(text("SELECT id, expires_at FROM api_tokens")).all())
    engine.dispose()
    assert rows["t-n1"] is None  # a data node's credential keeps working
    expires = datetime.fromisoformat(str(rows["t-u1"])).replace(tzinfo=UTC)
    assert abs(expires - (datetime.now(UTC) + timedelta(days=30))) < timedelta(minutes=5)


def test_a_lifetime_past_any_calendar_is_refused_not_a_500(tmp_path: Path) -> None:
    """Found by schemathesis: 10^21 seconds overflowed the date arithmetic."""
    with accounts_server(tmp_path, AccountRules()) as (server, org):
        member(org, "lena")
        body = {"name": "lena", "password": PASSWORD, "expires_in": 4716527675085727727616}
        response = httpx.post(f"{server.url}/v1/login", json=body, timeout=30)
        assert response.status_code == 422
        assert response.json()["error"] == "lifetime_too_long"

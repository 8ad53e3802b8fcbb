"""Accounts over real HTTP: login issues tokens, only their hashes are stored, and tokens can be
listed and revoked — by their owner, or by an organizer — with every step in the audit log."""

from __future__ import annotations

import sqlite3

import pytest

from client.api import UnseenClient, UnseenError
from tests.conftest import Deployment

pytestmark = pytest.mark.docker
PASSWORD = "metro-line-9 at dawn"


def anonymous(d: Deployment) -> UnseenClient:
    return UnseenClient(d.server.url, None)


def refused(call: object, *args: object, **kwargs: object) -> UnseenError:
    with pytest.raises(UnseenError) as caught:
        call(*args, **kwargs)  # type: ignore[operator]
    return caught.value


def test_login_issues_a_new_token_and_a_wrong_password_gets_a_401(
    deployment: Deployment,
) -> None:
    d = deployment
    team = d.organizer.create_team("team-login")
    d.organizer.add_member(team["id"], "lena", password=PASSWORD)
    issued = anonymous(d).login("lena", PASSWORD, label="laptop")
    assert issued["name"] == "lena" and issued["token"].startswith("uns_")
    assert d.organizer.with_token(issued["token"]).me()["name"] == "lena"

    for name, password in [("lena", "not the password"), ("nobody", PASSWORD)]:
        error = refused(anonymous(d).login, name, password)
        assert (error.status, error.code) == (401, "bad_credentials")
        assert "wrong name or password" in error.message  # never says which one
    failures = d.organizer.audit(action="login.failed")
    assert {e["detail"]["user"] for e in failures} >= {"lena", "nobody"}
    assert d.organizer.audit(action="login")[0]["actor"] == "lena"


def test_weak_passwords_are_refused_naming_the_rule(deployment: Deployment) -> None:
    d = deployment
    team = d.organizer.create_team("team-weak")
    for password in ["short", "aaaaaaaaaaaaa", "weakling-w"]:
        error = refused(d.organizer.add_member, team["id"], "weakling-w", password=password)
        assert error.status == 422 and error.code == "weak_password", password


def test_tokens_are_listed_and_a_revoked_one_stops_at_once(deployment: Deployment) -> None:
    d = deployment
    team = d.organizer.create_team("team-tokens")
    first = d.organizer.add_member(team["id"], "toma", password=PASSWORD)
    toma = d.organizer.with_token(first["token"])
    second = d.organizer.with_token(anonymous(d).login("toma", PASSWORD, "phone")["token"])

    listed = second.tokens()
    assert [t["label"] for t in listed] == ["created with the account", "phone"]
    assert [t["current"] for t in listed] == [False, True]
    assert all(t["revoked_at"] is None for t in listed)

    second.revoke_token(listed[0]["id"])
    assert refused(toma.me).status == 401
    assert second.me()["name"] == "toma"
    second.revoke_token(listed[0]["id"])  # twice: harmless
    assert second.tokens()[0]["revoked_at"] is not None

    # Only hashes are stored: the raw token appears nowhere in the database file.
    database = d.server.data_dir / "unseen.db"
    with sqlite3.connect(database) as connection:
        dump = "\n".join(connection.iterdump())
    assert first["token"] not in dump and "uns_" not in dump


def test_only_owners_and_organizers_see_and_revoke_tokens(deployment: Deployment) -> None:
    d = deployment
    team = d.organizer.create_team("team-tokens-2")
    mia = d.organizer.with_token(d.organizer.add_member(team["id"], "mia")["token"])
    noa = d.organizer.with_token(d.organizer.add_member(team["id"], "noa")["token"])
    mias = mia.tokens()
    assert refused(noa.tokens, of="mia").status == 403
    assert refused(noa.revoke_token, mias[0]["id"]).status == 404
    assert mia.me()["name"] == "mia"

    assert [t["id"] for t in d.organizer.tokens(of="mia")] == [mias[0]["id"]]
    d.organizer.revoke_token(mias[0]["id"])
    assert refused(mia.me).status == 401
    assert d.organizer.audit(action="token.revoked")[0]["detail"]["token"] == mias[0]["id"]


def test_a_user_sets_a_password_with_their_token_then_logs_in(deployment: Deployment) -> None:
    d = deployment
    team = d.organizer.create_team("team-password")
    pax = d.organizer.with_token(d.organizer.add_member(team["id"], "pax")["token"])
    assert refused(anonymous(d).login, "pax", PASSWORD).status == 401  # no password yet
    assert refused(pax.set_password, "pax").code == "weak_password"
    pax.set_password(PASSWORD)
    assert anonymous(d).login("pax", PASSWORD)["name"] == "pax"

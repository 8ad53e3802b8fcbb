"""Login throttling over real HTTP (issue 16, "Accounts"): after too many failed logins for one
name or from one address, a 429 in the API's error shape with ``Retry-After``, the same for a
name nobody has; a successful login clears the name's count; the counts live in the database,
so a second API process of the same server (test below, real processes) sees them too."""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import httpx
import pytest

from api.launcher import ServerProcess
from api.settings import AccountRules
from client.api import UnseenClient, UnseenError
from tests.conftest import DATABASES, open_contest, postgres_database
from tests.fakes import FakeSandbox, InProcessServer, fake_settings

PASSWORD = "throttle-me if you can"
WRONG = "not the password at all"


@contextmanager
def database(kind: str, tmp_path: Path) -> Iterator[str | None]:
    if kind == "sqlite":
        yield None
        return
    with postgres_database() as url:
        yield url


@contextmanager
def accounts_server(
    tmp_path: Path, rules: AccountRules, database_url: str | None = None
) -> Iterator[tuple[InProcessServer, UnseenClient]]:
    """The real app over real HTTP with these account rules, an organizer and an open
    contest: what accounts need, without Docker or datasets."""
    settings = replace(fake_settings(tmp_path / "server", database_url), accounts=rules)
    server = InProcessServer(settings, FakeSandbox()).start()
    try:
        anonymous = UnseenClient(server.url, server.bootstrap_token)
        organizer = anonymous.with_token(anonymous.create_organizer("olga")["token"])
        open_contest(organizer)
        yield server, organizer
    finally:
        server.stop()


def member(organizer: UnseenClient, name: str) -> None:
    team = organizer.create_team(f"team-{name}")
    organizer.add_member(team["id"], name, password=PASSWORD)


def attempt(url: str, name: str, password: str) -> httpx.Response:
    return httpx.post(f"{url}/v1/login", json={"name": name, "password": password}, timeout=30)


@pytest.mark.parametrize("kind", DATABASES)
def test_too_many_failures_for_a_name_get_a_429_with_retry_after(tmp_path: Path, kind: str) -> None:
    rules = AccountRules(account_failures=3, address_failures=100, window_seconds=600)
    with database(kind, tmp_path) as url, accounts_server(tmp_path, rules, url) as (server, org):
        member(org, "lena")
        for name in ("lena", "nobody"):  # an account that exists, and one that does not
            answers = [attempt(server.url, name, WRONG) for _ in range(3)]
            assert [a.status_code for a in answers] == [401, 401, 401]
            blocked = attempt(server.url, name, WRONG)
            assert blocked.status_code == 429, blocked.text
            body = blocked.json()
            assert set(body) == {"error", "message", "retry_after"}
            assert body["error"] == "too_many_logins"
            wait = int(blocked.headers["Retry-After"])
            assert 590 <= wait <= 600 and body["retry_after"] == wait
            assert f"try again in {wait} s" in body["message"]
            assert "ask an organizer to reset your password" in body["message"]
        # While blocked, even the right password is refused: a guess tells nothing.
        assert attempt(server.url, "lena", PASSWORD).status_code == 429
        # The same answers for the existing and the unknown name: nothing tells them apart.
        assert attempt(server.url, "nobody", PASSWORD).json()["error"] == "too_many_logins"
        actions = [e["action"] for e in org.audit(action="login.throttled")]
        assert actions == ["login.throttled", "login.throttled"]
        # Another account from the same address is not blocked by lena's count.
        member(org, "mira")
        assert attempt(server.url, "mira", PASSWORD).status_code == 201


def test_a_successful_login_clears_the_names_count(tmp_path: Path) -> None:
    rules = AccountRules(account_failures=3, address_failures=100, window_seconds=600)
    with accounts_server(tmp_path, rules) as (server, org):
        member(org, "lena")
        for _ in range(2):
            assert attempt(server.url, "lena", WRONG).status_code == 401
        assert attempt(server.url, "lena", PASSWORD).status_code == 201
        for _ in range(2):  # two more: the count started again at the success
            assert attempt(server.url, "lena", WRONG).status_code == 401
        assert attempt(server.url, "lena", PASSWORD).status_code == 201


def test_one_address_trying_many_names_is_blocked_and_the_block_ends(tmp_path: Path) -> None:
    rules = AccountRules(account_failures=100, address_failures=4, window_seconds=2)
    with accounts_server(tmp_path, rules) as (server, org):
        member(org, "lena")
        for i in range(4):
            assert attempt(server.url, f"guess{i}", WRONG).status_code == 401
        blocked = attempt(server.url, "lena", PASSWORD)  # a name never tried: the address
        assert blocked.status_code == 429
        time.sleep(int(blocked.headers["Retry-After"]) + 0.2)
        assert attempt(server.url, "lena", PASSWORD).status_code == 201


@pytest.mark.slow
@pytest.mark.docker
def test_the_count_is_shared_by_every_api_process_of_a_server(tmp_path: Path) -> None:
    """Two real server processes on one data directory (one database): failures at either
    count together, and both refuse once the limit is reached."""
    token = secrets.token_urlsafe(16)
    env = {"UNSEEN_LOGIN_ACCOUNT_FAILURES": "4", "UNSEEN_NODE": f"test-{secrets.token_hex(3)}"}
    data_dir = tmp_path / "server"
    first = ServerProcess(data_dir, token, env=env, log_path=tmp_path / "first.log").start()
    second = ServerProcess(data_dir, token, env=env, log_path=tmp_path / "second.log").start()
    try:
        anonymous = UnseenClient(first.url, token)
        organizer = anonymous.with_token(anonymous.create_organizer("olga")["token"])
        open_contest(organizer)
        member(organizer, "lena")
        for server in (first, second, first, second):
            assert attempt(server.url, "lena", WRONG).status_code == 401
        for server in (first, second):
            refused = attempt(server.url, "lena", PASSWORD)
            assert refused.status_code == 429 and int(refused.headers["Retry-After"]) > 800
        with pytest.raises(UnseenError) as caught:
            UnseenClient(second.url).login("lena", PASSWORD)
        assert caught.value.status == 429
    finally:
        second.stop()
        first.stop()


def test_the_web_pages_login_counts_with_the_apis(tmp_path: Path) -> None:
    """The organizers' login page is no way around the throttle: one count for both."""
    rules = AccountRules(account_failures=3, address_failures=100, window_seconds=600)
    with accounts_server(tmp_path, rules) as (server, _org):
        form = {"name": "olga", "password": WRONG}
        for _ in range(2):
            page = httpx.post(f"{server.url}/ui/login", data=form, follow_redirects=False)
            assert "wrong%20name%20or%20password" in page.headers["location"]
        assert attempt(server.url, "olga", WRONG).status_code == 401  # the third failure
        page = httpx.post(f"{server.url}/ui/login", data=form, follow_redirects=False)
        assert page.status_code == 303
        assert "too%20many%20failed%20logins" in page.headers["location"]


def test_guessing_the_current_password_with_a_token_is_throttled_too(tmp_path: Path) -> None:
    """A stolen token must not make the password guessable: a wrong current password counts
    as a failed login, and a blocked name gets the 429 there too."""
    rules = AccountRules(account_failures=3, address_failures=100, window_seconds=600)
    with accounts_server(tmp_path, rules) as (server, org):
        team = org.create_team("team-guess")
        token = org.add_member(team["id"], "gus", password=PASSWORD)["token"]
        headers = {"Authorization": f"Bearer {token}"}
        body = {"password": "a brand new passphrase", "current_password": WRONG}
        for _ in range(3):
            answer = httpx.put(f"{server.url}/v1/me/password", json=body, headers=headers)
            assert answer.status_code == 403, answer.text
        answer = httpx.put(f"{server.url}/v1/me/password", json=body, headers=headers)
        assert answer.status_code == 429 and "Retry-After" in answer.headers
        assert attempt(server.url, "gus", PASSWORD).status_code == 429  # one count for both


def test_an_organizers_reset_ends_the_names_block(tmp_path: Path) -> None:
    """The 429 says an organizer can reset the password: the temporary one works at once."""
    rules = AccountRules(account_failures=3, address_failures=100, window_seconds=600)
    with accounts_server(tmp_path, rules) as (server, org):
        member(org, "lena")
        for _ in range(3):
            assert attempt(server.url, "lena", WRONG).status_code == 401
        assert attempt(server.url, "lena", PASSWORD).status_code == 429
        headers = {"Authorization": f"Bearer {org.token}"}
        reset = httpx.put(f"{server.url}/v1/users/lena/password", headers=headers, timeout=30)
        assert reset.status_code == 200, reset.text
        assert attempt(server.url, "lena", reset.json()["password"]).status_code == 201

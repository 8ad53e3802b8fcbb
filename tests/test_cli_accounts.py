"""The accounts journey from the terminal (issue 16, "Accounts"), real `unseen` processes
against a real server over HTTP: a login that asks for a lifetime, one over the maximum refused
in one line, `unseen tokens list` without secrets and with this session marked, `tokens revoke`
by prefix and `--all-others`, a throttled login's one line with the wait, an expired token's."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from api.settings import AccountRules
from tests.test_cli_journey import cli
from tests.test_login_throttle import PASSWORD, accounts_server, member


def one_line(done: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    return done.stderr.strip()


def login(
    url: str, home: Path, *extra: str, password: str = PASSWORD
) -> subprocess.CompletedProcess[str]:
    return cli("login", url, "--name", "lena", "--password-stdin", *extra, home=home,
               stdin=password + "\n")  # fmt: skip


def test_tokens_are_listed_and_revoked_from_the_terminal(tmp_path: Path) -> None:
    rules = AccountRules(account_failures=3, token_days=30, token_max_days=90)
    with accounts_server(tmp_path, rules) as (server, org):
        member(org, "lena")
        laptop, phone = tmp_path / "laptop", tmp_path / "phone"
        done = login(server.url, laptop, "--expires-in", "7d")
        assert done.returncode == 0, done.stderr
        assert "logged in" in done.stdout and "expires 20" in done.stdout
        assert done.stdout.strip().endswith("UTC")

        too_long = login(server.url, phone, "--expires-in", "1000d")
        assert too_long.returncode == 1
        assert "at most 7776000 s (90 days)" in one_line(too_long)
        assert login(server.url, phone, "--expires-in", "soon").returncode == 2
        assert login(server.url, phone).returncode == 0

        listed = cli("tokens", "list", home=laptop, extra={"COLUMNS": "80"})
        assert listed.returncode == 0, listed.stderr
        assert "uns_" not in listed.stdout  # ids only, never a secret
        rows = [line.split() for line in listed.stdout.splitlines()[1:] if line.strip()]
        assert len(rows) == 3  # the account's first token, the laptop's, the phone's
        assert [row[-1] for row in rows].count("current") == 1
        assert all(len(line) <= 80 for line in listed.stdout.splitlines())
        created_with_account = next(r for r in rows if r[1] == "created")  # "created with…"

        # One token by the start of its id, then every other one.
        revoked = cli("tokens", "revoke", created_with_account[0], home=laptop)
        assert revoked.returncode == 0 and "revoked token" in revoked.stdout, revoked.stderr
        others = cli("tokens", "revoke", "--all-others", home=laptop)
        assert others.returncode == 0 and "revoked 1 other token" in others.stdout
        dead = cli("tokens", "list", home=phone)
        assert dead.returncode == 1
        assert "unseen login" in one_line(dead)
        still = cli("tokens", "list", "--json", home=laptop)
        assert still.returncode == 0 and '"current": true' in still.stdout
        assert cli("tokens", "revoke", home=laptop).returncode == 2  # neither id nor flag

        # Three wrong passwords, then the wait in one line, with who can help.
        for _ in range(3):
            assert login(server.url, phone, password="wrong password!").returncode == 1
        throttled = login(server.url, phone)
        assert throttled.returncode == 1
        said = one_line(throttled)
        assert "try again in" in said and " s (at " in said and "organizer" in said


def test_an_expired_token_says_to_log_in_again(tmp_path: Path) -> None:
    rules = AccountRules(token_days=2 / 86400, token_max_days=1)  # two seconds by default
    with accounts_server(tmp_path, rules) as (server, org):
        member(org, "lena")
        home = tmp_path / "home"
        assert login(server.url, home).returncode == 0
        time.sleep(2.5)
        done = cli("datasets", home=home)
        assert done.returncode == 1
        assert one_line(done) == f"token expired; run `unseen login {server.url}`"

"""Organizers run a contest from the terminal (issue 16), without Docker: `organizers add`,
`contests create/rounds`, `teams create/list/add-member`, `budgets set`, `users
reset-password` and `password`, each happy path and each refusal as one line with its exit
code (2 usage, 1 refused by the server). The real CLI in this process, the real app over real
HTTP and SQLite (tests/fakes.py: only the sandbox is in memory)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import Result
from typer.testing import CliRunner

from client.api import UnseenClient, UnseenError
from client.cli import app
from tests.conftest import LICENCE_PDF, Deployment, SodaData, start_fake_deployment

QUICK = "def analyze(df):\n    return {'n': float(len(df))}\n"
OUTPUTS = [{"name": "n", "lo": 0, "hi": 100000}]
PASSWORD = "a long and varied one 7"


@pytest.fixture(scope="module")
def d(soda: SodaData, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    deployed = start_fake_deployment(tmp_path_factory.mktemp("contest-admin"), soda,
                                     node="contest-admin")  # fmt: skip
    yield deployed
    deployed.server.stop()


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path


def unseen(d: Deployment, *args: str, token: str | None = None, stdin: str = "",
           home: Path | None = None, **env: str) -> Result:  # fmt: skip
    """``unseen ARGS`` as the organizer (or ``token``'s holder), config kept under ``home``."""
    config = str((home or Path("/nonexistent")) / "config.json")
    environment: dict[str, str | None] = {
        "UNSEEN_URL": d.server.url, "UNSEEN_TOKEN": token or str(d.organizer.token),
        "UNSEEN_CONFIG": config, "UNSEEN_BOOTSTRAP_TOKEN": None, "UNSEEN_DATA_DIR": None,
        "COLUMNS": "200", "NO_COLOR": "1", **env,
    }  # fmt: skip
    return CliRunner().invoke(app, list(args), input=stdin, env=environment)


def ok(done: Result) -> str:
    assert done.exit_code == 0, (done.stdout, done.stderr, done.exception)
    return done.stdout


def refused(done: Result, code: int, *said: str) -> str:
    """One line on stderr, no traceback, the exit code, and the words that name the fix."""
    assert done.exit_code == code, (done.stdout, done.stderr, done.exception)
    assert "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    for words in said:
        assert words in done.stderr, done.stderr
    return done.stderr


def shown_password(output: str) -> str:
    return output.split("(shown once, now): ")[1].split()[0]


def member(d: Deployment, team: str, name: str) -> UnseenClient:
    d.organizer.create_team(team, "soda-test")
    return d.organizer.with_token(d.organizer.add_member(team, name, PASSWORD)["token"])


# --- organizers ---------------------------------------------------------------------------


def test_organizers_add_shows_a_generated_password_once_and_can_log_in(
    d: Deployment, home: Path
) -> None:
    out = ok(unseen(d, "organizers", "add", "omar", "--login", home=home,
                    UNSEEN_BOOTSTRAP_TOKEN=d.server.bootstrap_token))  # fmt: skip
    password = shown_password(out)
    assert "logged in" in out and "changes it with" not in out
    assert UnseenClient(d.server.url).login("omar", password)["role"] == "organizer"
    kept = json.loads((home / "config.json").read_text())
    assert kept["user"] == "omar" and kept["url"] == d.server.url
    as_omar = UnseenClient(d.server.url, kept["token"])
    assert as_omar.me()["name"] == "omar"


def test_organizers_add_takes_a_password_from_stdin_or_the_data_dir_token(
    d: Deployment, tmp_path: Path
) -> None:
    (tmp_path / "bootstrap-token").write_text(d.server.bootstrap_token + "\n")
    out = ok(unseen(d, "organizers", "add", "oda", "--password-stdin", "--data-dir",
                    str(tmp_path), stdin=PASSWORD + "\n"))  # fmt: skip
    assert "shown once" not in out
    assert UnseenClient(d.server.url).login("oda", PASSWORD)["name"] == "oda"


def test_organizers_add_refusals(d: Deployment, tmp_path: Path) -> None:
    bootstrap = {"UNSEEN_BOOTSTRAP_TOKEN": d.server.bootstrap_token}
    refused(unseen(d, "organizers", "add", "olga", **bootstrap), 1, "exists", "another name")
    refused(unseen(d, "organizers", "add", "eve", UNSEEN_BOOTSTRAP_TOKEN="guess"), 1,
            "bootstrap token")  # fmt: skip
    refused(unseen(d, "organizers", "add", "eve", "--data-dir", str(tmp_path)), 2,
            "--bootstrap-token", "UNSEEN_BOOTSTRAP_TOKEN")  # fmt: skip
    refused(unseen(d, "organizers", "add", "eve", "--password-stdin", stdin="short\n",
                   **bootstrap), 1, "10 to 1024 characters")  # fmt: skip
    refused(unseen(d, "organizers", "add", "eve", "--password-stdin", **bootstrap), 2,
            "standard input")  # fmt: skip


# --- contests and rounds --------------------------------------------------------------


def test_contests_create_list_and_rounds(d: Deployment) -> None:
    assert "contest cli-cup created" in ok(
        unseen(d, "contests", "create", "cli-cup", "--description", "from the terminal")
    )
    out = ok(unseen(d, "contests", "rounds", "cli-cup", "1", "--opens", "now", "--closes",
                    "2030-12-31"))  # fmt: skip
    assert "(open now)" in out
    ok(unseen(d, "contests", "rounds", "cli-cup", "2", "--opens", "2029-01-01T09:00+02:00",
              "--closes", "2029-02-01"))  # fmt: skip
    listed = {c["name"]: c for c in json.loads(ok(unseen(d, "contests", "--json")))}
    rounds = {r["number"]: r for r in listed["cli-cup"]["rounds"]}
    assert rounds[1]["open_now"] and not rounds[2]["open_now"]
    assert rounds[2]["opens_at"].startswith("2029-01-01T07:00")  # the offset kept, as UTC
    assert listed["cli-cup"]["description"] == "from the terminal"
    assert "cli-cup" in ok(unseen(d, "contests", "list"))
    audit = d.organizer.audit(action="round.set")
    assert audit[0]["detail"]["contest"] == "cli-cup"


def test_contest_refusals(d: Deployment) -> None:
    refused(unseen(d, "contests", "create", "soda-test"), 1, "exists", "another name")
    refused(unseen(d, "contests", "rounds", "soda-test", "1", "--opens", "2030-02-01",
                   "--closes", "2030-01-01"), 2, "--closes", "after --opens")  # fmt: skip
    refused(unseen(d, "contests", "rounds", "soda-test", "1", "--opens", "next week",
                   "--closes", "2030-01-01"), 2, "not a date", "2027-03-01")  # fmt: skip
    refused(unseen(d, "contests", "rounds", "soda-test", "3", "--opens", "now", "--closes",
                   "2030-01-01"), 2, "round 1", "round 2")  # fmt: skip
    refused(unseen(d, "contests", "rounds", "no-such", "1", "--opens", "now", "--closes",
                   "2030-01-01"), 1, "no contest 'no-such'", "`unseen contests`")  # fmt: skip


# --- teams and members ----------------------------------------------------------------


def test_teams_create_list_and_add_member(d: Deployment) -> None:
    assert "team team-cli created" in ok(unseen(d, "teams", "create", "team-cli", "--contest",
                                                "soda-test"))  # fmt: skip
    assert "team-cli" in ok(unseen(d, "teams", "list", "-q")).splitlines()
    out = ok(unseen(d, "teams", "add-member", "team-cli", "cleo"))
    password = shown_password(out)
    assert f"unseen login {d.server.url} --name cleo" in out
    assert UnseenClient(d.server.url).login("cleo", password)["role"] == "contestant"
    ok(unseen(d, "teams", "add-member", "team-cli", "cid", "--password-stdin",
              stdin=PASSWORD + "\n"))  # fmt: skip
    assert UnseenClient(d.server.url).login("cid", PASSWORD)["name"] == "cid"
    table = ok(unseen(d, "teams", "list"))
    assert "cid, cleo" in table
    assert {"cleo", "cid"} <= {
        m["name"] for t in d.organizer.teams_status() if t["name"] == "team-cli"
        for m in t["members"]
    }  # fmt: skip


def test_team_refusals(d: Deployment) -> None:
    refused(unseen(d, "teams", "create", "team-alpha"), 1, "exists", "another name")
    refused(unseen(d, "teams", "create", "team-x", "--contest", "nope"), 1,
            "no contest 'nope'", "`unseen contests`")  # fmt: skip
    refused(unseen(d, "teams", "add-member", "team-nope", "zed"), 1, "no team 'team-nope'",
            "`unseen teams`")  # fmt: skip
    refused(unseen(d, "teams", "add-member", "team-alpha", "alice"), 1, "exists")


# --- budgets --------------------------------------------------------------------------


def test_budgets_set_a_team_cap_and_a_population_cap(d: Deployment) -> None:
    d.organizer.create_team("team-budget", "soda-test")
    out = ok(unseen(d, "budgets", "set", "--team", "team-budget", "--population", "cards_tiny",
                    "-e", "3.5", "--delta", "1e-6"))  # fmt: skip
    assert "team-budget on transport_cards: cap ε=3.5" in out
    budget = next(b for b in d.organizer.budget() if b["team"] == "team-budget")
    assert budget["cap"] == 3.5 and budget["delta_cap"] == 1e-6
    out = ok(unseen(d, "budgets", "set", "--population", "transport_cards", "-e", "90000"))
    assert "cap ε=90000 over all teams" in out
    assert next(p for p in d.organizer.populations()
                if p["name"] == "transport_cards")["cap"] == 90000  # fmt: skip
    assert "team-budget" in ok(unseen(d, "budgets"))
    assert d.organizer.audit(action="budget.cap_set")[0]["detail"]["team"] == "team-budget"


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "-1"])
def test_budgets_set_refuses_a_non_finite_or_negative_cap(d: Deployment, value: str) -> None:
    refused(unseen(d, "budgets", "set", "--team", "team-alpha", "-p", "cards_tiny",
                   f"--epsilon={value}"), 2, "--epsilon", "finite number, 0 or more")  # fmt: skip


@pytest.mark.parametrize("value", ["nan", "inf", "-1"])
@pytest.mark.parametrize(
    "command",
    [
        ["populations", "set", "transport_cards"],
        ["populations", "team", "transport_cards", "team-alpha"],
    ],
    ids=["populations-set", "populations-team"],
)
@pytest.mark.parametrize("flag", ["--epsilon", "--delta"])
def test_the_populations_commands_refuse_a_non_finite_or_negative_cap(
    d: Deployment, command: list[str], flag: str, value: str
) -> None:
    other = ["--delta", "1e-6"] if flag == "--epsilon" else ["--epsilon", "5"]
    before = d.organizer.audit(action="budget.cap_set")
    refused(unseen(d, *command, f"{flag}={value}", *other), 2, flag, "finite number, 0 or more")
    assert d.organizer.audit(action="budget.cap_set") == before  # nothing reached the server


@pytest.mark.parametrize("flag", ["--team-epsilon", "--population-epsilon"])
def test_registering_refuses_a_non_finite_cap_before_reading_the_data(
    d: Deployment, flag: str, tmp_path: Path
) -> None:
    refused(unseen(d, "datasets", "register", "never_made", "--source",
                   str(tmp_path / "missing.parquet"), f"{flag}=nan"),
            2, flag, "finite number")  # fmt: skip


def test_budget_refusals(d: Deployment) -> None:
    refused(unseen(d, "budgets", "set", "--team", "team-nope", "-p", "cards_tiny", "-e", "1"),
            1, "no team 'team-nope'")  # fmt: skip
    refused(unseen(d, "budgets", "set", "-p", "nobody", "-e", "1"), 1, "no population",
            "known populations")  # fmt: skip
    refused(unseen(d, "budgets", "set", "-p", "transport_cards", "-e", "2000000"), 1,
            "less than or equal")  # fmt: skip


# --- passwords ------------------------------------------------------------------------


def test_reset_password_gives_a_temporary_one_and_revokes_every_token(d: Deployment) -> None:
    rita = member(d, "team-reset", "rita")
    UnseenClient(d.server.url).login("rita", PASSWORD, "laptop")  # a second live token
    out = ok(unseen(d, "users", "reset-password", "rita"))
    assert "2 token(s) revoked" in out and "unseen password" in out
    temporary = shown_password(out)
    with pytest.raises(UnseenError) as gone:
        rita.me()
    assert gone.value.status == 401
    with pytest.raises(UnseenError):
        UnseenClient(d.server.url).login("rita", PASSWORD)
    fresh = UnseenClient(d.server.url).login("rita", temporary)
    entry = d.organizer.audit(action="password.reset")[0]
    assert entry["actor"] == "olga"
    assert entry["detail"] == {"user": "rita", "tokens_revoked": 2}
    assert temporary not in json.dumps(d.organizer.audit(limit=20))  # never in the log

    # rita replaces the temporary password, proving she holds it
    changed = unseen(d, "password", "--password-stdin", token=fresh["token"],
                     stdin=f"{temporary}\n{PASSWORD} new\n")  # fmt: skip
    assert "password changed" in ok(changed)
    assert UnseenClient(d.server.url).login("rita", PASSWORD + " new")["name"] == "rita"


def test_reset_refusals(d: Deployment) -> None:
    refused(unseen(d, "users", "reset-password", "nobody"), 1, "no user 'nobody'",
            "`unseen teams`")  # fmt: skip
    refused(unseen(d, "users", "reset-password", "olga"), 1, "not a contestant",
            "`unseen password`")  # fmt: skip


def test_password_needs_the_current_one(d: Deployment) -> None:
    pia = member(d, "team-pw", "pia")
    refused(unseen(d, "password", "--password-stdin", token=str(pia.token),
                   stdin=f"wrong one!!\n{PASSWORD} 2\n"), 1, "current password is wrong",
            "unseen users reset-password pia")  # fmt: skip
    refused(unseen(d, "password", "--password-stdin", token=str(pia.token),
                   stdin=f"{PASSWORD}\n{PASSWORD}\n"), 2, "is the current one")  # fmt: skip
    refused(unseen(d, "password", "--password-stdin", token=str(pia.token),
                   stdin=f"{PASSWORD}\n"), 2, "no new password")  # fmt: skip
    refused(unseen(d, "password", "--password-stdin", token=str(pia.token),
                   stdin=f"{PASSWORD}\nshort\n"), 1, "10 to 1024")  # fmt: skip
    assert d.organizer.audit(action="password.change_refused")[0]["actor"] == "pia"
    with pytest.raises(UnseenError) as wrong:  # the API itself, without current_password
        pia.set_password(PASSWORD + " 3")
    assert wrong.value.code == "wrong_password"


def test_the_login_refusal_names_the_reset_command(d: Deployment, home: Path) -> None:
    refused(unseen(d, "login", d.server.url, "--name", "alice", "--password-stdin",
                   stdin="not her password\n", home=home), 1,
            "ask an organizer to run `unseen users reset-password alice`")  # fmt: skip


# --- who may ----------------------------------------------------------------------------


@pytest.mark.parametrize("command", [
    ["contests", "create", "mine"],
    ["contests", "rounds", "soda-test", "1", "--opens", "now", "--closes", "2030-01-01"],
    ["teams", "create", "team-mine"],
    ["teams", "list"],
    ["teams", "add-member", "team-alpha", "pal"],
    ["budgets", "set", "--team", "team-alpha", "-p", "cards_tiny", "-e", "100"],
    ["budgets", "set", "-p", "transport_cards", "-e", "100"],
    ["users", "reset-password", "alice"],
])  # fmt: skip
def test_a_contestant_is_told_to_log_in_as_an_organizer(d: Deployment, command: list[str]) -> None:
    refused(unseen(d, *command, token=str(d.contestant.token)), 1,
            "this needs an organizer: log in as one (`unseen login URL --name NAME`)")  # fmt: skip


# --- ids for scripts --------------------------------------------------------------------


def test_quiet_lists_print_whole_ids_one_per_line(d: Deployment) -> None:
    quinn = member(d, "team-quiet", "quinn")
    licence = quinn.upload_licence("team-quiet", LICENCE_PDF, "licence.pdf")["id"]
    d.organizer.approve_licence(licence)
    d.organizer.verify_identity("quinn")
    d.organizer.admit("team-quiet")
    job = quinn.submit("cards_tiny", QUICK, OUTPUTS, 0.1)["id"]
    assert quinn.wait(job, timeout=60, interval=0.05)["state"] == "awaiting_review"
    assert ok(unseen(d, "jobs", "-q", token=str(quinn.token))) == f"{job}\n"
    assert job in ok(unseen(d, "review", "-q")).splitlines()
    assert job in ok(unseen(d, "review", "list", "--quiet")).splitlines()
    assert licence in ok(unseen(d, "licences", "list", "team-quiet", "-q")).splitlines()[0]


def test_password_and_add_member_ask_on_a_terminal(d: Deployment) -> None:
    """The prompts: hidden, the new password asked twice; a mismatch is asked again."""
    asked = ok(unseen(d, "teams", "add-member", "team-alpha", "tim", "--ask-password",
                      stdin=f"{PASSWORD}\n{PASSWORD}\n"))  # fmt: skip
    assert "shown once" not in asked
    tim = UnseenClient(d.server.url).login("tim", PASSWORD)
    typed = f"{PASSWORD}\n{PASSWORD} 2\nnot the same one\n{PASSWORD} 2\n{PASSWORD} 2\n"
    out = ok(unseen(d, "password", token=tim["token"], stdin=typed))
    assert "do not match" in out.lower() and "password changed" in out
    assert UnseenClient(d.server.url).login("tim", PASSWORD + " 2")["name"] == "tim"

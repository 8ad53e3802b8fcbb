"""Server settings, read once from the environment (``UNSEEN_*``) with one-machine defaults."""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from runner.schedule import ScheduleRules
from sandbox.container import SandboxLimits
from sandbox.policy import MAX_CODE_BYTES

DAY = 86_400.0


@dataclass(frozen=True)
class AccountRules:
    """Login throttling and token lifetimes: what guessing a password costs, and how long a
    stolen token stays useful. Organizers set them (``UNSEEN_LOGIN_*``, ``UNSEEN_TOKEN_*``)."""

    account_failures: int = 5  # failed logins per account name per window, then 429
    address_failures: int = 20  # failed logins per client address per window, then 429
    window_seconds: float = 900.0
    token_days: float = 30.0  # a new token's lifetime unless the login asks for another
    token_max_days: float = 90.0  # the longest a login may ask for

    @property
    def window(self) -> timedelta:
        return timedelta(seconds=self.window_seconds)

    @property
    def token_lifetime(self) -> timedelta:
        return timedelta(days=self.token_days)

    @property
    def token_max_lifetime(self) -> timedelta:
        return timedelta(days=self.token_max_days)


def account_rules() -> AccountRules:
    """The rules as the environment sets them; the maximum is never below the default."""
    rules = AccountRules(
        account_failures=int(os.environ.get("UNSEEN_LOGIN_ACCOUNT_FAILURES", "5")),
        address_failures=int(os.environ.get("UNSEEN_LOGIN_ADDRESS_FAILURES", "20")),
        window_seconds=_seconds("UNSEEN_LOGIN_WINDOW_SECONDS", 900.0),
        token_days=_seconds("UNSEEN_TOKEN_DAYS", 30.0),
        token_max_days=_seconds("UNSEEN_TOKEN_MAX_DAYS", 90.0),
    )
    if rules.token_max_days < rules.token_days:
        raise ValueError(
            f"UNSEEN_TOKEN_MAX_DAYS ({rules.token_max_days}) is below UNSEEN_TOKEN_DAYS "
            f"({rules.token_days}); raise the maximum or lower the default"
        )
    return rules


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    database_url: str
    bootstrap_token: str
    node: str = "local"
    slots: int = 2
    default_blocks: int = 64
    limits: SandboxLimits = field(default_factory=SandboxLimits)
    schedule: ScheduleRules = field(default_factory=ScheduleRules)
    max_code_bytes: int = MAX_CODE_BYTES
    runner_image: str | None = None  # None: the content-hashed tag of images/runner
    isolation: str | None = None  # zygote, container; None: the runtime's default
    runtime: str | None = None  # runc, runsc; None (auto): runsc when the engine has it
    # The scale-out shape: query blocks go to the data node's Celery queue through this broker.
    broker_url: str | None = None
    node_wait_seconds: float = 300.0  # a node silent this long fails the job (budget returned)
    node_resend_seconds: float = 60.0  # a chunk unanswered this long is sent again
    accounts: AccountRules = field(default_factory=AccountRules)

    @property
    def datasets_dir(self) -> Path:
        return self.data_dir / "datasets"

    @property
    def jobs_dir(self) -> Path:
        return self.data_dir / "jobs"

    @property
    def licences_dir(self) -> Path:
        return self.data_dir / "licences"


def _bootstrap_token(data_dir: Path) -> str:
    """The organizer-bootstrap secret: from the environment, else made once and kept 0600."""
    from_env = os.environ.get("UNSEEN_BOOTSTRAP_TOKEN")
    if from_env:
        return from_env
    path = data_dir / "bootstrap-token"
    if path.exists():
        return path.read_text().strip()
    token = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(token + "\n")
    return token


def _seconds(name: str, default: float) -> float:
    return float(os.environ.get(name, str(default)))


def load_settings(data_dir: Path | None = None) -> Settings:
    root = (data_dir or Path(os.environ.get("UNSEEN_DATA_DIR", "var/server"))).resolve()
    root.mkdir(parents=True, exist_ok=True)
    os.chmod(root, 0o711)  # the sandbox uid must reach bind-mounted files, not list them
    url = os.environ.get("UNSEEN_DATABASE_URL", f"sqlite:///{root / 'unseen.db'}")
    limits = SandboxLimits(
        wall_seconds=float(os.environ.get("UNSEEN_BLOCK_SECONDS", "60")),
        memory_bytes=int(os.environ.get("UNSEEN_BLOCK_MEMORY_MB", "768")) * 1024 * 1024,
    )
    schedule = ScheduleRules(
        min_block_seconds=_seconds("UNSEEN_MIN_BLOCK_SECONDS", 0.5),
        max_block_seconds=limits.wall_seconds,
        default_block_seconds=_seconds("UNSEEN_DEFAULT_BLOCK_SECONDS", 2.0),
        start_seconds=_seconds("UNSEEN_SCHEDULE_START_SECONDS", 10.0),
        block_overhead_seconds=_seconds("UNSEEN_BLOCK_OVERHEAD_SECONDS", 0.25),
        query_seconds=_seconds("UNSEEN_QUERY_SECONDS", 10.0),
    )
    return Settings(
        data_dir=root,
        database_url=url,
        bootstrap_token=_bootstrap_token(root),
        node=os.environ.get("UNSEEN_NODE", "local"),
        slots=int(os.environ.get("UNSEEN_SLOTS", str(os.cpu_count() or 2))),
        default_blocks=int(os.environ.get("UNSEEN_DEFAULT_BLOCKS", "64")),
        limits=limits,
        schedule=schedule,
        runner_image=os.environ.get("UNSEEN_RUNNER_IMAGE") or None,
        isolation=os.environ.get("UNSEEN_ISOLATION") or None,
        runtime=os.environ.get("UNSEEN_RUNTIME") or None,
        broker_url=os.environ.get("UNSEEN_BROKER_URL") or None,
        node_wait_seconds=float(os.environ.get("UNSEEN_NODE_WAIT_SECONDS", "300")),
        node_resend_seconds=float(os.environ.get("UNSEEN_NODE_RESEND_SECONDS", "60")),
        accounts=account_rules(),
    )

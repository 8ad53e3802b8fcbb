"""ORM tables. Budgets are integers of micro-ε (``privacy.budget``): the ledger never drifts."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_utc(at: datetime) -> datetime:
    """An aware UTC time, whether the database gave back an aware or a naive (SQLite) one."""
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


def iso_z(at: datetime) -> str:
    """ISO 8601 in UTC ending in ``Z``: how every time the API writes out reads."""
    return as_utc(at).isoformat().replace("+00:00", "Z")


def new_id() -> str:
    return uuid.uuid4().hex


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON}  # noqa: RUF012


class Contest(Base):
    """A contest: teams, rounds with dates, and the datasets attached to it."""

    __tablename__ = "contests"
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    # Independent approvals a release needs (1 or 2); None: 2 once there are two organizers.
    approvals_required: Mapped[int | None] = mapped_column(Integer, default=None)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Round(Base):
    """Round 1: catalog and samples for every team. Round 2: full data for admitted teams."""

    __tablename__ = "rounds"
    __table_args__ = (UniqueConstraint("contest_id", "number"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    contest_id: Mapped[str] = mapped_column(ForeignKey("contests.id"))
    number: Mapped[int] = mapped_column(Integer)
    opens_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    closes_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Team(Base):
    __tablename__ = "teams"
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    contest_id: Mapped[str | None] = mapped_column(ForeignKey("contests.id"), default=None)
    admitted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Licence(Base):
    """A team's signed licence agreement (the uploaded file), and the organizer's decision."""

    __tablename__ = "licences"
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    team_id: Mapped[str] = mapped_column(ForeignKey("teams.id"), index=True)
    filename: Mapped[str] = mapped_column(String(255))
    media_type: Mapped[str] = mapped_column(String(64))
    path: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(BigInteger)
    uploaded_by: Mapped[str] = mapped_column(ForeignKey("users.id"))
    uploaded_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    status: Mapped[str] = mapped_column(String(16), default="pending")  # approved | rejected
    decided_by: Mapped[str | None] = mapped_column(ForeignKey("users.id"), default=None)
    decided_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)
    reason: Mapped[str] = mapped_column(Text, default="")


class User(Base):
    __tablename__ = "users"
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(16))  # organizer | contestant | node
    team_id: Mapped[str | None] = mapped_column(ForeignKey("teams.id"), default=None)
    password_hash: Mapped[str | None] = mapped_column(Text, default=None)  # api.passwords
    identity_verified: Mapped[bool] = mapped_column(default=False)  # by an organizer
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ApiToken(Base):
    """A bearer token: only its SHA-256 is stored; revoked tokens stay, for the record."""

    __tablename__ = "api_tokens"
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    label: Mapped[str] = mapped_column(String(64), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)
    # None: never (a data node's worker credential); every person's token has an expiry.
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)


class LoginFailures(Base):
    """Failed logins counted per account name or per client address (``api.throttle``): in
    the database, so every API process of a server counts the same failures."""

    __tablename__ = "login_failures"
    key: Mapped[str] = mapped_column(String(160), primary_key=True)  # "user:NAME" | "addr:IP"
    failures: Mapped[int] = mapped_column(Integer, default=0)
    window_start: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    blocked_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)


class TokenPolicy(Base):
    """The token lifetimes organizers set (``PUT /v1/token-policy``): one row, absent until
    they first set it (the server's settings, ``UNSEEN_TOKEN_*``, hold until then)."""

    __tablename__ = "token_policy"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)  # always 1
    default_seconds: Mapped[int] = mapped_column(BigInteger)
    max_seconds: Mapped[int] = mapped_column(BigInteger)
    set_by: Mapped[str] = mapped_column(String(64))
    set_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Population(Base):
    """The people a dataset's privacy unit stands for ("card holders"). Datasets that hold the
    same people share one: every budget is kept per team and population, and the contest-wide
    cap here bounds the sum over all teams (what the data provider agreed to lose in total)."""

    __tablename__ = "populations"
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(64), unique=True)  # global, like dataset names
    description: Mapped[str] = mapped_column(Text, default="")
    contest_id: Mapped[str | None] = mapped_column(ForeignKey("contests.id"), default=None)
    # Contest-wide, over all teams: cap ≥ spent + reserved, enforced by conditional UPDATEs.
    cap_units: Mapped[int] = mapped_column(BigInteger)
    spent_units: Mapped[int] = mapped_column(BigInteger, default=0)
    reserved_units: Mapped[int] = mapped_column(BigInteger, default=0)
    delta_cap_units: Mapped[int] = mapped_column(BigInteger, default=0)
    delta_spent_units: Mapped[int] = mapped_column(BigInteger, default=0)
    delta_reserved_units: Mapped[int] = mapped_column(BigInteger, default=0)
    # The cap each team's ledger opens with (organizers change a team's cap on its row).
    team_cap_units: Mapped[int] = mapped_column(BigInteger)
    team_delta_cap_units: Mapped[int] = mapped_column(BigInteger, default=0)
    # The part of spent_units the organizers spent on synthetic public samples.
    samples_spent_units: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Dataset(Base):
    __tablename__ = "datasets"
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    unit_column: Mapped[str] = mapped_column(String(128))
    columns: Mapped[dict[str, Any]] = mapped_column(default=dict)  # name -> type
    bounds: Mapped[dict[str, Any]] = mapped_column(default=dict)  # name -> [lo, hi]
    key_sets: Mapped[dict[str, Any]] = mapped_column(default=dict)  # name -> [values]
    blocks: Mapped[int] = mapped_column(Integer)
    rows: Mapped[int] = mapped_column(BigInteger)  # organizer-only: exact size is private
    units: Mapped[int] = mapped_column(BigInteger)
    directory: Mapped[str] = mapped_column(Text)
    sample_path: Mapped[str] = mapped_column(Text)
    sample_rows: Mapped[int] = mapped_column(Integer)
    node: Mapped[str] = mapped_column(String(64), default="local")
    contest_id: Mapped[str | None] = mapped_column(ForeignKey("contests.id"), default=None)
    population_id: Mapped[str] = mapped_column(ForeignKey("populations.id"), index=True)
    # SHA-256 of the source file's bytes: the same file registered again joins this population.
    # None for datasets registered before migration 0005 (their sources were not kept).
    content_sha256: Mapped[str | None] = mapped_column(String(64), index=True, default=None)
    population: Mapped[Population] = relationship(lazy="joined")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    # The public sample: a DP synthetic table made from the full data (``api.synthesis``) at
    # ``sample_epsilon``, or the organizer's file (False, None). "" : no sample yet.
    sample_synthetic: Mapped[bool] = mapped_column(default=False)
    sample_epsilon: Mapped[float | None] = mapped_column(default=None)


class Synthesis(Base):
    """One synthesis of a dataset's public sample: its ε (charged to the population's
    contest-wide ledger, by the organizers), what was asked, and the organizers' fidelity
    report (computed from the full data: never shown to contestants)."""

    __tablename__ = "syntheses"
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    dataset_id: Mapped[str] = mapped_column(ForeignKey("datasets.id"), index=True)
    epsilon: Mapped[float] = mapped_column()
    charge_units: Mapped[int] = mapped_column(BigInteger)
    spec: Mapped[dict[str, Any]] = mapped_column(default=dict)
    state: Mapped[str] = mapped_column(String(16))  # running | done | failed
    charged: Mapped[bool] = mapped_column(default=False)
    rows: Mapped[int] = mapped_column(Integer, default=0)
    report: Mapped[dict[str, Any] | None] = mapped_column(default=None)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    created_by: Mapped[str] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)


class Budget(Base):
    """One team's ledger on one population (every dataset of it): cap ≥ spent + reserved,
    enforced by conditional UPDATEs, together with the population's contest-wide ledger."""

    __tablename__ = "budgets"
    __table_args__ = (UniqueConstraint("team_id", "population_id"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    team_id: Mapped[str] = mapped_column(ForeignKey("teams.id"))
    population_id: Mapped[str] = mapped_column(ForeignKey("populations.id"))
    cap_units: Mapped[int] = mapped_column(BigInteger)
    spent_units: Mapped[int] = mapped_column(BigInteger, default=0)
    reserved_units: Mapped[int] = mapped_column(BigInteger, default=0)
    # δ, in femto-δ units: spent only by DP partition selection (keys without a public set).
    delta_cap_units: Mapped[int] = mapped_column(BigInteger, default=0)
    delta_spent_units: Mapped[int] = mapped_column(BigInteger, default=0)
    delta_reserved_units: Mapped[int] = mapped_column(BigInteger, default=0)


class Job(Base):
    __tablename__ = "jobs"
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    team_id: Mapped[str] = mapped_column(ForeignKey("teams.id"), index=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"))
    dataset_id: Mapped[str] = mapped_column(ForeignKey("datasets.id"))
    mode: Mapped[str] = mapped_column(String(16), default="aggregate")
    target: Mapped[str] = mapped_column(String(8), default="full")  # full | sample
    state: Mapped[str] = mapped_column(String(24), index=True)
    code: Mapped[str] = mapped_column(Text)  # aggregate mode; "" for a query
    plan: Mapped[dict[str, Any] | None] = mapped_column(default=None)  # query mode
    outputs: Mapped[list[Any]] = mapped_column()  # [{name, lo, hi, default}]
    combine: Mapped[str] = mapped_column(String(8))
    epsilon: Mapped[float] = mapped_column()
    charge_units: Mapped[int] = mapped_column(BigInteger)
    delta: Mapped[float] = mapped_column(default=0.0)
    delta_units: Mapped[int] = mapped_column(BigInteger, default=0)
    # The public schedule (runner.schedule), fixed at submission; started_at when a worker
    # took the job. The contestant's view is a function of these and the clock.
    block_seconds: Mapped[float] = mapped_column(default=0.0)
    schedule_seconds: Mapped[float] = mapped_column(default=0.0)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)
    blocks_done: Mapped[int] = mapped_column(Integer, default=0)
    blocks_total: Mapped[int] = mapped_column(Integer, default=0)
    error_class: Mapped[str | None] = mapped_column(String(32), default=None)
    # Organizer-only below: depend on the full data or on internals.
    error_detail: Mapped[str | None] = mapped_column(Text, default=None)
    report: Mapped[dict[str, Any] | None] = mapped_column(default=None)
    logs: Mapped[str | None] = mapped_column(Text, default=None)
    # Noisy values: stored at awaiting_review, shown to the team only once released.
    result: Mapped[list[Any] | None] = mapped_column(default=None)
    noise_drawn: Mapped[bool] = mapped_column(default=False)
    # What the job's lifecycle did to its reservation: None while held, then "commit" or
    # "return" (runner.lifecycle.BudgetEffect), written by the move that did it.
    budget_effect: Mapped[str | None] = mapped_column(String(8), default=None)
    # A run on the public sample keeps its full output: the sample is public.
    sample_run: Mapped[dict[str, Any] | None] = mapped_column(default=None)
    review_reason: Mapped[str | None] = mapped_column(Text, default=None)
    reviewed_by: Mapped[str | None] = mapped_column(ForeignKey("users.id"), default=None)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, onupdate=utcnow
    )


class Approval(Base):
    """One organizer's approval of one job's release; a person approves a job once."""

    __tablename__ = "approvals"
    __table_args__ = (UniqueConstraint("job_id", "user_id"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id"), index=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"))
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class AuditEvent(Base):
    """Append-only record of who did what, hash-chained (``api.audit_log``)."""

    __tablename__ = "audit_events"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    seq: Mapped[int] = mapped_column(BigInteger, unique=True)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    actor: Mapped[str | None] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(64), index=True)
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)


class AuditHead(Base):
    """One row: the audit chain's last sequence number and hash. Appends lock it."""

    __tablename__ = "audit_head"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, default=0)
    hash: Mapped[str] = mapped_column(String(64))

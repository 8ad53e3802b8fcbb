"""Request and response bodies. Contestant and organizer views of a job are separate types, so
organizer-only fields (logs, block outcomes, code of other teams) cannot leak by accident."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from api.models import as_utc
from privacy.budget import MAX_EPSILON_PER_JOB, MIN_EPSILON_PER_JOB

#: Every time the API sends or takes: UTC, sent as ISO 8601 ending in ``Z`` whatever the
#: database gave back (SQLite: naive; PostgreSQL: the session's zone). A time taken without a
#: zone is read as UTC.
UtcTime = Annotated[
    datetime,
    AfterValidator(as_utc),
    Field(description="ISO 8601 in UTC, ending in Z", examples=["2026-12-05T07:00:00Z"]),
]

Name = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]
DatasetName = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,63}$")]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class NewUser(Strict):
    name: Name
    password: str | None = Field(
        None, description="Optional: lets the user log in for new tokens (10+ characters)."
    )


class Login(Strict):
    name: Name
    password: str = Field(max_length=1024)
    label: str = Field("", max_length=64, description="What this token is for, e.g. a laptop.")
    expires_in: int | None = Field(
        None,
        ge=60,
        description="The token's lifetime in seconds (default: the server's, e.g. 30 days); "
        "at most the server's maximum (e.g. 90 days), else 422.",
    )


class NewPassword(Strict):
    password: str = Field(max_length=1024)
    current_password: str | None = Field(
        None, max_length=1024,
        description="Required when the account has a password: a token alone (perhaps a "
        "stolen one) must not take the account over for good.",
    )  # fmt: skip


class PasswordReset(BaseModel):
    """An organizer's reset of a contestant's password: the temporary one, shown once."""

    name: str
    password: str = Field(description="Shown once; hand it over and have it changed.")
    tokens_revoked: int = Field(description="The user's live tokens, all revoked by the reset.")


class TokenOut(BaseModel):
    id: str
    user: str
    label: str
    created_at: UtcTime
    last_used_at: UtcTime | None
    revoked_at: UtcTime | None
    expires_at: UtcTime | None = Field(description="None: never (a data node's credential).")
    current: bool = Field(False, description="The token this request came with.")


#: The lifetimes organizers may set: from an hour (a session must outlast a job's watch) to a
#: year and a day.
MIN_TOKEN_SECONDS, MAX_TOKEN_SECONDS = 3600, 366 * 86400


class TokenPolicyIn(Strict):
    default_seconds: int = Field(
        ge=MIN_TOKEN_SECONDS,
        le=MAX_TOKEN_SECONDS,
        description="A new token's lifetime unless its login asks.",
    )
    max_seconds: int = Field(
        ge=MIN_TOKEN_SECONDS, le=MAX_TOKEN_SECONDS,
        description="The most a login may ask for; live tokens that would outlast it from now "
        "are shortened to it.",
    )  # fmt: skip


class TokenPolicyOut(BaseModel):
    default_seconds: int
    max_seconds: int
    set_by: str | None = Field(description="The organizer who set them; None: the server's.")
    set_at: UtcTime | None
    tokens_shortened: int | None = Field(
        None, description="On a change: live tokens cut back to the new maximum."
    )


class RevokedOut(BaseModel):
    revoked: list[str] = Field(description="The ids of the tokens revoked now.")


class NewTeam(Strict):
    name: Name
    contest: str | None = Field(None, description="Contest it enters (default: the only one).")


class UserOut(BaseModel):
    id: str
    name: str
    role: str
    team_id: str | None


class UserWithToken(UserOut):
    token: str = Field(description="Shown once; only its hash is stored.")
    expires_at: UtcTime | None = Field(None, description="When the token stops working.")


class NewNode(Strict):
    name: Name = Field(description="The node's label (UNSEEN_NODE on its worker): its datasets.")


class NodeDatasetOut(BaseModel):
    """What a data node needs to run a dataset's blocks: it holds them already."""

    name: str
    directory: str
    blocks: int
    rows: int
    units: int
    unit_column: str


class TeamOut(BaseModel):
    id: str
    name: str


class SynthesisIn(Strict):
    """A DP synthetic public sample made from the full data on its node (``api.synthesis``)."""

    epsilon: float = Field(
        ge=MIN_EPSILON_PER_JOB, le=MAX_EPSILON_PER_JOB,
        description="Charged to the dataset's population, contest-wide (organizer spending).",
    )  # fmt: skip
    rows: int = Field(20_000, ge=1, le=1_000_000, description="Rows of the synthetic sample.")
    rows_per_unit: int = Field(
        10, ge=1, le=1_000,
        description="R: each unit's influence is bounded to R rows before anything is counted.",
    )  # fmt: skip
    bins: dict[str, int] = Field(
        default_factory=dict, description="Bins of a bounded numeric column (default 16)."
    )
    time_bounds: dict[str, tuple[str, str]] = Field(
        default_factory=dict, description="Public [start, end) of each time column (ISO)."
    )
    grid_seconds: dict[str, int] = Field(
        default_factory=dict, description="The public time grid's step (default 3600 s)."
    )
    marginals: list[tuple[str, str]] | None = Field(
        None,
        description="The 2-way marginals that matter; default: MST selects a spanning tree.",
    )
    analysis: dict[str, Any] | None = Field(
        None,
        description=(
            "A query plan (the format of POST /v1/queries) whose exact answers the fidelity "
            "report compares: on the full data, the synthetic sample, a same-size sample of "
            "real rows and independent marginals. Default: rows and the mean of each bounded "
            "number by the dataset's smallest key set."
        ),
    )


class SynthesisOut(BaseModel):
    """One synthesis as organizers see it: its charge and the fidelity report (computed from
    the full data: organizer-only)."""

    id: str
    dataset: str
    epsilon: float
    state: str
    charged: bool
    rows: int
    spec: dict[str, Any]
    report: dict[str, Any] | None
    error: str | None
    created_at: UtcTime
    finished_at: UtcTime | None


class NewDataset(Strict):
    name: DatasetName
    description: str = Field("", max_length=4000)
    source_path: str = Field(description="Full data: a Parquet file on this data node.")
    sample_path: str | None = Field(
        None,
        description="A public sample file the organizer provides; leave it out and give "
        "`synthesize` to make a DP synthetic one from the full data (the safe default).",
    )
    synthesize: SynthesisIn | None = Field(
        None, description="Make the public sample a DP synthetic table of the full data."
    )
    unit_column: str = Field(description="Privacy unit: all rows of one unit form one person.")
    bounds: dict[str, tuple[float, float]] = Field(default_factory=dict)
    key_sets: dict[str, list[str | int | float]] = Field(default_factory=dict)
    blocks: int | None = Field(None, ge=2, le=100_000)
    contest: str | None = Field(None, description="Contest it belongs to (default: the only one).")
    population: DatasetName | None = Field(
        None,
        description="The people its privacy unit stands for (e.g. card_holders): budgets are "
        "kept per team and population. Default: a new population named after the dataset. A "
        "source whose bytes are already registered in the contest joins that dataset's "
        "population (naming another is refused).",
    )
    team_epsilon: float | None = Field(
        None, ge=0, le=1000,
        description="ε cap each team's ledger on a new population opens with (default 10). "
        "Joining a population keeps its caps; a different value is refused.",
    )  # fmt: skip
    team_delta: float | None = Field(
        None, ge=0, lt=1,
        description="δ cap per team on a new population (default 1e-6), spent only by "
        "partition selection.",
    )  # fmt: skip
    population_epsilon: float | None = Field(
        None, ge=0, le=1_000_000,
        description="Contest-wide ε cap of a new population, over all teams together: the "
        "total privacy loss the data provider agreed to (default 100).",
    )  # fmt: skip
    population_delta: float | None = Field(
        None, ge=0, lt=1, description="Contest-wide δ cap of a new population (default 1e-5)."
    )
    node: Name | None = Field(
        None,
        description="Data node that holds the data (default: this server). Another node's "
        "worker partitions it there; paths are on that node, and the data never comes here.",
    )


class DatasetOut(BaseModel):
    name: str
    description: str
    unit_column: str
    columns: dict[str, str]
    bounds: dict[str, list[float]]
    key_sets: dict[str, list[str | int | float]]
    blocks: int
    sample_rows: int
    population: str = Field(description="The people it holds; budgets are per population.")
    team_epsilon: float = Field(description="The ε cap a team's ledger on it opens with.")
    team_delta: float
    synthetic: bool = Field(
        False, description="The sample is a DP synthetic table of the full data (not real rows)."
    )
    sample_epsilon: float | None = Field(
        None, description="The ε its synthesis spent (charged to the population); None: a file."
    )


class DatasetOrganizerOut(DatasetOut):
    rows: int
    units: int
    node: str


class OutputIn(Strict):
    name: str
    lo: float
    hi: float
    default: float | None = None


class NewJob(Strict):
    dataset: str
    code: str = Field(description="Python source defining analyze(df) -> dict[str, float].")
    outputs: list[OutputIn] = Field(description="Every value analyze returns, with bounds.")
    epsilon: float | None = Field(
        None,
        ge=MIN_EPSILON_PER_JOB,
        le=MAX_EPSILON_PER_JOB,
        allow_inf_nan=False,
        description="Required for target=full.",
    )
    combine: Literal["mean", "sum"] = "mean"
    block_seconds: float | None = Field(
        None,
        allow_inf_nan=False,
        description="Every block's public time T (target=full): a block still running after "
        "T gets its declared defaults, and the job's length is fixed from T, the blocks and "
        "the node's slots. Default: 3 times this code's last run on the sample (on a half-second "
        "grid), else the node's default (GET /v1/schedule shows its limits).",
    )
    mode: Literal["aggregate"] = "aggregate"
    target: Literal["full", "sample"] = Field(
        "full",
        description="full: the full data, DP release, budget charged. sample: the public "
        "sample, raw values and full logs, no budget.",
    )


#: The plan language, for the OpenAPI schema (README, "The plan as JSON", has an example).
PLAN_FORMAT = (
    "A query plan: {filter?, group_by, aggregates, max_rows_per_unit?, max_groups_per_unit?}. "
    "filter: an expression true for the rows to keep. group_by: column names or "
    "{name, expr} (derived keys: hour, weekday, bucket); keys whose values the dataset does not "
    "list are chosen by DP partition selection and need delta. aggregates: {name, op} with op "
    "count | sum | mean | variance | quantile; all but count take a numeric column and bounds "
    "lo < hi (else the dataset's); quantile takes q in (0, 1) and bins (2-1000, default 100), "
    "its quantiles of one column sharing one noisy histogram. max_rows_per_unit (R) and "
    "max_groups_per_unit (G): a unit's rows per cell and cells, default and maximum the "
    "dataset's; the error grows with G*R. Expressions: {col}, {lit}, {op, args} with op one of "
    "== != < <= > >= + - * / and or not hour weekday between isin (values) bucket (edges)."
)


class EstimateIn(Strict):
    """An aggregate-mode job (outputs) or a query-mode plan: priced before anything runs."""

    dataset: str
    outputs: list[OutputIn] = Field(default_factory=list)
    plan: dict[str, Any] | None = Field(None, description=f"Query mode. {PLAN_FORMAT}")
    epsilon: float = Field(ge=MIN_EPSILON_PER_JOB, le=MAX_EPSILON_PER_JOB, allow_inf_nan=False)
    delta: float = Field(0.0, ge=0, le=1e-4, allow_inf_nan=False)
    combine: Literal["mean", "sum"] = "mean"
    code: str | None = Field(
        None,
        description="Aggregate mode: the analysis, put through the pre-flight code policy as "
        "a submission would be (nothing runs). Lets a local sample run fail as the server would.",
    )


class NewQuery(Strict):
    dataset: str
    plan: dict[str, Any] = Field(description=PLAN_FORMAT)
    epsilon: float = Field(ge=MIN_EPSILON_PER_JOB, le=MAX_EPSILON_PER_JOB, allow_inf_nan=False)
    delta: float = Field(
        0.0, ge=0, le=1e-4, allow_inf_nan=False,
        description="Only for group_by keys without a public set.",
    )  # fmt: skip


class NoiseOut(BaseModel):
    name: str
    epsilon: float
    sensitivity: float
    noise_scale: float
    error_bound_95: float
    describes: str = Field("", description="What the noisy quantity is, and its unit.")
    grid_step: float | None = Field(
        None, description="Aggregate mode: every released value is a whole multiple of this."
    )
    max_rows_per_unit: int | None = Field(
        None,
        description="Query mode: R, a unit's rows counted in one cell (the plan's, else "
        "the dataset's default). Public: from the plan and the dataset's policy only.",
    )
    max_groups_per_unit: int | None = Field(
        None,
        description="Query mode: G, the cells a unit counts in; the noise grows with G*R.",
    )


class ReleasedOut(BaseModel):
    name: str
    keys: dict[str, Any] | None = Field(None, description="The cell's group keys (query mode).")
    value: float
    noise_scale: float
    error_bound_95: float
    epsilon: float


class SampleRunOut(BaseModel):
    """Everything about a run on the public sample: values, logs, traceback. No noise."""

    values: dict[str, float]
    outcome: str
    reason: str
    end: str
    exit_code: int | None
    stdout: str
    stderr: str
    seconds: float


class Progress(BaseModel):
    """For a contestant, the schedule's progress: ``fraction`` is the part of the public
    schedule elapsed and ``blocks_done`` that fraction of the blocks, not the blocks that ran
    (their pace could tell about the data). For an organizer, the blocks that ran."""

    blocks_done: int
    blocks_total: int
    fraction: float = Field(0.0, description="Part of the job's public schedule elapsed, 0..1.")


class ScheduleRulesOut(BaseModel):
    """A node's public scheduling rules: a full-data job's length is ``start_seconds`` plus
    ``ceil(blocks / slots) * (block_seconds + block_overhead_seconds)``; a query's is
    ``query_seconds``."""

    min_block_seconds: float
    max_block_seconds: float
    default_block_seconds: float
    start_seconds: float
    block_overhead_seconds: float
    query_seconds: float
    slots: int
    sandbox: str = Field(
        description="The node's runtime and isolation form (runc/zygote, runsc/container): a "
        "block's T must cover its start in the container form."
    )


class ScheduleOut(BaseModel):
    block_seconds: float = Field(description="Every block's public time T (0 for a query).")
    seconds: float = Field(description="The job's length from when a worker takes it.")
    release_at: UtcTime | None = Field(
        None, description="When the job leaves 'running' for you: its start plus its length."
    )


class JobOut(BaseModel):
    """What a contestant sees: state, a coarse error class, released values. Nothing else."""

    id: str
    dataset: str
    team: str
    mode: str
    target: str
    state: str
    epsilon: float
    delta: float = 0.0
    combine: str
    outputs: list[OutputIn]
    plan: dict[str, Any] | None = None
    progress: Progress
    schedule: ScheduleOut | None = Field(
        None, description="Full-data jobs: the public schedule the job's visible life follows."
    )
    error_class: str | None
    review_reason: str | None
    charge: Literal["none", "reserved", "charged", "returned"] = Field(
        "reserved",
        description="What became of the job's ε: held (reserved) until the schedule ends, then "
        "charged (its code or plan ran on the full data, or noise was drawn) or returned "
        "(it failed before touching the data); none for a run on the sample.",
    )
    result: list[ReleasedOut] | None
    sample_run: SampleRunOut | None = Field(
        None, description="Only for target=sample; full-data runs never return logs."
    )
    created_at: UtcTime
    updated_at: UtcTime


class ApprovalOut(BaseModel):
    by: str
    at: UtcTime


class ReviewOut(BaseModel):
    """Who approved the release so far, and how many approvals the contest needs."""

    approvals: list[ApprovalOut] = Field(default_factory=list)
    needed: int = 1


class JobOrganizerOut(JobOut):
    """Adds what depends on the full data or on internals: organizers only."""

    code: str
    pending_values: list[ReleasedOut] | None
    report: dict[str, object] | None
    logs: str | None
    error_detail: str | None
    review: ReviewOut | None = None


#: Routes read by both roles answer with one of these; the view decides which, so a
#: contestant's answer is built without the organizer-only fields in the first place.
AnyJobOut = JobOrganizerOut | JobOut
AnyDatasetOut = DatasetOrganizerOut | DatasetOut


class BudgetOut(BaseModel):
    """A team's ledger on one population (all its datasets), and the population's contest-wide
    cap over all teams. A job needs both: ``available`` is the smaller of what is left."""

    team: str
    population: str
    datasets: list[str] = Field(description="The datasets of the population: one budget.")
    cap: float
    spent: float
    reserved: float
    remaining: float = Field(description="The team's own cap minus spent and reserved.")
    delta_cap: float = 0.0
    delta_spent: float = 0.0
    delta_reserved: float = 0.0
    delta_remaining: float = 0.0
    population_cap: float = Field(description="Contest-wide ε cap, over all teams together.")
    population_remaining: float = Field(
        description="What is left of it after every team's spent and reserved ε."
    )
    population_delta_cap: float = 0.0
    population_delta_remaining: float = 0.0
    available: float = Field(description="ε the next job may use: min(remaining, population).")
    delta_available: float = 0.0


class BudgetCapIn(Strict):
    epsilon: float = Field(
        ge=0, le=1000,
        description="Never below what the team spent and holds; raised, at most what the "
        "population has left on top of that.",
    )  # fmt: skip
    delta: float | None = Field(None, ge=0, lt=1, description="Leave out to keep the δ cap.")


class PopulationOut(BaseModel):
    """A population as organizers see it: its contest-wide ledger and its datasets."""

    name: str
    contest: str | None
    description: str
    datasets: list[str]
    cap: float
    spent: float
    reserved: float
    remaining: float
    delta_cap: float
    delta_spent: float
    delta_reserved: float
    delta_remaining: float
    team_epsilon: float = Field(description="The ε cap a new team's ledger opens with.")
    team_delta: float
    team_caps_total: float = Field(
        description="The teams' ε caps added up; above ``cap``, the contest-wide cap binds."
    )
    samples_spent: float = Field(
        0.0, description="The part of ``spent`` the organizers spent on synthetic samples."
    )


class PopulationCapIn(Strict):
    epsilon: float = Field(
        ge=0, le=1_000_000, description="Contest-wide ε cap; never below what teams used."
    )
    delta: float | None = Field(None, ge=0, lt=1, description="Leave out to keep the δ cap.")


class NewContest(Strict):
    name: Name
    description: str = Field("", max_length=4000)


class RoundIn(Strict):
    opens_at: UtcTime
    closes_at: UtcTime


class RoundOut(RoundIn):
    number: int
    open_now: bool


class ContestOut(BaseModel):
    id: str
    name: str
    description: str
    rounds: list[RoundOut]
    datasets: list[str]
    teams: list[str]
    approvals_required: int | None = Field(
        None, description="Set by the organizers (1 or 2); null: the default."
    )
    approvals_needed: int = Field(
        1, description="Independent organizer approvals each release needs now."
    )


class ReviewRule(Strict):
    approvals: Literal[1, 2] | None = Field(
        description="Approvals each release needs; null: 2 once there are two organizers."
    )


class Admission(Strict):
    admitted: bool


class Identity(Strict):
    verified: bool


class MemberOut(BaseModel):
    name: str
    identity_verified: bool


class LicenceOut(BaseModel):
    id: str
    team: str
    filename: str
    media_type: str
    size: int
    sha256: str
    uploaded_by: str
    uploaded_at: UtcTime
    status: str
    reason: str
    decided_at: UtcTime | None


class TeamStatusOut(BaseModel):
    """A team as organizers see it: where it stands on the way to round two."""

    id: str
    name: str
    contest: str | None
    admitted: bool
    licence: LicenceOut | None
    members: list[MemberOut]
    full_data_blocked_by: list[str]


class ResultRow(BaseModel):
    team: str
    dataset: str
    job: str
    mode: str
    released_at: UtcTime
    output: str
    keys: dict[str, Any] | None
    value: float
    noise_scale: float
    error_bound_95: float
    epsilon: float


class ReviewDecision(Strict):
    reason: str = Field("", max_length=2000)

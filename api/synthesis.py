"""Organizer-level spending: a dataset's DP synthetic sample, charged to its population.

The accounting rule (docs/threat-model.md) holds for organizers too: the people behind a
population lose ε to whatever is released about them, so a synthetic sample's ε is reserved on
the population's contest-wide ledger by one conditional UPDATE (``cap - spent - reserved >=
units``), before any data is read, and committed (or returned) in the same transaction that
records the outcome, with audit events for both. It is charged once the synthesis may have
read the data (its node answered, or it ran here), whatever happens next; returned only when
it never started (public checks failed, or the node never answered). Teams' ledgers are not
touched: what the organizers spend is simply no longer left contest-wide.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from api import crud
from api.context import AppContext
from api.dataset_files import directory_name
from api.errors import ApiError
from api.models import Dataset, Population, Synthesis, User
from api.schemas import SynthesisIn, SynthesisOut
from privacy.budget import remaining_units, to_epsilon
from privacy.synthesis import SynthesisError
from runner.blocks import load_layout
from runner.node_errors import NodeTaskFailed, NodeUnavailable
from runner.synthesize import Declaration, SynthesisSpec, attributes_for, synthesize_blocks
from runner.wire import declaration_to_wire, synthesis_spec_to_wire

#: The synthetic sample travels from a node inside a task's answer (as the organizer's file did).
MAX_SYNTHETIC_BYTES = 32 * 1024 * 1024


def declaration(dataset: Dataset) -> Declaration:
    return Declaration(dict(dataset.columns), dataset.unit_column, dict(dataset.bounds),
                       dict(dataset.key_sets))  # fmt: skip


def spec_of(body: SynthesisIn) -> SynthesisSpec:
    return SynthesisSpec(
        epsilon=body.epsilon, rows=body.rows, rows_per_unit=body.rows_per_unit,
        bins=dict(body.bins), time_bounds=dict(body.time_bounds),
        grid_seconds=dict(body.grid_seconds),
        marginals=None if body.marginals is None else list(body.marginals),
        analysis=body.analysis,
    )  # fmt: skip


def synthesis_view(synthesis: Synthesis, dataset: str) -> SynthesisOut:
    s = synthesis
    return SynthesisOut(
        id=s.id, dataset=dataset, epsilon=s.epsilon, state=s.state, charged=s.charged,
        rows=s.rows, spec=s.spec, report=s.report, error=s.error, created_at=s.created_at,
        finished_at=s.finished_at,
    )  # fmt: skip


def _reserve(session: Session, dataset: Dataset, units: int) -> None:
    """Hold ``units`` on the population's contest-wide ledger, or a 409 naming what is left."""
    held = crud.updated_rows(
        session,
        update(Population)
        .where(Population.id == dataset.population_id,
               Population.cap_units - Population.spent_units - Population.reserved_units
               >= units)
        .values(reserved_units=Population.reserved_units + units)
        .execution_options(synchronize_session=False),
    )  # fmt: skip
    if held != 1:
        population = session.get_one(Population, dataset.population_id)
        session.refresh(population)
        left = remaining_units(population.cap_units, population.spent_units,
                               population.reserved_units)  # fmt: skip
        raise ApiError(
            409, "budget_exceeded",
            f"this synthesis needs ε={to_epsilon(units):g} but population {population.name!r} "
            f"(the people of {dataset.name!r}) has ε={to_epsilon(left):g} left of its "
            f"contest-wide cap; lower epsilon or raise the cap "
            f"(`unseen populations set {population.name} --epsilon E`)",
            cap="population", population=population.name, remaining=to_epsilon(left),
        )  # fmt: skip


def _settle(session: Session, dataset: Dataset, units: int, spent: bool) -> None:
    moved = units if spent else 0
    session.execute(
        update(Population)
        .where(Population.id == dataset.population_id)
        .values(reserved_units=Population.reserved_units - units,
                spent_units=Population.spent_units + moved,
                samples_spent_units=Population.samples_spent_units + moved)
        .execution_options(synchronize_session=False)
    )  # fmt: skip


@dataclass(frozen=True)
class _Made:
    parquet: bytes
    rows: int
    report: dict[str, Any]


def _run_here(dataset: Dataset, spec: SynthesisSpec) -> _Made:
    made = synthesize_blocks(load_layout(Path(dataset.directory)), declaration(dataset), spec)
    return _Made(made.parquet, made.rows, made.report)


def _run_on_node(ctx: AppContext, dataset: Dataset, spec: SynthesisSpec) -> _Made:
    answer = ctx.nodes.call(
        dataset.node, "unseen.synthesize_dataset", dataset.directory,
        declaration_to_wire(declaration(dataset)), synthesis_spec_to_wire(spec),
    )  # fmt: skip
    if not isinstance(answer, dict) or set(answer) != {"parquet", "rows", "report"}:
        raise ApiError(502, "node_answer", f"node {dataset.node!r} answered the synthesis oddly")
    parquet = base64.b64decode(answer["parquet"], validate=True)
    if len(parquet) > MAX_SYNTHETIC_BYTES or type(answer["rows"]) is not int:
        raise ApiError(502, "node_answer", f"node {dataset.node!r} sent an impossible sample")
    return _Made(parquet, answer["rows"], dict(answer["report"]))


def synthesize(ctx: AppContext, name: str, body: SynthesisIn, actor: User) -> SynthesisOut:
    """Reserve, run where the data is, then charge and publish (or record the failure)."""
    spec = spec_of(body)
    units = crud.epsilon_units(body.epsilon)
    with ctx.db.transaction() as session:
        dataset = crud.get_dataset(session, name)
        try:
            attributes_for(declaration(dataset), spec)  # public checks, before any budget
        except SynthesisError as exc:
            raise ApiError(422, "bad_synthesis", str(exc)) from exc
        if not ctx.nodes.reaches(dataset.node):
            raise ApiError(
                422, "no_broker",
                f"dataset {name!r} is on node {dataset.node!r}: this server has no broker to "
                "reach it; start the server with UNSEEN_BROKER_URL",
            )  # fmt: skip
        _reserve(session, dataset, units)
        synthesis = Synthesis(dataset_id=dataset.id, epsilon=to_epsilon(units),
                              charge_units=units, spec=synthesis_spec_to_wire(spec),
                              state="running", created_by=actor.id)  # fmt: skip
        session.add(synthesis)
        session.flush()
        crud.audit(session, actor, "synthesis.started", dataset=name, synthesis=synthesis.id,
                   population=dataset.population.name, epsilon=to_epsilon(units))  # fmt: skip
        session.expunge(dataset)
    try:
        made = (_run_here(dataset, spec) if dataset.node == ctx.settings.node
                else _run_on_node(ctx, dataset, spec))  # fmt: skip
        if len(made.parquet) > MAX_SYNTHETIC_BYTES:
            raise ApiError(422, "sample_too_large",
                           f"the synthetic sample is over {MAX_SYNTHETIC_BYTES >> 20} MiB; "
                           "ask for fewer rows")  # fmt: skip
        directory = ctx.settings.datasets_dir / directory_name(dataset.name, dataset.id)
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"sample-synthetic-{synthesis.id[:8]}.parquet"
        path.write_bytes(made.parquet)
        path.chmod(0o644)
    except BaseException as exc:
        charged = not isinstance(exc, NodeUnavailable)  # a node that never answered read nothing
        _fail(ctx, dataset, synthesis.id, units, actor, exc, charged)
        if isinstance(exc, NodeUnavailable):
            raise ApiError(503, "node_unavailable", str(exc)) from exc
        if isinstance(exc, NodeTaskFailed | SynthesisError):
            raise ApiError(422, "synthesis_failed", f"{exc}; the ε stays charged") from exc
        raise
    with ctx.db.transaction() as session:
        _settle(session, dataset, units, spent=True)
        stored = session.get_one(Synthesis, synthesis.id)
        stored.state, stored.charged, stored.rows = "done", True, made.rows
        stored.report, stored.finished_at = made.report, datetime.now(UTC)
        row = session.get_one(Dataset, dataset.id)
        old = Path(row.sample_path) if row.sample_path else None
        row.sample_path, row.sample_rows = str(path), made.rows
        row.sample_synthetic, row.sample_epsilon = True, to_epsilon(units)
        crud.audit(session, actor, "sample.synthesized", dataset=name, synthesis=stored.id,
                   population=row.population.name, epsilon=to_epsilon(units),
                   rows=made.rows)  # fmt: skip
        view = synthesis_view(stored, name)
    if old is not None and old != path and old.parent == path.parent:
        old.unlink(missing_ok=True)  # the previous sample: no longer served
    return view


def _fail(ctx: AppContext, dataset: Dataset, synthesis_id: str, units: int, actor: User,
          exc: BaseException, charged: bool) -> None:  # fmt: skip
    with ctx.db.transaction() as session:
        _settle(session, dataset, units, spent=charged)
        stored = session.get_one(Synthesis, synthesis_id)
        stored.state, stored.charged = "failed", charged
        stored.error, stored.finished_at = f"{type(exc).__name__}: {exc}"[-4000:], datetime.now(UTC)
        crud.audit(session, actor, "synthesis.failed", dataset=dataset.name,
                   synthesis=synthesis_id, epsilon=to_epsilon(units), charged=charged)  # fmt: skip


def syntheses(session: Session, name: str) -> list[SynthesisOut]:
    dataset = crud.get_dataset(session, name)
    found = session.scalars(select(Synthesis).where(Synthesis.dataset_id == dataset.id)
                            .order_by(Synthesis.created_at.desc()))  # fmt: skip
    return [synthesis_view(s, name) for s in found]

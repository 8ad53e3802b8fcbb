"""Synthetic public samples (organizers): make one from the full data, read the reports."""

from __future__ import annotations

from fastapi import APIRouter

from api import synthesis
from api.auth import Organizer
from api.context import Context
from api.schemas import SynthesisIn, SynthesisOut

router = APIRouter(prefix="/v1/datasets", tags=["datasets"])


@router.post("/{name}/synthesize", status_code=201)
def synthesize(name: str, body: SynthesisIn, ctx: Context, actor: Organizer) -> SynthesisOut:
    """Make the dataset's public sample a DP synthetic table of its full data, on the data's
    node (MST measurements, each unit bounded to ``rows_per_unit`` rows), charged ε to its
    population's contest-wide cap. Returns the organizers' fidelity report."""
    return synthesis.synthesize(ctx, name, body, actor)


@router.get("/{name}/syntheses")
def syntheses(name: str, ctx: Context, _actor: Organizer) -> list[SynthesisOut]:
    """Every synthesis of the dataset, newest first, with its charge and fidelity report."""
    with ctx.db.read() as session:
        return synthesis.syntheses(session, name)

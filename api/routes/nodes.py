"""Data nodes' credentials: an organizer creates one per node; the node's worker uses it to
learn which datasets it holds, and nothing else of the API opens to it.

A node's name is its label (``UNSEEN_NODE`` where its worker runs): the datasets registered on
that node are its datasets. Its tokens are listed and revoked like a user's
(``GET /v1/tokens?of=NAME``, ``DELETE /v1/tokens/ID``).
"""

from __future__ import annotations

from fastapi import APIRouter
from sqlalchemy import select

from api import crud
from api.auth import NODE_ROLE, DataNode, Organizer
from api.context import Context
from api.models import Dataset
from api.schemas import NewNode, NodeDatasetOut, UserWithToken

router = APIRouter(prefix="/v1", tags=["nodes"])


@router.post("/nodes", status_code=201)
def create_node(body: NewNode, ctx: Context, actor: Organizer) -> UserWithToken:
    """A credential for one data node's worker; the token is shown once."""
    with ctx.db.transaction() as session:
        node, token = crud.create_user(session, body.name, NODE_ROLE, None, actor,
                                       token_expires_at=None)  # fmt: skip
    return UserWithToken(id=node.id, name=node.name, role=node.role, team_id=None, token=token)


@router.get("/node/datasets")
def node_datasets(ctx: Context, node: DataNode) -> list[NodeDatasetOut]:
    """The datasets this node holds (registered under its label): only its own."""
    with ctx.db.read() as session:
        held = session.scalars(
            select(Dataset).where(Dataset.node == node.name).order_by(Dataset.name)
        )
        return [
            NodeDatasetOut(name=d.name, directory=d.directory, blocks=d.blocks, rows=d.rows,
                           units=d.units, unit_column=d.unit_column)
            for d in held
        ]  # fmt: skip

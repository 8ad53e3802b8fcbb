"""Data nodes' credentials against the real server: a node sees only the datasets it holds,
nothing else of the API opens to it, and an organizer lists and revokes its tokens."""

from __future__ import annotations

from pathlib import Path

import pytest

from client.api import UnseenClient, UnseenError
from tests.conftest import Deployment

pytestmark = pytest.mark.docker


def refused(call: object, status: int) -> UnseenError:
    with pytest.raises(UnseenError) as caught:
        call()  # type: ignore[operator]
    assert caught.value.status == status, caught.value
    return caught.value


def test_a_node_sees_only_its_own_datasets(deployment: Deployment) -> None:
    organizer = deployment.organizer
    label = {d["name"]: d["node"] for d in organizer.datasets()}["transport_cards"]
    here = UnseenClient(deployment.server.url, organizer.create_node(label)["token"])
    held = {d["name"]: d for d in here.node_datasets()}
    assert {"transport_cards", "cards_tiny"} <= set(held)
    assert Path(held["transport_cards"]["directory"]).is_dir()
    assert held["transport_cards"]["blocks"] > 0 and held["transport_cards"]["unit_column"]
    elsewhere = UnseenClient(deployment.server.url, organizer.create_node("node-far")["token"])
    assert elsewhere.node_datasets() == []
    assert here.me()["role"] == "node"
    refused(lambda: organizer.create_node(label), 409)


def test_nothing_else_opens_to_a_node(deployment: Deployment) -> None:
    organizer = deployment.organizer
    node = UnseenClient(deployment.server.url, organizer.create_node("node-shut")["token"])
    for call in (node.datasets, node.jobs, node.budget, node.tokens, node.review_queue):
        error = refused(call, 403)
        assert "/v1/node/" in error.message
    error = refused(lambda: node.query("transport_cards", {"aggregates": []}, 1.0), 403)
    assert "node" in error.message
    refused(lambda: deployment.contestant.node_datasets(), 403)
    refused(lambda: UnseenClient(deployment.server.url).login("node-shut", "x" * 12), 401)


def test_an_organizer_lists_and_revokes_a_nodes_tokens(deployment: Deployment) -> None:
    organizer = deployment.organizer
    node = UnseenClient(deployment.server.url, organizer.create_node("node-gone")["token"])
    assert node.node_datasets() == []
    (token,) = organizer.tokens(of="node-gone")
    organizer.revoke_token(token["id"])
    error = refused(node.node_datasets, 401)
    assert "revoked" in error.message
    assert organizer.audit(action="token.revoked")[0]["detail"]["token"] == token["id"]

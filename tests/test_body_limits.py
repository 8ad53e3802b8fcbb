"""Every size limit answers 413 in the API's error shape (issue 16, "Accounts"): a declared
``Content-Length`` over the server's body limit however large (FastAPI's own limit used to
answer far ones in plain text), a chunked body that passes it, a licence over 10 MB, job code
over the node's code limit. Real HTTP against the real app (Docker-free sandbox)."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from api.errors import MAX_BODY_BYTES
from api.settings import AccountRules
from client.api import UnseenClient
from tests.conftest import LICENCE_PDF
from tests.test_login_throttle import accounts_server

MB = 2**20


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, UnseenClient]]:
    with accounts_server(tmp_path_factory.mktemp("limits"), AccountRules()) as (srv, org):
        team = org.create_team("team-big")
        member = org.with_token(org.add_member(team["id"], "bea")["token"])
        yield srv.url, member


def declared(url: str, path: str, length: int, token: str, media: str) -> tuple[int, dict]:
    """Send only the headers of a request declaring ``length`` bytes: the answer must come
    before any of the body is read."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(
            f"POST {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n"
            f"Content-Type: {media}\r\nContent-Length: {length}\r\n\r\n".encode()
        )
        answer = b""
        while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    status = int(head.split()[1])
    assert b"application/json" in head.lower(), head
    return status, json.loads(body)


ROUTES = [
    ("/v1/teams", "application/json"),
    ("/v1/jobs", "application/json"),
    ("/v1/login", "application/json"),
    ("/v1/teams/team-big/licences", "multipart/form-data; boundary=x"),
]


@pytest.mark.parametrize(
    "length", [MAX_BODY_BYTES + 1, 60 * MB, 10**12], ids=["just", "60MB", "1TB"]
)
@pytest.mark.parametrize(("path", "media"), ROUTES, ids=[r[0] for r in ROUTES])
def test_a_declared_body_over_the_limit_gets_the_json_413(
    server: tuple[str, UnseenClient], path: str, media: str, length: int
) -> None:
    url, member = server
    status, body = declared(url, path, length, str(member.token), media)
    assert status == 413
    assert body["error"] == "too_large" and "12 MB" in body["message"]


def test_a_chunked_body_over_the_limit_gets_the_json_413(
    server: tuple[str, UnseenClient],
) -> None:
    url, member = server

    def chunks() -> Iterator[bytes]:
        yield b'{"name": "'
        for _ in range(MAX_BODY_BYTES // MB + 2):
            yield b"a" * MB
        yield b'"}'

    headers = {"Authorization": f"Bearer {member.token}", "Content-Type": "application/json"}
    response = httpx.post(f"{url}/v1/teams", content=chunks(), headers=headers, timeout=60)
    assert response.status_code == 413
    assert response.json()["error"] == "too_large"


def test_a_licence_over_10_mb_gets_the_json_413(server: tuple[str, UnseenClient]) -> None:
    url, member = server
    big = LICENCE_PDF + b"0" * (10 * MB)
    response = httpx.post(
        f"{url}/v1/teams/team-big/licences",
        files={"file": ("big.pdf", big, "application/pdf")},
        headers={"Authorization": f"Bearer {member.token}"},
        timeout=60,
    )
    assert response.status_code == 413
    assert response.json()["error"] == "too_large" and "10 MB" in response.json()["message"]


def test_job_code_over_the_code_limit_gets_the_json_413(server: tuple[str, UnseenClient]) -> None:
    url, member = server
    code = "def analyze(df):\n    return {'n': 1.0}\n" + "#" * (70 * 1024) + "\n"
    outputs = [{"name": "n", "lo": 0, "hi": 1}]
    full = {"dataset": "none", "code": code, "outputs": outputs, "epsilon": 0.1}
    sample = {"dataset": "none", "code": code, "outputs": outputs, "target": "sample"}
    for body in (full, sample):
        response = httpx.post(
            f"{url}/v1/jobs", json=body, headers={"Authorization": f"Bearer {member.token}"}
        )
        assert response.status_code == 413, (body.get("target"), response.text[:200])
        error = response.json()
        assert error["error"] == "too_large" and "65536 bytes" in error["message"]


def test_the_servers_own_limit_is_the_only_one(tmp_path: Path) -> None:
    """No second, plain-text limit behind BodySizeLimit (FastAPI's ``max_body_size``)."""
    from api.app import create_app
    from tests.fakes import fake_settings

    app = create_app(fake_settings(tmp_path))
    assert getattr(app, "max_body_size", None) is None

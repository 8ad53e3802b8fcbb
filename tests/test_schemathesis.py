"""Schemathesis against the live OpenAPI schema, plus the request-body limits, over real HTTP.

Every operation of ``/openapi.json`` (50) gets generated requests, valid and invalid (bodies,
path and query values, wrong methods), as the organizer, as an admitted contestant and with no
token. Every answer must be below 500, and every 4xx/5xx answer must be JSON in the one error
shape of ``api/errors.py``: ``{"error": code, "message": text-that-names-the-fix, ...}``.

Budget, per operation and caller: the examples and coverage phases (deterministic, a few to
~60 cases), then FUZZ_EXAMPLES (40) fuzzed cases; the COSTLY operations (job and query
submission, which could start sandbox work; dataset registration, which reads server-side
paths) get COSTLY_EXAMPLES (4) fuzzed cases and no coverage phase. About 4,000 requests; the
file takes ~2.5 min on 2 cores once the runner image and the generated data exist.
UNSEEN_FUZZ_EXAMPLES=300 runs deeper (~11 min for the fuzzing alone).

Everything runs against a server of its own (module-scoped, its own data directory and sandbox
node ``schemathesis``), never the shared ``deployment``: generated requests create teams and
contests, move round dates, set budgets and revoke identities, and the oversized bodies must
not be able to take the shared server down. ``POST /v1/organizers`` is fuzzed too: none of the
tokens used is the bootstrap token, so it can only answer 4xx.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

from client.api import UnseenClient
from tests.conftest import Deployment, SodaData, start_deployment

pytestmark = pytest.mark.docker

#: Fuzzed cases per operation and caller; UNSEEN_FUZZ_EXAMPLES=500 for a deeper run by hand.
FUZZ_EXAMPLES = int(os.environ.get("UNSEEN_FUZZ_EXAMPLES", "40"))
COSTLY_EXAMPLES = max(3, FUZZ_EXAMPLES // 10)
#: Operations that may start container work or read server-side files: few examples each.
COSTLY = {("POST", "/v1/jobs"), ("POST", "/v1/queries"), ("POST", "/v1/datasets")}
#: The keys every error answer carries (api/errors.py ``_body``).
ERROR_KEYS = {"error", "message"}
MB = 1024 * 1024


@pytest.fixture(scope="module")
def own(
    runner_image: str, soda: SodaData, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Deployment]:
    """A server for this file alone, with its own sandbox node so it reaps nobody else's."""
    env = {"UNSEEN_NODE": "schemathesis", "UNSEEN_BLOCK_SECONDS": "8", "UNSEEN_SLOTS": "1"}
    deployed = start_deployment(tmp_path_factory.mktemp("schemathesis") / "state", soda, env)
    yield deployed
    deployed.server.stop()


def server_log(d: Deployment) -> list[str]:
    data_dir = d.server.data_dir
    log = data_dir.parent / f"{data_dir.name}-server.log"
    return log.read_text(errors="replace").splitlines()


def assert_error_shape(status: int, content_type: str, body: bytes) -> None:
    assert content_type.startswith("application/json"), (
        f"a {status} answer must be JSON, got {content_type!r}: {body[:300]!r}"
    )
    payload = json.loads(body)
    assert isinstance(payload, dict), f"a {status} answer must be a JSON object: {payload!r}"
    assert payload.keys() >= ERROR_KEYS, f"a {status} answer lacks {ERROR_KEYS}: {payload!r}"
    assert isinstance(payload["error"], str) and payload["error"], payload
    assert isinstance(payload["message"], str) and payload["message"].strip(), payload


def error_shape(_ctx: object, response: schemathesis.Response, _case: schemathesis.Case) -> None:
    """Every 4xx/5xx answer is a JSON object with a non-empty ``error`` code and ``message``."""
    if response.status_code < 400:
        return None
    content_type = (response.headers.get("content-type") or [""])[0]
    assert_error_shape(response.status_code, content_type, response.content)
    return None


# --- bodies the schema does not describe -----------------------------------------------------


def bearer(client: UnseenClient) -> dict[str, str]:
    return {"Authorization": f"Bearer {client.token}"}


def assert_error(response: httpx.Response, *statuses: int) -> dict[str, Any]:
    assert response.status_code in statuses, (response.status_code, response.text[:300])
    assert_error_shape(
        response.status_code, response.headers.get("content-type", ""), response.content
    )
    return response.json()


def assert_still_up(d: Deployment) -> None:
    assert httpx.get(f"{d.server.url}/healthz", timeout=10).status_code == 200
    assert httpx.get(f"{d.server.url}/v1/me", headers=bearer(d.organizer), timeout=10).is_success


#: Bodies that are not JSON, sent as ``application/json``.
MALFORMED = {
    "truncated": b'{"name": ',
    "garbage": b"not json at all",
    "empty": b"",
    "trailing-comma": b'{"name": "x",}',
    "utf16-bom": b"\xff\xfe{}",
    "open-array": b"[1, 2",
    "not-utf8": b"\x8a",
    "latin1-string": b'{"name": "\xe9t\xe9"}',
}


@pytest.mark.parametrize("body", list(MALFORMED.values()), ids=list(MALFORMED))
def test_malformed_json_gets_a_422_in_the_error_shape(own: Deployment, body: bytes) -> None:
    headers = {**bearer(own.organizer), "Content-Type": "application/json"}
    response = httpx.post(f"{own.server.url}/v1/teams", content=body, headers=headers, timeout=30)
    error = assert_error(response, 422)
    assert error["error"] == "invalid_request"
    assert "/docs" in error["message"]  # names where the expected body is described


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/x-www-form-urlencoded", "application/xml", None],
)
def test_a_json_route_refuses_other_content_types_naming_json(
    own: Deployment, content_type: str | None
) -> None:
    """A valid JSON body under the wrong (or no) Content-Type: a 4xx whose message names the
    fix, i.e. says to send JSON."""
    headers = bearer(own.organizer)
    if content_type is not None:
        headers["Content-Type"] = content_type
    body = b'{"name": "team-content-type"}'
    response = httpx.post(f"{own.server.url}/v1/teams", content=body, headers=headers, timeout=30)
    error = assert_error(response, 400, 415, 422)
    assert "json" in error["message"].lower(), error
    names = [t["name"] for t in own.organizer.teams_status()]
    assert "team-content-type" not in names


def test_a_wrong_method_gets_a_405_naming_the_allowed_methods(own: Deployment) -> None:
    response = httpx.delete(f"{own.server.url}/v1/teams", headers=bearer(own.organizer), timeout=30)
    error = assert_error(response, 405)
    assert error["error"] == "method_not_allowed"
    allowed = {m.strip() for m in response.headers.get("allow", "").split(",")}
    assert allowed >= {"GET", "POST"}, f"a 405 must carry an Allow header: {response.headers}"
    assert "GET" in error["message"] and "POST" in error["message"], error


def test_an_unknown_path_gets_a_404_pointing_at_the_docs(own: Deployment) -> None:
    response = httpx.get(f"{own.server.url}/v1/no-such-thing", headers=bearer(own.organizer))
    error = assert_error(response, 404)
    assert error["error"] == "not_found"
    assert "/docs" in error["message"], error


def _chunks(total: int, chunk: int = MB) -> Iterator[bytes]:
    sent = 0
    yield b'{"name": "'
    while sent < total:
        yield b"a" * chunk
        sent += chunk
    yield b'"}'


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_an_oversized_json_body_gets_a_413_and_the_server_stays_up(
    own: Deployment, framing: str
) -> None:
    headers = {**bearer(own.organizer), "Content-Type": "application/json"}
    body: bytes | Iterator[bytes] = (
        b'{"name": "' + b"a" * (20 * MB) + b'"}'
        if framing == "content-length"
        else _chunks(20 * MB)
    )
    response = httpx.post(f"{own.server.url}/v1/teams", content=body, headers=headers, timeout=60)
    error = assert_error(response, 413)
    assert error["error"] == "too_large"
    assert "MB" in error["message"]  # says how much is allowed
    assert_still_up(own)


def _upload(d: Deployment, content: bytes, filename: str, media: str) -> httpx.Response:
    url = f"{d.server.url}/v1/teams/team-alpha/licences"
    return httpx.post(
        url, files={"file": (filename, content, media)}, headers=bearer(d.contestant), timeout=60
    )


def _chunked_upload(d: Deployment, size: int) -> httpx.Response:
    """A multipart PDF upload of ``size`` bytes sent chunked: no Content-Length to refuse on."""
    boundary = "unseen-test-boundary"

    def body() -> Iterator[bytes]:
        yield (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
            f'filename="huge.pdf"\r\nContent-Type: application/pdf\r\n\r\n%PDF-1.4\n'
        ).encode()
        for _ in range(size // MB):
            yield b"0" * MB
        yield f"\r\n--{boundary}--\r\n".encode()

    headers = {
        **bearer(d.contestant),
        "Content-Type": f"multipart/form-data; boundary={boundary}",
    }
    url = f"{d.server.url}/v1/teams/team-alpha/licences"
    return httpx.post(url, content=body(), headers=headers, timeout=60)


def test_a_licence_over_10_mb_gets_a_413_and_the_server_stays_up(own: Deployment) -> None:
    before = own.contestant.licences("team-alpha")
    eleven = b"%PDF-1.4\n" + b"0" * (11 * MB)
    error = assert_error(_upload(own, eleven, "big.pdf", "application/pdf"), 413)
    assert error["error"] == "too_large" and "10 MB" in error["message"]
    # Past the server-wide body limit too: refused before it is read, whatever the framing.
    huge = b"%PDF-1.4\n" + b"0" * (20 * MB)
    assert_error(_upload(own, huge, "huge.pdf", "application/pdf"), 413)
    assert_error(_chunked_upload(own, 20 * MB), 413)
    assert_error(_chunked_upload(own, 11 * MB), 413)
    assert own.contestant.licences("team-alpha") == before
    assert_still_up(own)


def test_a_licence_just_under_10_mb_is_accepted(own: Deployment) -> None:
    """The limits above are limits, not a refusal of every large file."""
    almost = b"%PDF-1.4\n" + b"0" * (10 * MB - 64)
    response = _upload(own, almost, "scan.pdf", "application/pdf")
    assert response.status_code == 201, response.text[:300]
    assert response.json()["size"] == len(almost)


@pytest.mark.parametrize(
    ("content", "filename", "media"),
    [
        (b"just some text, not a scan", "licence.txt", "text/plain"),
        (b"just some text that claims to be a PDF", "licence.pdf", "application/pdf"),
        (b"GIF89a\x01\x00\x01\x00", "licence.gif", "image/gif"),
        (b"", "empty.pdf", "application/pdf"),
    ],
    ids=["text", "text-as-pdf", "gif", "empty"],
)
def test_a_licence_that_is_not_pdf_png_or_jpeg_gets_a_415(
    own: Deployment, content: bytes, filename: str, media: str
) -> None:
    error = assert_error(_upload(own, content, filename, media), 415)
    assert error["error"] == "bad_file"
    assert all(kind in error["message"] for kind in ("PDF", "PNG", "JPEG"))


def test_a_licence_upload_that_is_not_multipart_gets_a_4xx_in_the_error_shape(
    own: Deployment,
) -> None:
    url = f"{own.server.url}/v1/teams/team-alpha/licences"
    for content_type in ["application/json", "multipart/form-data", "application/pdf"]:
        headers = {**bearer(own.contestant), "Content-Type": content_type}
        assert_error(
            httpx.post(url, content=b"%PDF-1.4", headers=headers, timeout=30), 400, 415, 422
        )


# --- schemathesis ---------------------------------------------------------------------------


def _openapi() -> dict[str, Any]:
    """The schema the server serves at /openapi.json, built in-process at collection time so
    pytest can make one test per operation (``test_the_live_schema_is_the_one_fuzzed`` checks
    it is the live one). schemathesis' lazy ``from_fixture`` loader cannot be used instead: it
    sets ``Function._nodeid``, which pytest 9 no longer has."""
    from api.app import create_app
    from api.settings import Settings

    offline = Settings(data_dir=Path("/nonexistent"), database_url="sqlite://", bootstrap_token="-")
    return create_app(offline).openapi()


OPENAPI = _openapi()
COSTLY_OPERATIONS = [
    {
        "include-name": f"{method} {path}",  # include-method + include-path would OR
        "generation": {"max-examples": COSTLY_EXAMPLES},
        "phases": {"coverage": {"enabled": False}},
    }
    for method, path in sorted(COSTLY)
]
CONFIG = schemathesis.Config.from_dict(
    {
        "generation": {
            "mode": "all",
            "max-examples": FUZZ_EXAMPLES,
            "deterministic": True,
            "no-shrink": True,
            "database": "none",
        },
        "request-timeout": 30,
        "operations": COSTLY_OPERATIONS,
    }
)
schema = schemathesis.openapi.from_dict(OPENAPI, config=CONFIG)


@pytest.fixture(scope="module", params=["organizer", "contestant", "anonymous"])
def auth(request: pytest.FixtureRequest, own: Deployment) -> dict[str, str]:
    """The Authorization header of one of the three callers."""
    if request.param == "anonymous":
        return {}
    client = own.organizer if request.param == "organizer" else own.contestant
    return {"Authorization": f"Bearer {client.token}"}


def test_the_live_schema_is_the_one_fuzzed(own: Deployment) -> None:
    live = httpx.get(f"{own.server.url}/openapi.json", timeout=30)
    assert live.status_code == 200
    assert live.json() == OPENAPI


@schema.parametrize()
@settings(deadline=None, suppress_health_check=list(HealthCheck))
def test_every_operation_answers_below_500_in_the_error_shape(
    case: schemathesis.Case, own: Deployment, auth: dict[str, str]
) -> None:
    response = case.call(base_url=own.server.url, headers=auth, timeout=30)
    try:
        case.validate_response(response, checks=[not_a_server_error, error_shape], headers=auth)
    except Exception as exc:
        if response.status_code >= 500:
            exc.add_note("server log, last lines:\n" + "\n".join(server_log(own)[-40:]))
        raise

"""One error shape for every 4xx/5xx: ``{"error": code, "message": text-that-names-the-fix}``."""

from __future__ import annotations

import logging
import re

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger(__name__)

#: Largest request body the server reads at all (a licence upload of 10 MB plus form overhead).
MAX_BODY_BYTES = 12 * 2**20
TOO_LARGE = (
    f"the request body is larger than the server accepts ({MAX_BODY_BYTES // 2**20} MB); "
    "send less (code and plans are far smaller, licences at most 10 MB)"
)


class ApiError(Exception):
    #: Response headers to send with it (e.g. ``Retry-After``): set on the instance.
    headers: dict[str, str] | None = None

    def __init__(self, status: int, code: str, message: str, **extra: object) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.extra = extra


def not_found(what: str, name: str, hint: str) -> ApiError:
    return ApiError(404, f"unknown_{what}", f"no {what} {name!r}; {hint}")


def _body(code: str, message: str, **extra: object) -> dict[str, object]:
    return {"error": code, "message": message, **extra}


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_request: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(
            _body(exc.code, exc.message, **exc.extra), status_code=exc.status, headers=exc.headers
        )

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        if _json_body_sent_as_something_else(request, exc):
            return JSONResponse(
                _body(
                    "unsupported_media_type",
                    "send the body as JSON with 'Content-Type: application/json' "
                    "(see GET /docs for the schema)",
                ),
                status_code=415,
            )
        problems = []
        for error in exc.errors()[:10]:
            where = ".".join(str(part) for part in error.get("loc", ()) if part != "body")
            problems.append(f"{where or 'body'}: {error.get('msg', 'invalid')}")
        message = "invalid request: " + "; ".join(problems) + " (see GET /docs for the schema)"
        return JSONResponse(_body("invalid_request", message), status_code=422)

    @app.exception_handler(OperationalError)
    async def _database(_request: Request, exc: OperationalError) -> JSONResponse:
        log.error("database error: %s", exc)
        if "full" in str(exc) or "No space" in str(exc):
            return JSONResponse(
                _body(
                    "insufficient_storage",
                    "the server's disk is full; nothing was changed. "
                    "Ask the operator to free space in the data directory, then retry",
                ),
                status_code=507,
            )
        return JSONResponse(
            _body(
                "database_unavailable",
                "the database is unavailable; nothing was changed, retry in a moment",
            ),
            status_code=503,
        )

    @app.exception_handler(Exception)
    async def _unexpected(_request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", exc_info=exc)
        return JSONResponse(
            _body(
                "internal",
                "the server hit an unexpected error; it has been logged, retry or "
                "report it to the organizers",
            ),
            status_code=500,
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        status, headers = exc.status_code, dict(exc.headers or {})
        code = {404: "not_found", 405: "method_not_allowed", 413: "too_large",
                415: "unsupported_media_type"}.get(status, "http_error")  # fmt: skip
        message = str(exc.detail)
        if status == 413:
            message = TOO_LARGE
        elif status == 404 and message == "Not Found":
            message = f"no route {request.method} {request.url.path}; the API is at GET /docs"
        elif status == 405:
            allowed = _allowed_methods(request) or headers.get("allow", "")
            headers["allow"] = allowed
            message = f"{request.method} is not allowed here; use {allowed or 'another method'}"
        elif status == 400 and "parsing the body" in message:
            # Bytes that are not UTF-8 JSON at all: the same answer as any other bad JSON.
            status, code = 422, "invalid_request"
            message = "invalid request: the body is not valid JSON (see GET /docs for the schema)"
        return JSONResponse(_body(code, message), status_code=status, headers=headers or None)


def _json_body_sent_as_something_else(request: Request, exc: RequestValidationError) -> bool:
    """A route that takes a JSON object got a body under another (or no) content type."""
    if request.headers.get("content-type", "").startswith("application/json"):
        return False
    return any(tuple(e.get("loc", ())) == ("body",) and e.get("type") in
               {"model_attributes_type", "dict_type", "missing"} for e in exc.errors())  # fmt: skip


def _allowed_methods(request: Request) -> str:
    """Every method any route answers at this path (Starlette names only its first route's)."""
    paths = request.app.openapi().get("paths", {})
    found: set[str] = set()
    for template, operations in paths.items():
        pattern = "^" + re.sub(r"\\{[^/]+?\\}", "[^/]+", re.escape(template)) + "$"
        if re.match(pattern, request.url.path):
            found.update(method.upper() for method in operations)
    return ", ".join(sorted(found))

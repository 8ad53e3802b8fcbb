"""One error shape for every 4xx/5xx: ``{"error": code, "message": text-that-names-the-fix}``."""

from __future__ import annotations

import logging

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
        return JSONResponse(_body(exc.code, exc.message, **exc.extra), status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def _validation(_request: Request, exc: RequestValidationError) -> JSONResponse:
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
    async def _http(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed", 413: "too_large",
                415: "unsupported_media_type"}.get(exc.status_code, "http_error")  # fmt: skip
        message = TOO_LARGE if exc.status_code == 413 else str(exc.detail)
        return JSONResponse(_body(code, message), status_code=exc.status_code)

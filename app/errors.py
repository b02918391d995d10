"""Every failure becomes ``{"error": {"code", "message", "request_id"}}`` with the right status.

``ApiError`` subclasses are the service's own refusals; ``dif.errors.DifError``
(bad uploads, bad artifacts) carries its own ``code`` and ``status`` too; FastAPI's 404, 405
and validation errors are rewritten into the same shape so clients parse one format.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from dif.errors import DifError

log = logging.getLogger("app.errors")

# Closing the connection after refusing a body stops the client from sending the
# rest of it: uvicorn would otherwise read and discard every remaining byte.
CLOSE = {"Connection": "close"}


class ApiError(Exception):
    status = 500
    code = "internal_error"

    def __init__(self, message: str, headers: Mapping[str, str] | None = None):
        super().__init__(message)
        self.message = message
        self.headers = dict(headers or {})


class MalformedUpload(ApiError):
    status, code = 400, "malformed_multipart"


class MalformedJson(ApiError):
    status, code = 400, "malformed_json"


class Unauthorized(ApiError):
    status, code = 401, "unauthorized"

    def __init__(self, message: str = "missing or wrong X-API-Key header"):
        super().__init__(message, {"WWW-Authenticate": "ApiKey"})


class AdminDisabled(ApiError):
    status, code = 403, "admin_disabled"


class GeneratorNotFound(ApiError):
    status, code = 404, "generator_not_found"


class PayloadTooLarge(ApiError):
    status, code = 413, "payload_too_large"

    def __init__(self, limit: int):
        super().__init__(f"request body is larger than the limit of {limit} bytes (DIF_MAX_UPLOAD_BYTES)", CLOSE)


class TooManyFiles(ApiError):
    status, code = 413, "too_many_files"


class MissingFile(ApiError):
    status, code = 422, "missing_file"


class QueueFull(ApiError):
    status, code = 429, "queue_full"

    def __init__(self, message: str, retry_after_s: int):
        super().__init__(message, {"Retry-After": str(max(1, retry_after_s))})


class InferenceFailed(ApiError):
    status, code = 500, "inference_failed"


class NotReady(ApiError):
    status, code = 503, "not_ready"

    def __init__(self, message: str = "the service is still loading or warming up its fingerprints"):
        super().__init__(message, {"Retry-After": "1"})


class ShuttingDown(ApiError):
    status, code = 503, "shutting_down"

    def __init__(self, message: str = "the service is shutting down; retry on another replica"):
        super().__init__(message, {"Retry-After": "1"})


class DeadlineExceeded(ApiError):
    status, code = 504, "deadline_exceeded"


# FastAPI/Starlette raise plain HTTPExceptions for routing faults; name them.
HTTP_CODES = {
    400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
    405: "method_not_allowed", 413: "payload_too_large", 415: "unsupported_media_type",
    422: "validation_error", 429: "too_many_requests", 500: "internal_error", 503: "unavailable",
}


def request_id_of(request: Request) -> str | None:
    return getattr(request.state, "request_id", None)


def error_response(status: int, code: str, message: str, request_id: str | None = None,
                   headers: Mapping[str, str] | None = None) -> JSONResponse:
    body: dict[str, str] = {"code": code, "message": message}
    if request_id:
        body["request_id"] = request_id
    return JSONResponse({"error": body}, status_code=status, headers=dict(headers or {}))


async def _refusal(request: Request, exc: Exception) -> JSONResponse:
    """The service's own refusal (``ApiError``) or one of the core's (``DifError``: a bad upload or artifact)."""
    assert isinstance(exc, (ApiError, DifError))
    if exc.status != 500:  # server faults are counted where they happen (batch failures)
        request.app.state.service.metrics.rejections.labels(reason=exc.code).inc()
    headers = exc.headers if isinstance(exc, ApiError) else None
    return error_response(exc.status, exc.code, str(exc), request_id_of(request), headers)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = HTTP_CODES.get(exc.status_code, "http_error")
    return error_response(exc.status_code, code, str(exc.detail), request_id_of(request), exc.headers)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err.get("loc", ()))
        parts.append(f"{where}: {err.get('msg', 'invalid')}")
    return error_response(422, "validation_error", "; ".join(parts) or "invalid request", request_id_of(request))


def install_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ApiError, _refusal)
    app.add_exception_handler(DifError, _refusal)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)

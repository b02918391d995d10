"""Pure ASGI middlewares: request context and metrics, and the streaming body limit."""

from __future__ import annotations

import logging
import re
import time
import uuid

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.errors import PayloadTooLarge, error_response
from app.metrics import Metrics

log = logging.getLogger("app.http")

REQUEST_ID_HEADER = b"x-request-id"
# A client's own id is echoed only when it is short and harmless in logs and headers.
SAFE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
# Any token is a valid HTTP method; only these become metric labels, the rest are "other".
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return value.decode("latin-1")
    return None


def _route_template(scope: Scope) -> str:
    """The matched route's path template, so metric labels stay bounded (never the raw path)."""
    route = scope.get("route")
    return getattr(route, "path", None) or "unmatched"


class RequestContextMiddleware:
    """Request id (``X-Request-ID`` in and out), start time, per-route metrics, last-resort 500."""

    def __init__(self, app: ASGIApp, metrics: Metrics):
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = _header(scope, REQUEST_ID_HEADER)
        request_id = given if given and SAFE_REQUEST_ID.match(given) else uuid.uuid4().hex
        started = time.monotonic()
        state = scope.setdefault("state", {})
        state["request_id"], state["started_at"] = request_id, started
        status = 500
        response_started = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                response_started = True
                status = message["status"]
                message["headers"] = [*message.get("headers", []), (REQUEST_ID_HEADER, request_id.encode())]
            await send(message)

        self.metrics.in_progress.inc()
        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            # Whatever escaped every handler still gets the JSON error shape and a request id.
            log.exception("unhandled error in %s %s (request %s)", scope["method"], scope["path"], request_id)
            if not response_started:
                await error_response(500, "internal_error", "internal server error", request_id)(
                    scope, receive, send_with_id)
        finally:
            self.metrics.in_progress.dec()
            route = _route_template(scope)
            method = scope["method"] if scope["method"] in KNOWN_METHODS else "other"
            self.metrics.requests.labels(route=route, method=method, status=str(status)).inc()
            self.metrics.request_latency.labels(route=route, method=method).observe(time.monotonic() - started)


# A refused body is still read, and dropped, up to this far past the limit. Closing a socket with
# unread bytes in it makes the kernel answer RST and throw away what was still queued to send,
# the 413 included: 9 of 90 over-limit uploads of 3-12 MiB lost their answer that way.
LINGER_BYTES = 16 * 1024 * 1024


async def _drain(receive: Receive, budget: int) -> None:
    """Read and drop the rest of the request body, at most ``budget`` bytes."""
    more = True
    while more and budget > 0:
        message = await receive()
        if message["type"] != "http.request":
            return
        budget -= len(message.get("body", b""))
        more = message.get("more_body", False)


class BodyLimitMiddleware:
    """Refuse bodies over ``max_bytes``: by Content-Length before reading, else while streaming.

    Either way the body is drained up to ``LINGER_BYTES`` past the limit before the answer, so
    a client that sends its whole body before reading (most do) gets the 413; a bigger body is
    cut off and its sender may see a reset instead.
    """

    def __init__(self, app: ASGIApp, max_bytes: int, metrics: Metrics):
        self.app = app
        self.max_bytes = max_bytes
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _header(scope, b"content-length")
        size = int(declared) if declared is not None and declared.isdigit() else None
        if size is not None and size > self.max_bytes:
            error = PayloadTooLarge(self.max_bytes)
            self.metrics.rejections.labels(reason=error.code).inc()
            if size <= self.max_bytes + LINGER_BYTES:
                await _drain(receive, size)
            state = scope.get("state", {})
            await error_response(error.status, error.code, error.message, state.get("request_id"),
                                 error.headers)(scope, receive, send)
            return
        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    if message.get("more_body", False):
                        await _drain(receive, LINGER_BYTES)
                    # Raised inside whoever reads the body; the ApiError handler answers 413.
                    raise PayloadTooLarge(self.max_bytes)
            return message

        await self.app(scope, counting_receive, send)

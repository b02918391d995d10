"""Dependencies shared by the routers (``Annotated[..., Depends(...)]`` style)."""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader

from app.engine import ModelSet
from app.errors import AdminDisabled, NotReady, ShuttingDown, Unauthorized
from app.service import Phase, Service

api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="required when DIF_API_KEY is set")


def get_service(request: Request) -> Service:
    return request.app.state.service  # type: ignore[no-any-return]


ServiceDep = Annotated[Service, Depends(get_service)]


def require_api_key(service: ServiceDep, key: Annotated[str | None, Security(api_key_header)]) -> None:
    expected = service.settings.api_key
    if expected is None:
        return
    # Constant-time comparison: the key must not leak through response timing.
    if key is None or not secrets.compare_digest(key.encode(), expected.get_secret_value().encode()):
        raise Unauthorized()


def require_admin(service: ServiceDep, _auth: Annotated[None, Depends(require_api_key)]) -> None:
    if service.settings.api_key is None:
        raise AdminDisabled("admin endpoints need authentication: set DIF_API_KEY to enable them")


def require_ready(service: ServiceDep) -> None:
    """Detections need a warm set. Draining still serves: those requests were already accepted."""
    if service.phase is Phase.STARTING:
        raise NotReady()
    if service.phase is Phase.FAILED:
        raise NotReady("warming up the fingerprints failed; see the service log")
    if service.phase is Phase.STOPPED:
        raise ShuttingDown()


def current_model(service: ServiceDep) -> ModelSet:
    if not service.engine.loaded:
        raise NotReady()
    return service.engine.current


ModelDep = Annotated[ModelSet, Depends(current_model)]

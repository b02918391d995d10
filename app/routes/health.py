"""``/healthz`` (the process answers) and ``/readyz`` (warm and not shutting down). No API key."""

from __future__ import annotations

from fastapi import APIRouter

from app.deps import ServiceDep
from app.errors import NotReady, ShuttingDown
from app.schemas import ErrorBody, Health
from app.service import Phase

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health, response_model_exclude_none=True,
            summary="Liveness: the process is up")
async def healthz() -> Health:
    return Health(status="ok")


@router.get("/readyz", response_model=Health, responses={503: {"model": ErrorBody}},
            summary="Readiness: fingerprints loaded and warm, not shutting down")
async def readyz(service: ServiceDep) -> Health:
    phase = service.phase
    if phase in (Phase.DRAINING, Phase.STOPPED):
        raise ShuttingDown("shutting down: draining accepted requests")
    if phase is Phase.FAILED:
        raise NotReady("warming up the fingerprints failed; see the service log")
    if phase is not Phase.READY:
        raise NotReady()
    model = service.engine.current
    return Health(status="ready", phase=phase.value, generators=len(model.names), model_version=model.version)

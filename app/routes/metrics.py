"""``GET /metrics`` in the Prometheus text format. No API key, like the health checks."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response

from app.deps import ServiceDep
from app.metrics import CONTENT_TYPE

router = APIRouter(tags=["metrics"])


@router.get("/metrics", response_class=Response, summary="Prometheus metrics")
async def metrics(service: ServiceDep) -> Response:
    service.metrics.queue_depth.set(service.batcher.depth)
    return Response(service.metrics.render(), media_type=CONTENT_TYPE)

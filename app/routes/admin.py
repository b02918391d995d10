"""``POST /admin/reload``: load the fingerprint folder again and swap the set in atomically."""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends

from app.deps import ServiceDep, require_admin
from app.schemas import ErrorBody, ReloadResponse

router = APIRouter(prefix="/admin", tags=["admin"])
ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorBody, "description": "missing or wrong X-API-Key"},
    403: {"model": ErrorBody, "description": "DIF_API_KEY is not set, so admin endpoints are off"},
    422: {"model": ErrorBody, "description": "the folder holds an invalid set; the old set keeps serving"},
}


@router.post("/reload", response_model=ReloadResponse, responses=ERRORS,
             summary="Reload DIF_FINGERPRINTS_DIR without dropping requests")
async def reload(service: ServiceDep, _admin: Annotated[None, Depends(require_admin)]) -> ReloadResponse:
    started = time.perf_counter()
    model = await service.reload()
    return ReloadResponse(model_version=model.version, generators=model.names, extractor=model.extractor_key,
                          seconds=round(time.perf_counter() - started, 3))

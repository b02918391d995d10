"""``GET /generators`` and one generator's details and pictures."""

from __future__ import annotations

import asyncio
from typing import Annotated, Literal

import torch
from fastapi import APIRouter, Depends, Path
from fastapi.responses import Response

from app.deps import ModelDep, ServiceDep, require_api_key
from app.engine import ModelSet
from app.schemas import GeneratorList, GeneratorOut, error_responses
from dif.artifact import Fingerprint
from dif.decision import REPORTED_RATES, detection_rate, rate_key

# Below this TPR at the operating point a fingerprint misses most of its generator's images:
# users must see that the generator is loaded but not really covered.
WEAK_TPR = 0.5

# Documented because they happen (the fuzz tests hold the schema to it): a client generated
# from the schema must expect the key check and the not-yet-loaded answer.
router = APIRouter(prefix="/generators", tags=["generators"], dependencies=[Depends(require_api_key)],
                   responses=error_responses({401: "missing or wrong X-API-Key",
                                              503: "no fingerprint set is loaded yet"}))
# FastAPI would document its own 422 body for the path parameter; ours is the error shape.
NOT_FOUND = error_responses({404: "no such generator", 422: "invalid generator name"})
NameParam = Annotated[str, Path(description="generator name, as listed by GET /generators")]


@router.get("", response_model=GeneratorList, summary="Every loaded generator")
async def list_generators(model: ModelDep, service: ServiceDep) -> GeneratorList:
    rate = service.settings.false_positive_rate
    return GeneratorList(
        extractor=model.extractor_key, crop_size=model.detector.crop_size, model_version=model.version,
        loaded_at=model.loaded_at, false_positive_rate=rate,
        generators=[describe(fp, rate, len(model.names)) for fp in model.fingerprints],
    )


@router.get("/{name}", response_model=GeneratorOut, responses=NOT_FOUND, summary="One generator")
async def get_generator(model: ModelDep, service: ServiceDep, name: NameParam) -> GeneratorOut:
    return describe(model.find(name), service.settings.false_positive_rate, len(model.names))


@router.get("/{name}/fingerprint.png", response_class=Response, responses=NOT_FOUND,
            summary="The fingerprint, contrast-stretched")
async def fingerprint_png(model: ModelDep, name: NameParam) -> Response:
    return await _png(model, name, "fingerprint")


@router.get("/{name}/spectrum.png", response_class=Response, responses=NOT_FOUND,
            summary="The fingerprint's log-magnitude spectrum")
async def spectrum_png(model: ModelDep, name: NameParam) -> Response:
    return await _png(model, name, "spectrum")


async def _png(model: ModelSet, name: str, kind: Literal["fingerprint", "spectrum"]) -> Response:
    fp = model.find(name)
    data = await asyncio.to_thread(model.png, fp, kind)  # an FFT and a PNG encode: keep them off the loop
    return Response(data, media_type="image/png", headers={"Cache-Control": "no-cache"})


def expected_tpr(fp: Fingerprint, rate: float, family_size: int) -> float | None:
    """Cross-validated TPR at ``rate`` with this many generators loaded, from the held-out fakes'
    p-values the trainer recorded (None for an artifact trained without --crossval)."""
    if fp.crossval is None or not fp.crossval.heldout_fake_p:
        return None
    return detection_rate(torch.tensor(fp.crossval.heldout_fake_p), rate, family_size)


def describe(fp: Fingerprint, rate: float, family_size: int) -> GeneratorOut:
    here = expected_tpr(fp, rate, family_size)
    tpr = {rate_key(r): expected_tpr(fp, r, family_size) for r in REPORTED_RATES}
    return GeneratorOut(
        name=fp.name, crop_size=fp.crop_size, extractor=fp.extractor, detection=fp.detection.to_dict(),
        calibration=fp.calibration.to_dict(), null=fp.null_model.to_dict(),
        centres={"real": fp.calibration.real_centre, "fake": fp.calibration.fake_centre},
        crossval_accuracy=fp.crossval.accuracy if fp.crossval else None,
        tpr_at_fpr=tpr, tpr_at_operating_point=here, weak=None if here is None else here < WEAK_TPR,
        schema_version=fp.schema_version, metadata=fp.full_metadata(),
    )

"""``POST /lineage`` and ``GET /lineage/matrix``: is one generator derived from another?

Both sides of a comparison are either generators of the loaded set (by name)
or uploaded artifacts; the loaded set is the population that calibrates the
decision (``dif.lineage``). Uploads are read in memory and validated like any
artifact (``dif.archive``, ``dif.artifact.parse_fingerprint``): nothing is
written to disk and nothing is unpickled, and a bad one is a 4xx, never a 500.
"""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.deps import ModelDep, require_api_key, require_ready
from app.engine import ModelSet
from app.errors import MalformedUpload, MissingFile
from app.jsonbody import parse_json_body
from app.schemas import Shift, error_responses
from dif.archive import fingerprint_from_archive, parse_upload
from dif.artifact import Fingerprint
from dif.lineage import STATISTIC, compare

router = APIRouter(prefix="/lineage", tags=["lineage"],
                   dependencies=[Depends(require_api_key), Depends(require_ready)])

SIDES = ("a", "b")


class UnsupportedBody(MalformedUpload):
    status, code = 415, "unsupported_media_type"

ERRORS = error_responses({
        400: "malformed JSON (deep nesting, duplicate keys, out-of-range numbers, not UTF-8) or multipart body",
        401: "missing or wrong X-API-Key",
        404: "no loaded generator of that name",
        413: "body over DIF_MAX_UPLOAD_BYTES, or an archive member over its limit (zip bomb)",
        415: "neither application/json nor multipart/form-data",
        422: "missing side, malformed artifact (shape, NaN, metadata, pickle, unsafe archive), other crop size, "
             "or fewer than 5 loaded generators",
        503: "warming up or shutting down",
})
MATRIX_ERRORS = error_responses({
        401: "missing or wrong X-API-Key",
        422: "fewer than 5 loaded generators",
        503: "warming up or shutting down",
})
BODY = {
    "requestBody": {"required": True, "content": {
        "application/json": {"schema": {"type": "object", "required": ["a", "b"], "properties": {
            "a": {"type": "string", "description": "a loaded generator's name"},
            "b": {"type": "string", "description": "a loaded generator's name"}}}},
        "multipart/form-data": {"schema": {"type": "object", "properties": {
            "a": {"description": "a loaded generator's name (text), or its artifact folder as .zip/.tar (file)"},
            "b": {"description": "same as a"},
            "a_weights": {"type": "string", "format": "binary", "description": "fingerprint.safetensors of a"},
            "a_metadata": {"type": "string", "format": "binary", "description": "metadata.json of a"},
            "b_weights": {"type": "string", "format": "binary"},
            "b_metadata": {"type": "string", "format": "binary"}}}},
    }}
}


class ComparisonOut(BaseModel):
    a: str
    b: str
    statistic: str = Field(description=f"{STATISTIC}: the combined p-value as a z-score")
    similarity: float = Field(description="related when >= threshold")
    related: bool
    shift: Shift = Field(description="(dy, dx): b's pattern is a's moved by this much")
    hypothesis: str = Field(description="aligned (zero shift) or shifted (best shift in the window)")
    correlation: float = Field(description="correlation at that shift, after removing what all fingerprints share")
    pce: float = Field(description="peak-to-correlation energy at that shift (reported, not decided on)")
    p_value: float
    threshold: float
    population: int = Field(description="loaded generators that calibrate the decision")
    warnings: list[str]
    null: dict[str, float | int] = Field(description="what unrelated pairs look like in this population")


async def _json_sides(request: Request, model: ModelSet) -> list[Fingerprint]:
    body = parse_json_body(await request.body())
    if not isinstance(body, dict) or not all(isinstance(body.get(side), str) for side in SIDES):
        raise MissingFile('the JSON body must be {"a": "<loaded generator>", "b": "<loaded generator>"}; '
                          "to compare an artifact of your own, upload it as multipart/form-data")
    return [model.find(body[side]) for side in SIDES]


async def _multipart_sides(request: Request, model: ModelSet) -> list[Fingerprint]:
    try:
        form = await request.form(max_files=4, max_fields=8)
    except StarletteHTTPException as exc:
        raise MalformedUpload(f"cannot parse the multipart body: {exc.detail}") from exc
    try:
        sides = []
        for side in SIDES:
            value = form.get(side)
            weights, metadata = form.get(f"{side}_weights"), form.get(f"{side}_metadata")
            if isinstance(value, str):
                sides.append(model.find(value))
            elif isinstance(value, UploadFile):
                data = await value.read()
                sides.append(await asyncio.to_thread(fingerprint_from_archive, data, value.filename or side))
            elif isinstance(weights, UploadFile) and isinstance(metadata, UploadFile):
                pair = await weights.read(), await metadata.read()
                sides.append(await asyncio.to_thread(parse_upload, *pair, f"upload {side}"))
            else:
                raise MissingFile(
                    f"side {side!r} is missing: send `{side}` (a loaded generator's name, or the artifact folder "
                    f"as a .zip/.tar file) or both `{side}_weights` (fingerprint.safetensors) and "
                    f"`{side}_metadata` (metadata.json)"
                )
        return sides
    finally:
        await form.close()


@router.post("", response_model=ComparisonOut, responses=ERRORS, openapi_extra=BODY,
             summary="Lineage of two generators: loaded ones by name, or uploaded artifacts")
async def lineage(request: Request, model: ModelDep) -> ComparisonOut:
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind == "application/json":
        a, b = await _json_sides(request, model)
    elif kind == "multipart/form-data":
        a, b = await _multipart_sides(request, model)
    else:
        raise UnsupportedBody(f"send application/json with two loaded names, or multipart/form-data with "
                              f"artifacts; got {kind or 'no content type'}")
    population = await asyncio.to_thread(model.population)
    result = await asyncio.to_thread(compare, a, b, population)
    return ComparisonOut(**result.to_dict(), null=population.null.to_dict())


@router.get("/matrix", responses={200: {"content": {"image/png": {}}, "description": "JSON, or PNG on "
                                        "Accept: image/png"}, **MATRIX_ERRORS},
            summary="Lineage of every pair of loaded generators (JSON, or a heatmap with Accept: image/png)")
async def lineage_matrix(request: Request, model: ModelDep) -> Response:
    view = await asyncio.to_thread(model.lineage)
    if _prefers_png(request.headers.get("accept", "")):
        return Response(view.png, media_type="image/png", headers={"Cache-Control": "no-cache"})
    population = view.population
    return JSONResponse({**view.matrix.to_dict(), "null": population.null.to_dict(),
                         "config": population.config.to_dict(), "model_version": model.version})


def _prefers_png(accept: str) -> bool:
    """True when the Accept header ranks image/png above JSON (no header, or */*, means JSON)."""
    ranks: dict[str, float] = {}
    for part in accept.split(","):
        fields = [f.strip() for f in part.split(";")]
        quality = 1.0
        for field in fields[1:]:
            if field.startswith("q="):
                try:
                    quality = float(field[2:])
                except ValueError:
                    quality = 0.0
        ranks[fields[0].lower()] = max(quality, ranks.get(fields[0].lower(), 0.0))
    png = max(ranks.get("image/png", 0.0), ranks.get("image/*", 0.0) * 0.99)
    return png > 0 and png >= ranks.get("application/json", 0.0)



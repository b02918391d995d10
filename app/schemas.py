"""Response bodies, as pydantic models so the OpenAPI page documents them."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, Field, WithJsonSchema

# (dy, dx). Documented as a two-integer array rather than the 3.1 `prefixItems` pydantic
# writes for a tuple: many OpenAPI tools (client generators, schemathesis 4.32) reject it.
Shift = Annotated[tuple[int, int], WithJsonSchema(
    {"type": "array", "items": {"type": "integer"}, "minItems": 2, "maxItems": 2})]


class ErrorDetail(BaseModel):
    code: str = Field(description="stable, machine-readable reason")
    message: str = Field(description="what went wrong and what to do")
    request_id: str | None = None


class ErrorBody(BaseModel):
    error: ErrorDetail


class GeneratorScoreOut(BaseModel):
    generator: str
    score: float = Field(description="calibrated probability in [0, 1] that this generator made the image")
    fake: bool = Field(description="score >= 0.5")
    correlation: float = Field(description="zero-shift Pearson correlation of the residual with the fingerprint")
    z: float = Field(description="correlation over this image's noise level")
    peak_z: float
    shift: Shift
    pce: float


class Timings(BaseModel):
    decode_queue_ms: float = Field(description="waiting for a free decode thread")
    decode_ms: float
    crop_ms: float
    queue_ms: float
    residual_ms: float = Field(description="residual extraction of the whole batch this image shared")
    scoring_ms: float = Field(description="scoring the whole batch against every generator")
    total_ms: float


class ImageResult(BaseModel):
    filename: str | None
    fake: bool = Field(description="true when any generator's score is >= 0.5")
    top: str = Field(description="generator with the highest score")
    top_score: float
    width: int
    height: int
    crops: int = Field(description="grid-aligned crops averaged for this image")
    batch_size: int = Field(description="images in the forward pass that scored this one")
    model_version: int = Field(description="loaded set that scored it (increments on each reload)")
    scores: list[GeneratorScoreOut] = Field(description="one entry per loaded generator")
    timings_ms: Timings


class DetectResponse(ImageResult):
    """Answer to an upload in the ``file`` field."""

    request_id: str


class DetectManyResponse(BaseModel):
    """Answer to uploads in the ``files`` field, in upload order."""

    request_id: str
    results: list[ImageResult]
    total_ms: float


class GeneratorOut(BaseModel):
    name: str
    crop_size: int
    extractor: dict[str, Any]
    detection: dict[str, Any]
    calibration: dict[str, Any]
    centres: dict[str, float] = Field(description="mean feature of real and of fake training images")
    crossval_accuracy: float | None = Field(description="balanced k-fold accuracy recorded by the trainer")
    metadata: dict[str, Any]


class GeneratorList(BaseModel):
    extractor: str
    crop_size: int
    model_version: int
    loaded_at: float
    generators: list[GeneratorOut]


class ReloadResponse(BaseModel):
    model_version: int
    generators: list[str]
    extractor: str
    seconds: float


class Health(BaseModel):
    status: str
    phase: str | None = None
    generators: int | None = None
    model_version: int | None = None


def error_responses(descriptions: dict[int, str]) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for a route: each status documented with the JSON error body."""
    return {status: {"model": ErrorBody, "description": text} for status, text in descriptions.items()}

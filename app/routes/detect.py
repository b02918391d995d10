"""``POST /detect``: score uploaded images against every loaded generator."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from typing import Annotated, TypeVar

from fastapi import APIRouter, Depends, Query, Request
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.admission import Admission
from app.batcher import Done
from app.deps import ServiceDep, require_api_key, require_ready
from app.engine import ImageScores, PreparedImage
from app.errors import ApiError, DeadlineExceeded, MalformedUpload, MissingFile, TooManyFiles
from app.schemas import (
    DetectManyResponse,
    DetectResponse,
    FileError,
    GeneratorScoreOut,
    ImageResult,
    ProvenanceOut,
    Timings,
    error_responses,
)
from app.service import Service
from dif.decision import MAX_RATE, MIN_RATE, OperatingPoint, check_rate
from dif.errors import DifError, InvalidRate
from dif.verdict import final_verdict

T = TypeVar("T")

ERRORS = error_responses({
        400: "corrupt or truncated image, or malformed multipart body",
        401: "missing or wrong X-API-Key",
        413: "body over DIF_MAX_UPLOAD_BYTES, image over DIF_MAX_PIXELS, or too many files",
        415: "not an image, or an unsupported format",
        422: "no file/files field, an image smaller than the crop size, or fpr out of range",
        429: "queue full: retry after the Retry-After header",
        500: "the forward pass failed (every request of that batch gets this)",
        503: "warming up or shutting down",
        504: "no answer within DIF_REQUEST_TIMEOUT_S",
})
# The body is parsed by hand (after authentication), so describe it for the OpenAPI page.
MULTIPART_BODY = {
    "requestBody": {
        "required": True,
        "content": {"multipart/form-data": {"schema": {
            "type": "object",
            "properties": {
                "file": {"type": "string", "format": "binary", "description": "one image"},
                "files": {"type": "array", "items": {"type": "string", "format": "binary"},
                          "description": "several images (up to DIF_MAX_FILES_PER_REQUEST)"},
                "fpr": {"type": "number", "minimum": MIN_RATE, "maximum": MAX_RATE,
                        "description": "false-positive rate for this request (same as the query parameter)"},
            },
        }}},
    }
}

router = APIRouter(tags=["detect"], dependencies=[Depends(require_api_key), Depends(require_ready)])


@dataclass(frozen=True)
class Upload:
    filename: str | None
    data: bytes


@dataclass(frozen=True)
class Uploads:
    files: list[Upload]
    many: bool  # sent as `files`: answer with a list
    fpr: str | None = None  # the `fpr` form field, unparsed


async def read_uploads(request: Request, service: ServiceDep) -> Uploads:
    """Parse the multipart body. Runs after the API-key check, so strangers cannot make us read bodies."""
    limit = service.settings.max_files_per_request
    try:
        form = await request.form(max_files=limit, max_fields=limit + 16)
    except StarletteHTTPException as exc:
        # Starlette reports every multipart fault as a 400; the file count deserves its own code.
        if "too many files" in str(exc.detail).lower():
            raise TooManyFiles(f"at most {limit} files per request (DIF_MAX_FILES_PER_REQUEST)") from exc
        raise MalformedUpload(f"cannot parse the multipart body: {exc.detail}") from exc
    try:
        single, several = form.getlist("file"), form.getlist("files")
        if single and several:
            raise MissingFile("send either one `file` field or `files` fields, not both")
        if not single and not several:
            raise MissingFile("multipart/form-data with an image in the `file` field (or several in `files`) "
                              "is required")
        if len(single) > 1:
            raise MissingFile("the `file` field takes one image; use `files` for several")
        fields = several or single
        if len(fields) > limit:
            raise TooManyFiles(f"at most {limit} files per request (DIF_MAX_FILES_PER_REQUEST)")
        uploads = [await _read(value, "files" if several else "file") for value in fields]
        rates = [value for value in form.getlist("fpr") if isinstance(value, str)]
        if len(rates) != len(form.getlist("fpr")) or len(rates) > 1:
            raise InvalidRate("send the `fpr` field once, as a number (e.g. 0.01)")
    finally:
        await form.close()
    return Uploads(uploads, many=bool(several), fpr=rates[0] if rates else None)


async def _read(value: UploadFile | str, field: str) -> Upload:
    if not isinstance(value, UploadFile):
        raise MissingFile(f"the `{field}` field must be a file upload, not a text value")
    return Upload(value.filename, await value.read())


UploadsDep = Annotated[Uploads, Depends(read_uploads)]
# A string, checked by us: an out-of-range rate is refused with the same 422 and message as the form field's.
FprQuery = Annotated[str | None, Query(
    description=f"false-positive rate for this request, {MIN_RATE:g} to {MAX_RATE:g} "
                "(default DIF_FALSE_POSITIVE_RATE); also accepted as a form field")]


def operating_point(service: Service, query: str | None, form: str | None) -> OperatingPoint:
    """The request's own rate (query or form field, not both), or the service's."""
    if query is not None and form is not None:
        raise InvalidRate("give fpr as a query parameter or as a form field, not both")
    raw = query if query is not None else form
    return service.settings.operating_point(None if raw is None else check_rate(raw, "fpr"))


@router.post("/detect", response_model=DetectResponse | DetectManyResponse, responses=ERRORS,
             openapi_extra=MULTIPART_BODY, summary="Score images against every loaded generator")
async def detect(request: Request, service: ServiceDep, uploads: UploadsDep, fpr: FprQuery = None
                 ) -> DetectResponse | DetectManyResponse:
    started: float = request.state.started_at
    deadline = started + service.settings.request_timeout_s
    point = operating_point(service, fpr, uploads.fpr)
    with service.batcher.admit(len(uploads.files)) as admission:
        scored = await _before(deadline, _score_all(service, uploads.files, deadline, admission, point), service)
    # A lone upload, or a request whose every file failed, is answered with the (first) file's error, so a
    # client that checks only the HTTP status still sees the 4xx.
    if not uploads.many or all(isinstance(outcome, Exception) for outcome in scored):
        _raise_first_error(scored)
    total_ms = _ms(time.monotonic() - started)
    results = [_result(upload, outcome, total_ms, service) if not isinstance(outcome, Exception)
               else _failed(upload, outcome, service)
               for upload, outcome in zip(uploads.files, scored, strict=True)]
    request_id: str = request.state.request_id
    if uploads.many:
        return DetectManyResponse(request_id=request_id, results=results, total_ms=total_ms)
    return DetectResponse(**results[0].model_dump(), request_id=request_id)


Scored = tuple[PreparedImage, Done[ImageScores]]
# A file's own failure (it is not an image, its batch failed...): the other files of the request go on.
FileFailure = ApiError | DifError


async def _score_all(service: Service, uploads: Sequence[Upload], deadline: float, admission: Admission,
                     point: OperatingPoint) -> list[Scored | FileFailure]:
    """Each upload's scores or its own failure, in upload order."""
    prepared = await _each([_prepare(service, u, point) for u in uploads])
    # Submitted together so a request's images share a forward pass.
    futures = {i: service.batcher.submit(item, deadline, admission)
               for i, item in enumerate(prepared) if not isinstance(item, Exception)}
    done = dict(zip(futures, await _each(list(futures.values())), strict=True))
    outcomes: list[Scored | FileFailure] = []
    for i, item in enumerate(prepared):
        if isinstance(item, Exception):
            outcomes.append(item)
            continue
        result = done[i]
        outcomes.append(result if isinstance(result, Exception) else (item, result))
    return outcomes


async def _each(awaitables: Sequence[Awaitable[T]]) -> list[T | FileFailure]:
    """Wait for all; a file's own failure is returned in its place, anything else (a bug) is raised."""
    outcomes = await asyncio.gather(*awaitables, return_exceptions=True)
    for outcome in outcomes:
        if isinstance(outcome, BaseException) and not isinstance(outcome, ApiError | DifError):
            raise outcome
    return list(outcomes)  # type: ignore[arg-type]


def _raise_first_error(outcomes: Sequence[Scored | FileFailure]) -> None:
    for outcome in outcomes:
        if isinstance(outcome, Exception):
            raise outcome


async def _prepare(service: Service, upload: Upload, point: OperatingPoint) -> PreparedImage:
    try:
        item = await service.prepare(upload.data, point, upload.filename)
    except DifError as exc:
        service.metrics.decode_failures.labels(reason=exc.code).inc()
        if upload.filename:
            raise type(exc)(f"{upload.filename}: {exc}") from exc
        raise
    service.metrics.preprocess.labels(stage="decode_queue").observe(item.decode_wait_s)
    service.metrics.preprocess.labels(stage="decode").observe(item.decode_s)
    service.metrics.preprocess.labels(stage="crop").observe(item.crop_s)
    if item.provenance is not None:
        service.metrics.preprocess.labels(stage="provenance").observe(item.provenance_s)
        service.metrics.observe_provenance(item.provenance)
    return item


async def _before(deadline: float, work: Awaitable[T], service: Service) -> T:
    try:
        return await asyncio.wait_for(work, max(deadline - time.monotonic(), 0.0))
    except asyncio.TimeoutError:
        raise DeadlineExceeded(f"no answer within {service.settings.request_timeout_s:g}s "
                               "(DIF_REQUEST_TIMEOUT_S); the service is overloaded") from None


def _failed(upload: Upload, failure: FileFailure, service: Service) -> ImageResult:
    """The entry of a file that was not scored. Counted as a rejection, as it is when it fails a request alone."""
    status, message = failure.status, str(failure)
    if status < 500:  # server faults are counted where they happen (batch failures)
        service.metrics.rejections.labels(reason=failure.code).inc()
    return ImageResult(filename=upload.filename, status=status, error=FileError(code=failure.code, message=message))


def _result(upload: Upload, scored: Scored, total_ms: float, service: Service) -> ImageResult:
    item, done = scored
    verdict = done.value.verdict
    decision = final_verdict(verdict, item.provenance)
    for s in verdict.generators:
        service.metrics.detections.labels(generator=s.generator, verdict="fake" if s.fake else "real").inc()
    service.metrics.images.labels(verdict=decision.verdict).inc()
    if item.provenance is not None and item.provenance.decisive:
        service.metrics.provenance_decisive.labels(fingerprint_verdict=verdict.verdict).inc()
    timings = Timings(decode_queue_ms=_ms(item.decode_wait_s), decode_ms=_ms(item.decode_s),
                      provenance_ms=_ms(item.provenance_s), crop_ms=_ms(item.crop_s),
                      queue_ms=_ms(done.queue_wait_s), residual_ms=_ms(done.value.residual_s),
                      scoring_ms=_ms(done.value.scoring_s), total_ms=total_ms)
    top = next((s for s in verdict.generators if s.generator == decision.top), None)
    return ImageResult(
        filename=upload.filename, verdict=decision.verdict, fake=decision.fake, evidence=decision.evidence,
        top=decision.top, candidates=decision.candidates,
        top_score=None if top is None else top.score, p_value=verdict.p_value, false_positive_rate=verdict.rate,
        width=item.prepared.width, height=item.prepared.height, crops=len(item.prepared.positions),
        batch_size=done.batch_size, model_version=done.value.model_version,
        scores=[GeneratorScoreOut(generator=s.generator, p_value=s.p_value, score=s.score, fake=s.fake,
                                  statistic=s.statistic, correlation=s.correlation, z=s.z, peak_z=s.peak_z,
                                  shift=s.shift, pce=s.pce, grid_cosine=s.grid_cosine)
                for s in verdict.generators],
        provenance=None if item.provenance is None else ProvenanceOut.model_validate(item.provenance.to_dict()),
        timings_ms=timings,
    )


def _ms(seconds: float) -> float:
    return round(seconds * 1000.0, 3)

"""A Python client for the DIF service, on httpx alone (no torch, no FastAPI, no pydantic).

    from dif.client import Client

    with Client("http://localhost:8000", api_key="change-me") as dif:
        for result in dif.detect([Path("a.png"), open("b.jpg", "rb").read()]):
            print(result.filename, result.status, result.verdict, result.top)

``detect`` always sends the ``files`` field, so each image answers for itself (``status``,
``error``); a request that fails as a whole (wrong key, too many files, every file bad...)
raises ``DifClientError``. A 429 is retried after its ``Retry-After`` (at most 30 s a wait,
at most ``retries`` times).
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

# A path (Path, or str naming a file) or the image's bytes.
ImageInput = Path | str | bytes

MAX_RETRY_WAIT_S = 30.0


class DifClientError(Exception):
    """The service refused the request (``status`` its HTTP status, ``code`` its stable reason), or could
    not be reached (``status`` 0)."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message


@dataclass(frozen=True)
class FileError:
    code: str
    message: str


@dataclass(frozen=True)
class GeneratorScore:
    generator: str
    p_value: float
    score: float
    fake: bool
    statistic: float
    correlation: float
    z: float
    peak_z: float
    shift: tuple[int, int]
    pce: float
    grid_cosine: float | None = None  # lattice fingerprints with a backstop (README, "What a verdict means")


@dataclass(frozen=True)
class DetectResult:
    """One image's answer (README, "What a verdict means"). A failed image has ``status`` >= 400, ``error``
    set and ``None`` (or empty) everywhere else; ``raw`` is the whole JSON entry (provenance, timings)."""

    filename: str | None
    status: int
    error: FileError | None
    verdict: str | None
    fake: bool | None
    evidence: str | None
    top: str | None
    candidates: tuple[str, ...]
    top_score: float | None
    p_value: float | None
    false_positive_rate: float | None
    width: int | None
    height: int | None
    model_version: int | None
    scores: tuple[GeneratorScore, ...]
    raw: Mapping[str, Any] = field(repr=False, compare=False)

    @property
    def ok(self) -> bool:
        return self.error is None and self.status == 200


@dataclass(frozen=True)
class GeneratorInfo:
    name: str
    crop_size: int
    crossval_accuracy: float | None
    tpr_at_fpr: Mapping[str, float | None]
    tpr_at_operating_point: float | None
    weak: bool | None
    raw: Mapping[str, Any] = field(repr=False, compare=False)


@dataclass(frozen=True)
class LineageResult:
    a: str
    b: str
    related: bool
    similarity: float
    threshold: float
    p_value: float
    shift: tuple[int, int]
    hypothesis: str
    correlation: float
    pce: float
    population: int
    warnings: tuple[str, ...]
    raw: Mapping[str, Any] = field(repr=False, compare=False)


class Client:
    """``Client(url, api_key=None, timeout=30.0, retries=3)``; close it, or use it as a context manager."""

    # Replaceable so a test can record the waits instead of sitting through them.
    sleep: Callable[[float], None] = staticmethod(time.sleep)

    def __init__(self, url: str, api_key: str | None = None, timeout: float = 30.0, retries: int = 3):
        if retries < 0:
            raise ValueError(f"retries must be at least 0, not {retries}")
        headers = {"X-API-Key": api_key} if api_key else {}
        self.retries = retries
        self._http = httpx.Client(base_url=url.rstrip("/"), headers=headers, timeout=timeout)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def detect(self, images: Sequence[ImageInput], fpr: float | None = None) -> list[DetectResult]:
        """Score ``images`` (at most the server's DIF_MAX_FILES_PER_REQUEST) in one request, in order."""
        if isinstance(images, bytes | str | Path):
            raise TypeError("detect takes a list of images: detect([image])")
        if not images:
            raise ValueError("detect needs at least one image")
        files = [("files", _named(image, i)) for i, image in enumerate(images)]
        params = {} if fpr is None else {"fpr": str(fpr)}
        body = self._request("POST", "/detect", files=files, params=params)
        return [_detect_result(entry) for entry in body["results"]]

    def generators(self) -> list[GeneratorInfo]:
        body = self._request("GET", "/generators")
        return [_generator_info(entry) for entry in body["generators"]]

    def lineage(self, a: str | Path, b: str | Path) -> LineageResult:
        """Is ``b`` derived from ``a``? A str names a loaded generator; a Path is an artifact archive
        (.zip or .tar of the artifact folder, README "What goes in my-generator.zip") to upload."""
        if isinstance(a, str) and isinstance(b, str):
            body = self._request("POST", "/lineage", json={"a": a, "b": b})
        else:
            names = {side: value for side, value in (("a", a), ("b", b)) if isinstance(value, str)}
            uploads = [(side, (value.name, value.read_bytes())) for side, value in (("a", a), ("b", b))
                       if isinstance(value, Path)]
            body = self._request("POST", "/lineage", data=names, files=uploads)
        return _lineage_result(body)

    def _request(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        for attempt in range(self.retries + 1):
            try:
                response = self._http.request(method, path, **kwargs)
            except httpx.TransportError as exc:
                raise DifClientError(0, "unreachable", f"{self._http.base_url}{path}: {exc}") from exc
            if response.status_code == 429 and attempt < self.retries:
                self.sleep(retry_after_s(response.headers.get("Retry-After")))
                continue
            if response.is_success:
                return response.json()  # type: ignore[no-any-return]
            raise _error_of(response)
        raise AssertionError("unreachable: the last attempt returns or raises")


def retry_after_s(header: str | None, now: datetime | None = None) -> float:
    """Seconds to wait for a ``Retry-After`` (delta-seconds or HTTP-date), between 0 and 30: a server's
    hint, not a licence to stall the caller indefinitely. 1 s when absent or unreadable."""
    if header is None:
        return 1.0
    try:
        wait = float(header)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(header)
        except (TypeError, ValueError):
            return 1.0
        wait = (when - (now or datetime.now(timezone.utc))).total_seconds()
    if wait != wait:  # NaN
        return 1.0
    return min(max(wait, 0.0), MAX_RETRY_WAIT_S)


def _named(image: ImageInput, index: int) -> tuple[str, bytes]:
    if isinstance(image, bytes):
        return f"image-{index}", image
    path = Path(image)
    return path.name, path.read_bytes()


def _error_of(response: httpx.Response) -> DifClientError:
    try:
        error = response.json()["error"]
        return DifClientError(response.status_code, str(error["code"]), str(error["message"]))
    except (ValueError, KeyError, TypeError):  # not our error shape: a proxy's page, say
        return DifClientError(response.status_code, "http_error", response.text[:200])


def _detect_result(entry: Mapping[str, Any]) -> DetectResult:
    error = entry.get("error")
    return DetectResult(
        filename=entry.get("filename"), status=int(entry.get("status", 200)),
        error=None if error is None else FileError(code=error["code"], message=error["message"]),
        verdict=entry.get("verdict"), fake=entry.get("fake"), evidence=entry.get("evidence"), top=entry.get("top"),
        candidates=tuple(entry.get("candidates") or ()), top_score=entry.get("top_score"),
        p_value=entry.get("p_value"), false_positive_rate=entry.get("false_positive_rate"),
        width=entry.get("width"), height=entry.get("height"), model_version=entry.get("model_version"),
        scores=tuple(_score(s) for s in entry.get("scores") or ()), raw=entry,
    )


def _score(entry: Mapping[str, Any]) -> GeneratorScore:
    dy, dx = entry["shift"]
    return GeneratorScore(
        generator=entry["generator"], p_value=entry["p_value"], score=entry["score"], fake=entry["fake"],
        statistic=entry["statistic"], correlation=entry["correlation"], z=entry["z"], peak_z=entry["peak_z"],
        shift=(int(dy), int(dx)), pce=entry["pce"], grid_cosine=entry.get("grid_cosine"),
    )


def _generator_info(entry: Mapping[str, Any]) -> GeneratorInfo:
    return GeneratorInfo(
        name=entry["name"], crop_size=entry["crop_size"], crossval_accuracy=entry.get("crossval_accuracy"),
        tpr_at_fpr=dict(entry.get("tpr_at_fpr") or {}), tpr_at_operating_point=entry.get("tpr_at_operating_point"),
        weak=entry.get("weak"), raw=entry,
    )


def _lineage_result(entry: Mapping[str, Any]) -> LineageResult:
    dy, dx = entry["shift"]
    return LineageResult(
        a=entry["a"], b=entry["b"], related=entry["related"], similarity=entry["similarity"],
        threshold=entry["threshold"], p_value=entry["p_value"], shift=(int(dy), int(dx)),
        hypothesis=entry["hypothesis"], correlation=entry["correlation"], pce=entry["pce"],
        population=entry["population"], warnings=tuple(entry.get("warnings") or ()), raw=entry,
    )

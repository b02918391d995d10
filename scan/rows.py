"""One file -> one row: what ``dif detect`` prints and ``dif scan`` writes, and the code that fills it.

Both runners call ``decode`` (file bytes -> crops and declared provenance, or an error) and
``score`` (a batch through ``Detector.predict`` at one operating point), so a row depends on
the image, the set and the rate, never on which runner or which batch it went through.
A file that cannot be scored becomes a row with ``error_code``/``error`` and empty scores:
a collection always has a few, and one must never end the run.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from dif import __version__
from dif.decision import DEFAULT_INCONCLUSIVE_RATE, OperatingPoint, check_rate
from dif.detector import Detector, ImageVerdict, Prepared
from dif.errors import DifError
from dif.fingerprint_set import FingerprintSet, default_fingerprints_dir, load_fingerprint_set
from dif.images import DEFAULT_MAX_PIXELS, decode_image
from dif.provenance import Provenance, read_provenance
from dif.verdict import combined

log = logging.getLogger("scan")

# Fixed columns, in output order; each generator adds ``p_value_<name>`` and ``score_<name>``
# after ``rate`` (see ``columns``). Types are Parquet's (scan.cluster.schema).
LEADING = ("path", "size", "width", "height", "crops", "verdict", "fake", "evidence", "top", "candidates", "p_value",
           "rate")
TRAILING = ("error_code", "error", "c2pa_state", "c2pa_trust", "declared_ai", "declared_generator", "declared_by",
            "provenance_validated", "provenance_decisive", "model_version", "extractor", "fingerprints_digest")


def columns(generators: Sequence[str]) -> list[str]:
    per_generator = [f"{kind}_{name}" for kind in ("p_value", "score") for name in generators]
    return [*LEADING, *per_generator, *TRAILING]


def load_set(fingerprints: str | None, extractor_dir: str | None) -> FingerprintSet:
    """The set the options name, else the one the service would load from its environment."""
    weights = extractor_dir or os.environ.get("DIF_EXTRACTOR_DIR") or None
    return load_fingerprint_set(fingerprints or default_fingerprints_dir(), weights)


def operating_point(rate: float | str) -> OperatingPoint:
    """The rate asked for, with the inconclusive band kept at least as loose (as the service does)."""
    chosen = check_rate(cast(float, rate), "--fpr")  # it parses text too, with the service's message
    return OperatingPoint(chosen, max(chosen, DEFAULT_INCONCLUSIVE_RATE))


@dataclass(frozen=True)
class Stamp:
    """What every row of one run shares: which code and which set decided it."""

    generators: tuple[str, ...]
    extractor: str
    fingerprints_digest: str
    model_version: str = __version__

    @classmethod
    def of(cls, loaded: FingerprintSet) -> Stamp:
        return cls(tuple(fp.name for fp in loaded.fingerprints), loaded.extractor_key, loaded.digest)


@dataclass(frozen=True)
class Decoded:
    """A file read, decoded and cut for the set, or the reason it could not be."""

    path: str
    size: int | None
    prepared: Prepared | None = None
    provenance: dict[str, Any] = field(default_factory=lambda: provenance_columns(None))  # its columns
    error_code: str | None = None
    error: str | None = None


@dataclass(frozen=True)
class DecodeOptions:
    max_pixels: int = DEFAULT_MAX_PIXELS
    trust_anchors: str | None = None  # PEM bundle: C2PA signers chaining to these count as trusted


def decode(path: str, data: bytes, detector: Detector, options: DecodeOptions) -> Decoded:
    """Crops of ``data`` as the service cuts them, and its declared provenance. Never raises."""
    # Provenance first: read_provenance never raises, so a file too small or corrupt to score
    # still reports what it declares.
    provenance = provenance_columns(read_provenance(data, filename=path, trust_anchors=options.trust_anchors))
    try:
        prepared = detector.prepare(decode_image(data, options.max_pixels))
    except DifError as exc:
        return Decoded(path, len(data), provenance=provenance, error_code=exc.code, error=str(exc))
    except Exception as exc:  # a decoder bug on one file must not end a scan of millions
        log.warning("%s: unexpected %s while decoding", path, type(exc).__name__, exc_info=True)
        return Decoded(path, len(data), provenance=provenance, error_code="decode_failed",
                       error=f"{type(exc).__name__}: {exc}")
    return Decoded(path, len(data), prepared=prepared, provenance=provenance)


def unreadable(path: str, exc: OSError) -> Decoded:
    return Decoded(path, None, error_code="unreadable", error=f"cannot read the file: {exc.strerror or exc}")


def score(detector: Detector, items: Sequence[Decoded], point: OperatingPoint, stamp: Stamp
          ) -> list[dict[str, Any]]:
    """Rows for ``items``: one forward pass for those that decoded, the error for the others."""
    ready = [i for i, item in enumerate(items) if item.prepared is not None]
    verdicts: dict[int, ImageVerdict] = {}
    failure: str | None = None
    if ready:
        try:
            prediction = detector.predict([items[i].prepared for i in ready], point)  # type: ignore[misc]
            verdicts = dict(zip(ready, prediction.images, strict=True))
        except Exception as exc:  # e.g. out of GPU memory: this batch's rows say so, the scan goes on
            log.error("forward pass of %d images failed", len(ready), exc_info=True)
            failure = f"{type(exc).__name__}: {exc}"
    rows = []
    for i, item in enumerate(items):
        verdict = verdicts.get(i)
        if verdict is None and item.prepared is not None:
            item = Decoded(item.path, item.size, item.prepared, item.provenance, "forward_failed", failure)
        rows.append(row(item, verdict, stamp))
    return rows


def row(item: Decoded, verdict: ImageVerdict | None, stamp: Stamp) -> dict[str, Any]:
    """The row of one file: ``verdict`` is None when it could not be scored."""
    out: dict[str, Any] = {"path": item.path, "size": item.size, "width": None, "height": None, "crops": None}
    if item.prepared is not None:
        out.update(width=item.prepared.width, height=item.prepared.height, crops=len(item.prepared.positions))
    by_name = {s.generator: s for s in verdict.generators} if verdict else {}
    # The service's rule (dif.verdict): a decisive provenance declaration makes the row fake too.
    final = combined(verdict, bool(item.provenance.get("provenance_decisive")),
                     item.provenance.get("declared_generator")) if verdict else None
    out.update(verdict=final.verdict if final else None, fake=final.fake if final else None,
               evidence=final.evidence if final else None,
               top=final.top if final else None, candidates=list(final.candidates) if final else None,
               p_value=verdict.p_value if verdict else None, rate=verdict.rate if verdict else None)
    for name in stamp.generators:
        out[f"p_value_{name}"] = by_name[name].p_value if verdict else None
    for name in stamp.generators:
        out[f"score_{name}"] = by_name[name].score if verdict else None
    out.update(error_code=item.error_code, error=item.error)
    out.update(item.provenance)
    out.update(model_version=stamp.model_version, extractor=stamp.extractor,
               fingerprints_digest=stamp.fingerprints_digest)
    return out


def provenance_columns(found: Provenance | None) -> dict[str, Any]:
    if found is None:
        return {"c2pa_state": None, "c2pa_trust": None, "declared_ai": None, "declared_generator": None,
                "declared_by": None, "provenance_validated": None, "provenance_decisive": None}
    return {"c2pa_state": found.c2pa.state, "c2pa_trust": found.c2pa.trust, "declared_ai": found.declared_ai,
            "declared_generator": found.declared_generator, "declared_by": found.declared_by,
            "provenance_validated": found.validated, "provenance_decisive": found.decisive}

"""The loaded fingerprint set and the forward pass the batcher runs.

``ModelSet`` is immutable once built: a reload builds and warms a new one, then
replaces ``Engine.current`` in one assignment. Every prepared image keeps a
reference to the set whose crop geometry it was cut for, and is scored by that
same set, so requests in flight during a swap finish on the set they started with.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from app.errors import GeneratorNotFound
from dif import devices
from dif.artifact import Fingerprint
from dif.decision import OperatingPoint
from dif.detector import Detector, ImageVerdict, Prepared
from dif.fingerprint_set import load_fingerprint_set
from dif.images import decode_image
from dif.lineage import LineageMatrix, Population, matrix
from dif.provenance import Provenance, read_provenance
from dif.render import fingerprint_image, lineage_heatmap, png_bytes, spectrum_image

log = logging.getLogger("app.engine")


def resolve_device(name: str) -> torch.device:
    return devices.resolve_device(name, "DIF_DEVICE")


@dataclass(frozen=True)
class LineageView:
    """The loaded set as a lineage population, every pair of it, and that matrix's heatmap."""

    population: Population
    matrix: LineageMatrix
    png: bytes


@dataclass(eq=False)
class ModelSet:
    """One loaded set and what is derived from it on first use (pictures, lineage), which lives
    and dies with it: a reload starts from nothing."""

    detector: Detector
    extractor_key: str
    version: int
    source: Path
    loaded_at: float = field(default_factory=time.time)
    _pngs: dict[tuple[str, str], bytes] = field(default_factory=dict, repr=False)
    _population: Population | None = field(default=None, repr=False)
    _lineage: LineageView | None = field(default=None, repr=False)
    # Building the lineage null takes seconds; concurrent first requests wait for one build.
    _lineage_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def names(self) -> list[str]:
        return self.detector.names

    @property
    def fingerprints(self) -> list[Fingerprint]:
        return self.detector.fingerprints

    def find(self, name: str) -> Fingerprint:
        """The loaded generator of that name; a 404 naming the loaded ones when there is none."""
        fp = next((fp for fp in self.fingerprints if fp.name == name), None)
        if fp is None:
            raise GeneratorNotFound(f"no generator named {name!r}; loaded: {', '.join(self.names)}")
        return fp

    def png(self, fp: Fingerprint, kind: str) -> bytes:
        """``fingerprint`` or ``spectrum`` rendering, made once per loaded set."""
        key = (fp.name, kind)
        if key not in self._pngs:
            render = fingerprint_image if kind == "fingerprint" else spectrum_image
            self._pngs[key] = png_bytes(render(fp.tensor))
        return self._pngs[key]

    def population(self) -> Population:
        """The set as the population that calibrates lineage decisions (blocking: call from a thread)."""
        with self._lineage_lock:
            if self._population is None:
                population = Population(self.fingerprints)
                _ = population.null  # pay for the null once, here, not in a request that happens to be first
                self._population = population
            return self._population

    def lineage(self) -> LineageView:
        """Every pair of the set and its heatmap (blocking)."""
        population = self.population()
        with self._lineage_lock:
            if self._lineage is None:
                result = matrix(self.fingerprints, population)
                self._lineage = LineageView(population, result, png_bytes(lineage_heatmap(result, population.config)))
            return self._lineage


def load_model_set(root: Path, extractor_dir: Path | None, device: torch.device, version: int,
                   precision: str = "fp32") -> ModelSet:
    """Load and validate every artifact under ``root`` onto ``device`` (blocking: call from a thread)."""
    loaded = load_fingerprint_set(root, extractor_dir)
    detector = Detector(loaded.fingerprints, loaded.extractor, device, precision=precision)
    return ModelSet(detector=detector, extractor_key=loaded.extractor_key, version=version, source=Path(root))


@dataclass(frozen=True)
class PreparedImage:
    """An upload decoded and cropped (off the event loop), tied to the set that will score it."""

    model: ModelSet
    prepared: Prepared
    point: OperatingPoint  # the rate this image's request asked for (images of one batch may differ)
    decode_wait_s: float  # waiting for a free decode thread
    decode_s: float
    crop_s: float
    provenance: Provenance | None = None  # None when DIF_PROVENANCE is off
    provenance_s: float = 0.0


@dataclass(frozen=True)
class ImageScores:
    verdict: ImageVerdict
    model_version: int
    residual_s: float  # of the whole forward pass this image shared
    scoring_s: float


class Engine:
    """Holds the current ``ModelSet``; prepares uploads and runs forward passes."""

    def __init__(self, fingerprints_dir: Path, extractor_dir: Path | None, device: torch.device, max_pixels: int,
                 precision: str = "fp32", provenance: bool = True, trust_anchors: str | None = None):
        self.precision = precision
        self.provenance = provenance
        self.trust_anchors = trust_anchors  # PEM bundle, checked at start-up
        self.fingerprints_dir = fingerprints_dir
        self.extractor_dir = extractor_dir
        self.device = device
        self.max_pixels = max_pixels
        self._current: ModelSet | None = None
        self._versions = 0

    @property
    def current(self) -> ModelSet:
        if self._current is None:
            raise RuntimeError("no fingerprint set is loaded yet")
        return self._current

    @property
    def loaded(self) -> bool:
        return self._current is not None

    def load(self) -> ModelSet:
        """Build a new set from disk without installing it (blocking). One load at a time (start-up, then
        reloads under the service's reload lock), so the next number is free until ``install`` takes it."""
        started = time.perf_counter()
        model = load_model_set(self.fingerprints_dir, self.extractor_dir, self.device, self._versions + 1,
                               self.precision)
        log.info("loaded %d fingerprints (%s) from %s on %s (%s) in %.2fs", len(model.names), model.extractor_key,
                 self.fingerprints_dir, self.device, "bf16" if model.detector.low_precision else "fp32",
                 time.perf_counter() - started)
        return model

    def install(self, model: ModelSet) -> None:
        # One reference assignment: readers see the old set or the new one, never a mix.
        self._current = model
        # Counted only when swapped in: a reload that fails to load or to warm up must not use up a number.
        self._versions = model.version

    def prepare(self, data: bytes, submitted_at: float, point: OperatingPoint,
                filename: str | None = None) -> PreparedImage:
        """Decode, read provenance, cut crops (blocking CPU work for the decode pool; ``submitted_at`` is
        perf_counter). ``filename`` only hints the container to the provenance reader."""
        model = self.current
        t0 = time.perf_counter()
        image = decode_image(data, self.max_pixels)
        t1 = time.perf_counter()
        provenance, provenance_s = self._read_provenance(data, filename)
        t2 = time.perf_counter()
        prepared = model.detector.prepare(image)
        return PreparedImage(model, prepared, point, t0 - submitted_at, t1 - t0, time.perf_counter() - t2,
                             provenance, provenance_s)

    def _read_provenance(self, data: bytes, filename: str | None) -> tuple[Provenance | None, float]:
        # Called after decoding, so an upload refused there costs nothing more. Never raises on any bytes.
        if not self.provenance:
            return None, 0.0
        started = time.perf_counter()
        found = read_provenance(data, filename=filename, trust_anchors=self.trust_anchors)
        return found, time.perf_counter() - started

    def run_batch(self, items: list[PreparedImage]) -> list[ImageScores]:
        """Score a batch (blocking, inference thread). Images cut for different sets are scored by their own."""
        groups: dict[int, list[int]] = {}
        for index, item in enumerate(items):
            groups.setdefault(id(item.model), []).append(index)
        results: list[ImageScores | None] = [None] * len(items)
        for indices in groups.values():
            model = items[indices[0]].model
            scored = forward(model, [items[i].prepared for i in indices], [items[i].point for i in indices])
            for index, result in zip(indices, scored, strict=True):
                results[index] = result
        return [r for r in results if r is not None]

    def warm_up(self, model: ModelSet, batch_sizes: tuple[int, ...] = (1, 2)) -> float:
        """Run the set on synthetic images so the first real request pays no one-off costs.

        Returns the seconds per image of the last (already warm) pass: a first estimate of the
        forward cost for admission, before any real batch has been timed.
        """
        size = model.detector.crop_size
        generator = torch.Generator().manual_seed(0)
        image = torch.rand((3, size * 2, size * 2), generator=generator)
        prepared = model.detector.prepare(image)
        per_image_s = 0.0
        for count in batch_sizes:
            started = time.perf_counter()
            forward(model, [prepared] * count)
            per_image_s = (time.perf_counter() - started) / count
        return per_image_s


def forward(model: ModelSet, batch: list[Prepared], points: list[OperatingPoint] | None = None
            ) -> list[ImageScores]:
    """One ``Detector.predict`` (residuals in this device's chunks), tagged with the set's version."""
    prediction = model.detector.predict(batch, points)
    return [ImageScores(image, model.version, prediction.residual_s, prediction.scoring_s)
            for image in prediction.images]

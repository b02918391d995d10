"""One forward pass for a batch of images against every loaded fingerprint.

Each crop's residual is extracted once; all generators are scored together by
``CorrelationScorer``. The service's batcher and the trainer's evaluation both
go through the same scorer, so what is measured is what is served.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from dif.artifact import Fingerprint
from dif.decision import Decisions, OperatingPoint, backstopped, decide, gated, p_values
from dif.errors import ArtifactError
from dif.extractors import ResidualExtractor
from dif.images import grid_crops
from dif.scoring import CorrelationScorer, Scores

PRECISIONS = ("fp32", "bf16")
# Crops per residual chunk. On a CPU a chunk's activations must stay in cache: with the default
# filter, one thread, 0.39 ms a crop in chunks of 2, 0.52 in 1, 0.54 in 4, 0.50 in 8 (2-core dev
# machine, the filter as shifted adds; as a convolution it was 2.2 / 2.9 / 5.7 in 2 / 4 / 8; a
# 17x64 DnCNN is no slower in 2s than in 8s). A GPU wants big chunks.
CPU_RESIDUAL_CHUNK, DEVICE_RESIDUAL_CHUNK = 2, 64
# Crops a CPU takes from pixels to scores before it starts on the batch's next images. A whole
# batch's float crops, residuals and standardized copies are each ~50 MB at 16 images of 4 crops,
# far past the cache: one thread, ms per image (residual + scoring) at batch 16, 1 / 13
# generators, 15.7 / 15.5 taken whole, 8.2 / 9.3 in steps of 8 crops (the same as at batch 1).
# A GPU takes the batch at once.
CPU_STREAM_CROPS = 8


def residual_chunk(device: torch.device) -> int:
    return CPU_RESIDUAL_CHUNK if device.type == "cpu" else DEVICE_RESIDUAL_CHUNK


@dataclass(frozen=True)
class Prepared:
    """An image cut into grid-aligned crops, ready for the batch (made off the event loop)."""

    crops: torch.Tensor  # [K, 3, S, S]: uint8 (value x 255) when that is exact, else float32 in [0, 1]
    positions: list[tuple[int, int]]
    height: int
    width: int


@dataclass(frozen=True)
class GeneratorScore:
    generator: str
    p_value: float  # how often a real photo scores at least this high against this generator
    score: float  # evidence in [0, 1]; >= 0.5 exactly when fake (dif.decision)
    fake: bool  # at the operating point, family-wise over the loaded set
    statistic: float  # what the decision is taken on (z, or peak_z with a shift window), oriented
    correlation: float  # zero-shift Pearson of the crop-averaged residual
    z: float  # correlation over its noise level
    peak_z: float
    shift: tuple[int, int]
    pce: float
    # Cosine of the image's periodic pattern with a lattice fingerprint at ``shift`` (None: not a
    # lattice with a window); its shift search counts only from its min_cosine up (Detection.gated).
    grid_cosine: float | None = None


@dataclass(frozen=True)
class ImageVerdict:
    verdict: str  # fake | inconclusive | real
    fake: bool
    top: str | None  # the generator blamed: None when none passes, or when related ones are too close to tell
    candidates: list[str]  # of a fake: the generators that may have made it, strongest first
    p_value: float  # family-wise: smallest per-generator p-value times the number of generators, at most 1
    rate: float  # false-positive rate the decision was taken at
    generators: list[GeneratorScore]


@dataclass(frozen=True)
class Prediction:
    """A batch's verdicts and the wall time of its two stages (shared by every image of the batch)."""

    images: list[ImageVerdict]
    residual_s: float
    scoring_s: float


def compact(crops: torch.Tensor) -> torch.Tensor:
    """8-bit crops as uint8: a queued image then holds a quarter of the memory (and crosses to a GPU in a quarter).

    Exact, not a rounding: only crops whose every value is k / 255 (what decoding an 8-bit
    image gives) are packed, and ``expand`` rebuilds the identical float32 values.
    """
    packed = (crops * 255.0).round_().clamp_(0, 255).to(torch.uint8)
    return packed if torch.equal(expand(packed), crops) else crops


def expand(crops: torch.Tensor) -> torch.Tensor:
    """Inverse of ``compact``: float32 in [0, 1] (the same float32 division the decoder does)."""
    return crops.float() / 255.0 if crops.dtype == torch.uint8 else crops


def extract_residuals(extractor: ResidualExtractor, crops: torch.Tensor, chunk: int = 64) -> torch.Tensor:
    """Residuals of ``[N, 3, S, S]`` crops in chunks, without autograd."""
    with torch.inference_mode():
        parts = [extractor(crops[i : i + chunk]) for i in range(0, crops.shape[0], chunk)]
    return torch.cat(parts) if parts else crops


class Detector:
    """Fingerprints stacked on one device with the extractor that made them."""

    def __init__(self, fingerprints: list[Fingerprint], extractor: ResidualExtractor,
                 device: torch.device | str = "cpu", precision: str = "fp32", pin_memory: bool = True):
        if not fingerprints:
            raise ArtifactError("no fingerprints to load; train one with `dif train` or point at a folder of artifacts")
        sizes = {f.crop_size for f in fingerprints}
        if len(sizes) != 1:
            raise ArtifactError(f"all fingerprints must share one crop size, found {sorted(sizes)}")
        self.device = torch.device(device)
        self.fingerprints = fingerprints
        self.names = [f.name for f in fingerprints]
        self.crop_size = sizes.pop()
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
        # bf16 only where it pays and is safe: a learned extractor (see ResidualExtractor.learned).
        self.low_precision = precision == "bf16" and extractor.learned
        self.memory_format = torch.channels_last if self.low_precision else torch.contiguous_format
        # Module.to takes memory_format at run time; torch's type stubs leave it out.
        self.extractor = extractor.to(self.device, memory_format=self.memory_format).eval()  # type: ignore[call-overload]
        self.pin_memory = pin_memory and self.device.type == "cuda"
        self._staging: torch.Tensor | None = None
        self._staged: torch.cuda.Event | None = None
        self.max_crops = max(f.detection.max_crops for f in fingerprints)
        self.align = max(f.detection.align for f in fingerprints)
        stack = torch.stack([f.tensor for f in fingerprints]).to(self.device)
        shifts = torch.tensor([f.detection.window for f in fingerprints])
        self.scorer = CorrelationScorer(stack, max_shift=shifts.to(self.device),
                                        background=torch.tensor([f.detection.statistic == "zbg" for f in fingerprints]),
                                        lattice=torch.tensor([f.detection.lattice for f in fingerprints]))
        # Each generator's null, as [G] rows for one vectorised p-value per batch (on the CPU: [N, G] is tiny).
        self.statistics = [f.detection.statistic for f in fingerprints]
        self.null_sign = torch.tensor([f.null_model.sign for f in fingerprints], dtype=torch.float64)
        self.null_scale = torch.tensor([f.null_model.scale for f in fingerprints], dtype=torch.float64)
        self.null_searched = torch.tensor([f.detection.searched for f in fingerprints], dtype=torch.float64)
        self.backstop = torch.tensor([f.detection.backstop for f in fingerprints])
        self.backstop_statistics = [f.detection.backstop_statistic for f in fingerprints]
        self.backstop_scale = torch.tensor([f.null_model.backstop_scale for f in fingerprints], dtype=torch.float64)
        self.backstop_searched = torch.tensor([f.detection.backstop_searched for f in fingerprints],
                                              dtype=torch.float64)
        self.min_cosine = torch.tensor([f.detection.min_cosine if f.detection.gated else 0.0 for f in fingerprints],
                                       dtype=torch.float64)
        self.floor_cosine = torch.tensor([f.detection.floor_cosine if f.detection.floored else 0.0
                                          for f in fingerprints], dtype=torch.float64)

    def prepare(self, image: torch.Tensor, max_crops: int | None = None) -> Prepared:
        crops, positions = grid_crops(image, self.crop_size, max_crops or self.max_crops, self.align)
        return Prepared(crops=compact(crops), positions=positions, height=image.shape[1], width=image.shape[2])

    def residuals(self, batch: list[Prepared], chunk: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Stage one: every crop's residual, once, with the index of the image it came from (``chunk`` crops
        at a time; by default this device's ``residual_chunk``)."""
        parts = [p.crops for p in batch]
        if any(part.dtype != parts[0].dtype for part in parts):
            parts = [expand(part) for part in parts]
        crops = expand(self._to_device(parts)).contiguous(memory_format=self.memory_format)
        groups = torch.cat([torch.full((len(p.positions),), i, dtype=torch.long) for i, p in enumerate(batch)])
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.low_precision):
            residuals = extract_residuals(self.extractor, crops, chunk or residual_chunk(self.device))
        return residuals.float(), groups.to(self.device)

    def _to_device(self, parts: list[torch.Tensor]) -> torch.Tensor:
        """The batch's crops on the device; on a GPU through a reused page-locked buffer.

        From pageable memory the copy is synchronous and staged by the driver; from a
        pinned buffer it is one DMA that overlaps with the host's next work.
        """
        if not self.pin_memory:
            return torch.cat(parts).to(self.device)
        count = sum(p.shape[0] for p in parts)
        if self._staged is not None:
            self._staged.synchronize()  # the previous batch's copy must be done before the buffer is reused
        staging = self._staging
        if (staging is None or staging.shape[0] < count or staging.shape[1:] != parts[0].shape[1:]
                or staging.dtype != parts[0].dtype):
            staging = torch.empty((count, *parts[0].shape[1:]), dtype=parts[0].dtype, pin_memory=True)
            self._staging = staging
        staged = torch.cat(parts, out=staging[:count])
        on_device = staged.to(self.device, non_blocking=True)
        self._staged = torch.cuda.Event()
        self._staged.record()
        return on_device

    def scores(self, batch: list[Prepared], chunk: int | None = None) -> Scores:
        return self._timed_scores(batch, chunk)[0]

    def _timed_scores(self, batch: list[Prepared], chunk: int | None) -> tuple[Scores, float, float]:
        """Every image's scores, and the seconds spent on residuals and on scoring. On a CPU the
        batch goes through in steps of about ``CPU_STREAM_CROPS`` crops (why: there)."""
        parts: list[Scores] = []
        residual_s = scoring_s = 0.0
        for step in self._steps(batch):
            t0 = time.perf_counter()
            residuals, groups = self.residuals(step, chunk)
            _sync(self.device)
            t1 = time.perf_counter()
            with torch.inference_mode():
                parts.append(self.scorer.score(residuals, groups, len(step)))
            residual_s, scoring_s = residual_s + t1 - t0, scoring_s + time.perf_counter() - t1
        return (parts[0] if len(parts) == 1 else Scores.cat(parts)), residual_s, scoring_s

    def _steps(self, batch: list[Prepared]) -> list[list[Prepared]]:
        """Consecutive runs of whole images, each up to ``CPU_STREAM_CROPS`` crops (at least one image)."""
        if self.device.type != "cpu" or not batch:
            return [batch]
        steps: list[list[Prepared]] = []
        crops = CPU_STREAM_CROPS
        for prepared in batch:
            if crops + prepared.crops.shape[0] > CPU_STREAM_CROPS:
                steps.append([])
                crops = 0
            steps[-1].append(prepared)
            crops += prepared.crops.shape[0]
        return steps

    def p_values(self, scores: Scores) -> torch.Tensor:
        """``[N, G]`` p-values of every image against every generator's null."""
        s = scores.cpu()
        return self._null_p(s, s.pick(self.statistics))

    def _null_p(self, s: Scores, picked: torch.Tensor) -> torch.Tensor:
        p = p_values(picked, self.null_sign, self.null_scale, self.null_searched)
        if not bool(self.backstop.any()):
            return p
        searched = p_values(s.pick(self.backstop_statistics), self.null_sign, self.backstop_scale,
                            self.backstop_searched)
        return backstopped(gated(p, s.grid_cosine, self.floor_cosine), gated(searched, s.grid_cosine, self.min_cosine),
                           self.backstop)

    def predict(self, batch: list[Prepared], points: Sequence[OperatingPoint] | OperatingPoint | None = None,
                chunk: int | None = None) -> Prediction:
        """The one forward path (service, ``dif eval``, benchmarks): residuals once, then every generator.

        ``points``: one operating point for the batch, or one per image (requests may ask for
        their own rate and still share a forward pass).
        """
        if points is None or isinstance(points, OperatingPoint):
            per_image = [points or OperatingPoint()] * len(batch)
        else:
            per_image = list(points)
        scores, residual_s, scoring_s = self._timed_scores(batch, chunk)
        t0 = time.perf_counter()
        images = self.explain(scores, per_image)  # moves results to the CPU, so the device is done here
        return Prediction(images, residual_s, scoring_s + time.perf_counter() - t0)

    def explain(self, scores: Scores, points: Sequence[OperatingPoint]) -> list[ImageVerdict]:
        """Verdicts from raw statistics, vectorised over ``[N, G]``."""
        s = scores.cpu()
        picked = s.pick(self.statistics)
        decisions = decide(self._null_p(s, picked), points)
        statistic = picked.double() * self.null_sign
        return [self._verdict(i, s, statistic, decisions, points[i].rate) for i in range(s.z.shape[0])]

    def _verdict(self, i: int, s: Scores, statistic: torch.Tensor, d: Decisions, rate: float) -> ImageVerdict:
        rows = zip(self.names, d.p_value[i].tolist(), d.score[i].tolist(), d.fake[i].tolist(),
                   statistic[i].tolist(), s.correlation[i].tolist(), s.z[i].tolist(), s.peak_z[i].tolist(),
                   s.shift[i].tolist(), s.pce[i].tolist(), s.grid_cosine[i].tolist(), strict=True)
        generators = [GeneratorScore(generator=name, p_value=p, score=score, fake=fake, statistic=stat,
                                     correlation=corr, z=z, peak_z=pz, shift=(int(sh[0]), int(sh[1])), pce=pce,
                                     grid_cosine=None if math.isnan(cos) else cos)
                      for name, p, score, fake, stat, corr, z, pz, sh, pce, cos in rows]
        top = d.top[i]
        return ImageVerdict(verdict=d.verdict[i], fake=d.verdict[i] == "fake",
                            top=None if top is None else self.names[top],
                            candidates=[self.names[g] for g in d.candidates[i]], p_value=float(d.family_p[i]),
                            rate=rate, generators=generators)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)

"""One forward pass for a batch of images against every loaded fingerprint.

Each crop's residual is extracted once; all generators are scored together by
``CorrelationScorer``. The service's batcher and the trainer's evaluation both
go through the same scorer, so what is measured is what is served.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from dif.artifact import Fingerprint
from dif.errors import ArtifactError
from dif.extractors import ResidualExtractor
from dif.images import grid_crops
from dif.scoring import CorrelationScorer, Scores

PRECISIONS = ("fp32", "bf16")


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
    score: float
    fake: bool
    correlation: float  # zero-shift Pearson of the crop-averaged residual
    z: float  # correlation over its noise level
    peak_z: float
    shift: tuple[int, int]
    pce: float


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
        shifts = torch.tensor([f.detection.max_shift if f.detection.feature in ("peak", "peak_z") else 0
                               for f in fingerprints])
        self.scorer = CorrelationScorer(stack, max_shift=shifts.to(self.device))

    def prepare(self, image: torch.Tensor, max_crops: int | None = None) -> Prepared:
        crops, positions = grid_crops(image, self.crop_size, max_crops or self.max_crops, self.align)
        return Prepared(crops=compact(crops), positions=positions, height=image.shape[1], width=image.shape[2])

    def residuals(self, batch: list[Prepared], chunk: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
        """Stage one: every crop's residual, once, with the index of the image it came from."""
        parts = [p.crops for p in batch]
        if any(part.dtype != parts[0].dtype for part in parts):
            parts = [expand(part) for part in parts]
        crops = expand(self._to_device(parts)).contiguous(memory_format=self.memory_format)
        groups = torch.cat([torch.full((len(p.positions),), i, dtype=torch.long) for i, p in enumerate(batch)])
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.low_precision):
            residuals = extract_residuals(self.extractor, crops, chunk)
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

    def scores(self, batch: list[Prepared]) -> Scores:
        residuals, groups = self.residuals(batch)
        return self.scorer.score(residuals, groups, len(batch))

    def detect(self, batch: list[Prepared]) -> list[list[GeneratorScore]]:
        return self.explain(self.scores(batch))

    def explain(self, scores: Scores) -> list[list[GeneratorScore]]:
        """Calibrated per-generator results from raw statistics."""
        s = Scores(*(t.cpu() for t in (scores.correlation, scores.z, scores.peak, scores.peak_z, scores.shift,
                                         scores.pce)))
        results: list[list[GeneratorScore]] = []
        for i in range(s.z.shape[0]):
            row = []
            for g, fp in enumerate(self.fingerprints):
                prob = float(fp.calibration.score(s.feature(fp.detection.feature)[i, g]))
                row.append(GeneratorScore(
                    generator=fp.name, score=prob, fake=prob >= 0.5, correlation=float(s.correlation[i, g]),
                    z=float(s.z[i, g]), peak_z=float(s.peak_z[i, g]),
                    shift=(int(s.shift[i, g, 0]), int(s.shift[i, g, 1])), pce=float(s.pce[i, g]),
                ))
            results.append(row)
        return results

"""From cached residuals to a calibrated fingerprint, and from a fingerprint to image scores."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from dif.artifact import Detection
from dif.calibration import Calibration, fit
from dif.scoring import CorrelationScorer
from training.data import FAKE, REAL, ResidualCache
from training.trainer import TrainConfig, train_fingerprint


@dataclass(frozen=True)
class FitConfig:
    train: TrainConfig = TrainConfig()
    detection: Detection = Detection()
    calibration: str = "inner-cv"  # or "train": centres from the training images themselves
    inner_folds: int = 3
    augment_jpeg: tuple[int, ...] = ()  # JPEG qualities of extra training copies (robustness, no JPEG shortcut)


def image_features(fingerprint: torch.Tensor, cache: ResidualCache, detection: Detection,
                   device: torch.device, images: list[int] | None = None, chunk: int = 64) -> torch.Tensor:
    """The detector's feature for ``images`` of ``cache`` (default: all), with the service's maths.

    Images are scored ``chunk`` at a time, so only that many images' crops are ever copied.
    """
    chosen = list(range(len(cache.labels))) if images is None else images
    shift = detection.max_shift if detection.feature in ("peak", "peak_z") else 0
    scorer = CorrelationScorer(fingerprint[None].to(device), max_shift=shift)
    out = torch.empty(len(chosen))
    for start in range(0, len(chosen), chunk):
        part = cache.subset(chosen[start : start + chunk])
        count = len(part.labels)
        scores = scorer.score(part.residuals.to(device, torch.float32), part.image_of_crop.to(device), count,
                              with_z=detection.feature in ("z", "peak_z"))
        out[start : start + count] = scores.feature(detection.feature)[:, 0].cpu()
    return out


def stratified_folds(labels: list[int] | torch.Tensor, folds: int, seed: int) -> list[list[int]]:
    """Image indices of each fold; each class is shuffled and dealt round-robin."""
    labels = torch.as_tensor(labels)
    gen = torch.Generator().manual_seed(seed)
    buckets: list[list[int]] = [[] for _ in range(folds)]
    for label in (REAL, FAKE):
        members = torch.nonzero(labels == label).flatten()
        members = members[torch.randperm(len(members), generator=gen)]
        for position, index in enumerate(members.tolist()):
            buckets[position % folds].append(index)
    return [sorted(b) for b in buckets]


def _train_on(cache: ResidualCache, images: list[int], config: FitConfig, device: torch.device,
              progress: bool) -> torch.Tensor:
    return train_fingerprint(cache.class_crops(images, REAL), cache.class_crops(images, FAKE),
                             config.train, device, progress)


def fit_fingerprint(cache: ResidualCache, images: list[int], config: FitConfig, device: torch.device,
                    progress: bool = True) -> tuple[torch.Tensor, Calibration]:
    """Train on ``images`` of the cache and calibrate the decision.

    With ``inner-cv`` the centres come from images the fingerprint did not see
    (an inner k-fold over the training images): centres fitted on training
    images sit too far apart and put the threshold out of reach of new fakes.
    """
    fingerprint = _train_on(cache, images, config, device, progress)
    labels = cache.labels[images]
    inner = min(config.inner_folds, int((labels == REAL).sum()), int((labels == FAKE).sum()))
    if config.calibration == "train" or inner < 2:
        feats = image_features(fingerprint, cache, config.detection, device, images)
        return fingerprint, fit(feats[labels == REAL], feats[labels == FAKE], "train")
    feats = torch.empty(len(images))
    for held in stratified_folds(labels, inner, config.train.seed + 1):
        out = set(held)
        kept = [images[i] for i in range(len(images)) if i not in out]
        inner_fp = _train_on(cache, kept, config, device, progress=False)
        feats[held] = image_features(inner_fp, cache, config.detection, device, [images[i] for i in held])
    return fingerprint, fit(feats[labels == REAL], feats[labels == FAKE], f"inner-cv-{inner}")

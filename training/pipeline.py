"""From cached residuals to a fingerprint with its null model, and from a fingerprint to p-values."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from dif.artifact import Detection
from dif.calibration import Calibration, fit
from dif.decision import NullModel, fit_null, p_values
from dif.scoring import CorrelationScorer
from training.data import FAKE, REAL, ResidualCache
from training.trainer import TrainConfig, train_fingerprint


@dataclass(frozen=True)
class FitConfig:
    train: TrainConfig = TrainConfig()
    detection: Detection = Detection()
    # "inner-cv": the null's tail correction (and the recorded centres) from images the fingerprint
    # did not see; "train": no inner folds, theory's N(0, 1) null and centres of the training images.
    calibration: str = "inner-cv"
    inner_folds: int = 3
    augment_jpeg: tuple[int, ...] = ()  # JPEG qualities of extra training copies (robustness, no JPEG shortcut)


def image_statistic(fingerprint: torch.Tensor, cache: ResidualCache, detection: Detection,
                    device: torch.device, images: list[int] | None = None, chunk: int = 64) -> torch.Tensor:
    """The statistic decisions are taken on (``Detection.statistic``) for ``images`` of ``cache``.

    The service's maths on cached residuals; images are scored ``chunk`` at a time, so only
    that many images' crops are ever copied.
    """
    chosen = list(range(len(cache.labels))) if images is None else images
    scorer = CorrelationScorer(fingerprint[None].to(device), max_shift=detection.window)
    out = torch.empty(len(chosen))
    for start in range(0, len(chosen), chunk):
        part = cache.subset(chosen[start : start + chunk])
        count = len(part.labels)
        scores = scorer.score(part.residuals.to(device, torch.float32), part.image_of_crop.to(device), count)
        out[start : start + count] = scores.feature(detection.statistic)[:, 0].cpu()
    return out


@dataclass(frozen=True)
class Scored:
    """One fingerprint's decision quantities for a set of images."""

    p: torch.Tensor  # per-image p-values: what the rule decides on
    units: torch.Tensor  # the statistic in null units (sign x stat / scale): ranks images for AUC,
    # where a shift search's p-values all round to 1 in the bulk of the distribution

    def __getitem__(self, mask: torch.Tensor) -> Scored:
        return Scored(self.p[mask], self.units[mask])

    @staticmethod
    def cat(parts: list[Scored]) -> Scored:
        return Scored(torch.cat([s.p for s in parts]), torch.cat([s.units for s in parts]))


def null_scored(statistic: torch.Tensor, null: NullModel, detection: Detection) -> Scored:
    """p-values of one fingerprint's statistic by ``dif.decision.p_values``, and its null units."""
    def one(value: float) -> torch.Tensor:
        return torch.tensor([value], dtype=torch.float64)

    p = p_values(statistic[:, None], one(null.sign), one(null.scale), one(detection.searched))[:, 0]
    return Scored(p, statistic.double() * null.sign / null.scale)


def score_cache(fingerprint: torch.Tensor, null: NullModel, cache: ResidualCache, detection: Detection,
                device: torch.device, images: list[int] | None = None) -> Scored:
    return null_scored(image_statistic(fingerprint, cache, detection, device, images), null, detection)


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


@dataclass(frozen=True)
class Fitted:
    fingerprint: torch.Tensor
    calibration: Calibration  # centres and spreads of the statistic (informational, for people and lineage)
    null: NullModel


def fit_fingerprint(cache: ResidualCache, images: list[int], config: FitConfig, device: torch.device,
                    progress: bool = True) -> Fitted:
    """Train on ``images`` of the cache and fit the null model its decisions are taken with.

    With ``inner-cv`` the statistic of every training image is measured with a fingerprint
    that did not see it (an inner k-fold): the held-out reals widen the null where they
    spread more than N(0, 1). Training images themselves correlate with their own
    fingerprint and would say nothing about unseen photos.
    """
    fingerprint = _train_on(cache, images, config, device, progress)
    labels = cache.labels[images]
    inner = min(config.inner_folds, int((labels == REAL).sum()), int((labels == FAKE).sum()))
    if config.calibration == "train" or inner < 2:
        stats = image_statistic(fingerprint, cache, config.detection, device, images)
        return Fitted(fingerprint, fit(stats[labels == REAL], stats[labels == FAKE], "train"), NullModel())
    stats = torch.empty(len(images))
    for held in stratified_folds(labels, inner, config.train.seed + 1):
        out = set(held)
        kept = [images[i] for i in range(len(images)) if i not in out]
        inner_fp = _train_on(cache, kept, config, device, progress=False)
        stats[held] = image_statistic(inner_fp, cache, config.detection, device, [images[i] for i in held])
    calibration = fit(stats[labels == REAL], stats[labels == FAKE], f"inner-cv-{inner}")
    return Fitted(fingerprint, calibration, fit_null(stats[labels == REAL]))

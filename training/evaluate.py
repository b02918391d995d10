"""Evaluation of one artifact, and stratified k-fold cross-validation, at stated false-positive rates.

Every figure is taken with the service's own rule (``dif.decision``): a fingerprint's p-value
against ``rate / family_size``, family_size being the number of generators the service splits
the rate over. TPR counts fakes the fingerprint never trained on; FPR counts real photos it never
trained on (``--reals`` pools, disjoint from training by content).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from dif.artifact import Fingerprint
from dif.decision import DEFAULT_RATE, REPORTED_RATES, OperatingPoint, detection_rate, rate_key
from dif.detector import Detector, ImageVerdict
from dif.errors import DatasetError
from dif.extractors import ResidualExtractor
from dif.images import decode_image
from training.data import (
    REAL,
    LabelledImages,
    ResidualCache,
    build_cache,
    build_training_cache,
    file_digest,
    images_in,
    scan,
    with_extra_reals,
)
from training.metrics import roc_auc, wilson
from training.perturb import jpeg, null_transforms
from training.pipeline import DEFAULT_FAMILY_SIZE, FitConfig, Scored, fit_fingerprint, score_cache, stratified_folds


def real_pool(folders: list[Path], leave_out: frozenset[Path] = frozenset()) -> LabelledImages:
    """Every image of ``folders`` but ``leave_out``, labelled real (a pool of photos no fingerprint trains on)."""
    paths = [p for folder in folders
             for p in images_in(folder, f"--reals {folder} is not a folder of real photos",
                                f"--reals {folder} holds no images") if p not in leave_out]
    return LabelledImages(paths, [REAL] * len(paths))


def null_photos(null_reals: list[Path], reals: list[Path]) -> list[Path]:
    """The photos that fit the null only. A folder named both here and as ``--reals`` is split
    by name, every other photo to each, so the false-positive rate is still measured on photos
    that neither trained the fingerprint nor fitted its null."""
    chosen: list[Path] = []
    for folder in null_reals:
        found = images_in(folder, f"--null-reals {folder} is not a folder of real photos",
                          f"--null-reals {folder} holds no images")
        chosen += found[::2] if folder.resolve() in {r.resolve() for r in reals} else found
    return chosen


def check_disjoint(pool: LabelledImages, training: LabelledImages) -> None:
    """Refuse a real-photo pool that shares an image (by content) with the training images."""
    def digests(paths: list[Path]) -> dict[str, Path]:
        return {file_digest(p): p for p in paths}

    in_pool = digests(pool.paths)
    shared = in_pool.keys() & digests(training.paths).keys()
    if shared:
        example = in_pool[next(iter(shared))]
        raise DatasetError(f"{len(shared)} --reals image(s) also train the fingerprint (e.g. {example}); "
                           "a false-positive rate must be measured on photos it never saw")


def check_folds(labels: list[int], folds: int) -> None:
    """Every fold must hold at least one image of each class, or its figures are NaN."""
    smaller = min(labels.count(REAL), len(labels) - labels.count(REAL))
    if not 2 <= folds <= smaller:
        raise DatasetError(f"--folds must be between 2 and the size of the smaller class ({smaller}), not {folds}")


def rate_report(fake_p: torch.Tensor, real_p: torch.Tensor, family_size: int,
                real_photos: int | None = None) -> dict[str, Any]:
    """TPR of ``fake_p`` and FPR of ``real_p`` at every reported rate, with 95 % Wilson intervals.

    ``real_photos``: how many distinct photos ``real_p`` holds when each was scored by several
    fold fingerprints; the FPR interval counts photos, not correlated re-scorings of them.
    """
    report: dict[str, Any] = {"tpr_at_fpr": {}, "tpr_interval": {}, "fpr_at": {}, "fpr_interval": {}}
    photos = real_photos or real_p.numel()
    for rate in REPORTED_RATES:
        key = rate_key(rate)
        tpr, fpr = detection_rate(fake_p, rate, family_size), detection_rate(real_p, rate, family_size)
        report["tpr_at_fpr"][key], report["fpr_at"][key] = tpr, fpr
        report["tpr_interval"][key] = wilson(round(tpr * fake_p.numel()), fake_p.numel())
        report["fpr_interval"][key] = wilson(round(fpr * photos), photos)
    return report


def auc_of(fake: Scored, real: Scored) -> float:
    """AUC of fakes against reals, ranked in null units (comparable across fold fingerprints)."""
    return roc_auc(torch.cat([fake.units, real.units]),
                   torch.cat([torch.ones(len(fake.units)), torch.zeros(len(real.units))]))


def balanced(fake_p: torch.Tensor, real_p: torch.Tensor, family_size: int) -> dict[str, float]:
    """Balanced accuracy at the default operating point (kept for comparison with older figures)."""
    fake = detection_rate(fake_p, DEFAULT_RATE, family_size)
    real = 1.0 - detection_rate(real_p, DEFAULT_RATE, family_size)
    return {"accuracy": (fake + real) / 2, "accuracy_fake": fake, "accuracy_real": real}


def predict_files(detector: Detector, paths: list[Path],
                  transform: Callable[[torch.Tensor], torch.Tensor] | None = None, batch: int = 8,
                  progress: bool = False) -> Iterator[ImageVerdict]:
    """Verdicts for image files through ``Detector.predict`` (the service's path), ``batch`` at a time;
    ``transform`` perturbs each decoded image first (robustness and false-positive benches)."""
    for start in tqdm(range(0, len(paths), batch), desc="images", unit="batch", disable=not progress):
        prepared = []
        for path in paths[start : start + batch]:
            image = decode_image(path)
            prepared.append(detector.prepare(transform(image) if transform is not None else image))
        yield from detector.predict(prepared, OperatingPoint()).images


def predict_scored(fp: Fingerprint, extractor: ResidualExtractor, paths: list[Path], device: torch.device,
                   transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
                   progress: bool = True) -> Scored:
    """Per-image p-values of ``fp`` on ``paths``, and its statistic in null units."""
    verdicts = [v.generators[0] for v in predict_files(Detector([fp], extractor, device), paths, transform,
                                                       progress=progress)]
    return Scored(torch.tensor([g.p_value for g in verdicts], dtype=torch.float64),
                  torch.tensor([g.statistic for g in verdicts], dtype=torch.float64) / fp.null_model.scale)


def evaluate(fp: Fingerprint, extractor: ResidualExtractor, data_dir: Path, device: torch.device,
             transform: Callable[[torch.Tensor], torch.Tensor] | None = None, progress: bool = True,
             reals: list[Path] | None = None, family_size: int = DEFAULT_FAMILY_SIZE) -> dict[str, Any]:
    """TPR on DATA_DIR's fakes; FPR on the ``reals`` pool when given, else on DATA_DIR's reals."""
    images = scan(data_dir)
    labels = torch.tensor(images.labels)
    scored = predict_scored(fp, extractor, images.paths, device, transform, progress=progress)
    fake, data_real = scored[labels == 1], scored[labels == 0]
    pool = real_pool(reals) if reals else None
    unseen = predict_scored(fp, extractor, pool.paths, device, transform, progress=progress) if pool else data_real
    return {
        **balanced(fake.p, data_real.p, family_size),
        "auc": auc_of(fake, data_real),
        "auc_unseen_reals": auc_of(fake, unseen),
        **rate_report(fake.p, unseen.p, family_size),
        "n_real": len(data_real.p), "n_fake": len(fake.p), "n_unseen_reals": len(unseen.p) if pool else 0,
        "family_size": family_size,
    }


def evaluate_cache(fp: Fingerprint, cache: ResidualCache, device: torch.device,
                   family_size: int = DEFAULT_FAMILY_SIZE) -> dict[str, Any]:
    """The same figures on already-extracted residuals (lineage's cross-detection)."""
    scored = score_cache(fp.tensor, fp.null_model, cache, fp.detection, device)
    fake, real = scored[cache.labels == 1], scored[cache.labels == 0]
    return {**balanced(fake.p, real.p, family_size), "auc": auc_of(fake, real),
            **rate_report(fake.p, real.p, family_size), "n_real": len(real.p), "n_fake": len(fake.p)}


def crossval_cache(cache: ResidualCache, config: FitConfig, folds: int, device: torch.device,
                   seed: int = 0, progress: bool = True, test_cache: ResidualCache | None = None,
                   evaluated: int | None = None, reals: ResidualCache | None = None,
                   family_size: int = DEFAULT_FAMILY_SIZE, null_only: list[int] | None = None) -> dict[str, Any]:
    """Train on k-1 folds, test on the held-out one, with the service's rule.

    ``test_cache`` (the same images, perturbed) measures robustness. Only the first
    ``evaluated`` images are split into folds; any after them (pooled extra reals) are always in
    training. ``reals``: a pool of photos that no fold trains on, scored by every fold's
    fingerprint (its FPR is ``fpr_at``; without it, the held-out reals' FPR is). ``null_only``:
    images of the cache that only ever fit the null (``fit_fingerprint``), never train.
    """
    count = len(cache.labels) if evaluated is None else evaluated
    check_folds(cache.labels[:count].tolist(), folds)
    started = time.perf_counter()
    test_source = test_cache if test_cache is not None else cache
    fold_reports: list[dict[str, Any]] = []
    fakes: list[Scored] = []
    reals_held: list[Scored] = []
    pool_scored: list[Scored] = []
    for k, held in enumerate(tqdm(stratified_folds(cache.labels[:count], folds, seed), desc="folds",
                                  unit="fold", disable=not progress)):
        out = set(held) | set(null_only or [])
        train = [i for i in range(len(cache.labels)) if i not in out]
        fitted = fit_fingerprint(cache, train, replace(config, train=replace(config.train, seed=seed + k)),
                                 device, progress=False, null_only=null_only)
        scored = score_cache(fitted.fingerprint, fitted.null, test_source, fitted.detection, device, held)
        labels = test_source.labels[held]
        fakes.append(scored[labels == 1])
        reals_held.append(scored[labels == 0])
        if reals is not None:
            pool_scored.append(score_cache(fitted.fingerprint, fitted.null, reals, fitted.detection, device))
        fold_reports.append({"auc": auc_of(fakes[-1], reals_held[-1]), "n_fake": int((labels == 1).sum()),
                             "n_real": int((labels == 0).sum()), "null_scale": fitted.null.scale,
                             "estimator": fitted.estimator["name"],
                             "tpr_at_fpr": {rate_key(r): detection_rate(fakes[-1].p, r, family_size)
                                            for r in REPORTED_RATES}})
    fake, real = Scored.cat(fakes), Scored.cat(reals_held)
    unseen = Scored.cat(pool_scored) if pool_scored else real
    summary: dict[str, Any] = {
        **balanced(fake.p, real.p, family_size),
        "auc": sum(r["auc"] for r in fold_reports) / len(fold_reports),
        "auc_pooled": auc_of(fake, real),
        "auc_unseen_reals": auc_of(fake, unseen),
        **rate_report(fake.p, unseen.p, family_size, len(reals.labels) if reals is not None else None),
        "fpr_heldout_reals": {rate_key(r): detection_rate(real.p, r, family_size) for r in REPORTED_RATES},
        "family_size": family_size,
        # Per-generator p-values of the held-out fakes: the service re-derives TPR for the rate
        # and the number of generators it actually runs with.
        "heldout_fake_p": [float(f"{v:.6g}") for v in fake.p.tolist()],
        "n_real": int((cache.labels[:count] == 0).sum()),
        "n_fake": int((cache.labels[:count] == 1).sum()),
        "n_unseen_reals": len(reals.labels) if reals is not None else 0,
        "extra_training_reals": len(cache.labels) - count,
        "folds": fold_reports,
        "seconds": round(time.perf_counter() - started, 2),
    }
    return summary


def pool_cache(reals: list[Path], training: LabelledImages, extractor: ResidualExtractor, config: FitConfig,
               device: torch.device, crop: int = 256, progress: bool = True,
               leave_out: frozenset[Path] = frozenset()) -> ResidualCache | None:
    """Residuals of the ``--reals`` pool but ``leave_out``, after checking that none of it trains the fingerprint
    (``training``: every image the fingerprint or its null is fitted on)."""
    if not reals:
        return None
    pool = real_pool(reals, leave_out)
    check_disjoint(pool, training)
    return build_cache(pool, extractor, crop, config.detection.max_crops, config.detection.align, device,
                       progress=progress)


@dataclass
class Prepared:
    """A generator folder's residuals, ready to fit and cross-validate."""

    own: LabelledImages  # DATA_DIR's images: the only ones split into folds
    trained: LabelledImages  # own + extra reals: what the fingerprint trains on
    null_photos: list[Path]  # photos that only widen the null
    cache: ResidualCache  # trained + null photos, in that order, with their copies
    pool: ResidualCache | None  # the --reals photos it never saw

    @property
    def training(self) -> list[int]:
        return list(range(len(self.trained.labels)))

    @property
    def null_only(self) -> list[int]:
        return list(range(len(self.trained.labels), len(self.cache.labels)))


def prepare(data_dir: Path, extractor: ResidualExtractor, config: FitConfig, device: torch.device,
            crop: int = 256, progress: bool = True, extra_real: list[Path] | None = None,
            reals: list[Path] | None = None, null_reals: list[Path] | None = None) -> Prepared:
    """Scan, check and extract once: ``extra_real`` folders only ever add training reals, ``null_reals``
    only widen the null (one also given as ``reals`` is split), ``reals`` are never fitted on."""
    own = scan(data_dir)
    trained = with_extra_reals(own, extra_real or [])
    outsiders = null_photos(null_reals or [], reals or [])
    fitted_on = LabelledImages(trained.paths + outsiders, trained.labels + [REAL] * len(outsiders))
    pool = pool_cache(reals or [], fitted_on, extractor, config, device, crop, progress, frozenset(outsiders))
    cache = build_training_cache(fitted_on, extractor, crop, config.detection.max_crops, config.detection.align,
                                 device, [jpeg(q) for q in config.augment_jpeg], progress,
                                 null_transforms(config.null_variants))
    return Prepared(own, trained, outsiders, cache, pool)


def crossval(data_dir: Path, extractor: ResidualExtractor, config: FitConfig, folds: int,
             device: torch.device, seed: int = 0, crop: int = 256, progress: bool = True,
             extra_real: list[Path] | None = None, reals: list[Path] | None = None,
             family_size: int = DEFAULT_FAMILY_SIZE, null_reals: list[Path] | None = None) -> dict[str, Any]:
    """k-fold on DATA_DIR's images (``prepare`` says what the other folders are for)."""
    check_folds(scan(data_dir).labels, folds)
    data = prepare(data_dir, extractor, config, device, crop, progress, extra_real, reals, null_reals)
    return crossval_cache(data.cache, config, folds, device, seed, progress, evaluated=len(data.own.labels),
                          reals=data.pool, family_size=family_size, null_only=data.null_only)

"""Evaluation of one artifact on a labelled folder, and stratified k-fold cross-validation."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from dif.artifact import Fingerprint
from dif.extractors import ResidualExtractor
from training.data import ResidualCache, build_cache, build_training_cache, scan, with_extra_reals
from training.metrics import binary_report, roc_auc
from training.perturb import jpeg
from training.pipeline import FitConfig, fit_fingerprint, image_features, stratified_folds


def evaluate_cache(fp: Fingerprint, cache: ResidualCache, device: torch.device) -> dict[str, Any]:
    feats = image_features(fp.tensor, cache, fp.detection, device)
    scores = fp.calibration.score(feats)
    report = binary_report(scores, cache.labels)
    report["auc"] = roc_auc(feats * (1 if fp.calibration.slope >= 0 else -1), cache.labels)
    return report


def evaluate(fp: Fingerprint, extractor: ResidualExtractor, data_dir: Path, device: torch.device,
             transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
             progress: bool = True) -> dict[str, Any]:
    images = scan(data_dir)
    cache = build_cache(images, extractor, fp.crop_size, fp.detection.max_crops, fp.detection.align,
                        device, transform, progress)
    return evaluate_cache(fp, cache, device)


def crossval_cache(cache: ResidualCache, config: FitConfig, folds: int, device: torch.device,
                   seed: int = 0, progress: bool = True, test_cache: ResidualCache | None = None,
                   evaluated: int | None = None) -> dict[str, Any]:
    """Train on k-1 folds, test on the held-out one.

    ``test_cache`` (the same images, perturbed) measures robustness. Only the
    first ``evaluated`` images are split into folds; any after them (pooled
    extra reals) are always in training.
    """
    started = time.perf_counter()
    fold_reports, all_scores, all_labels = [], [], []
    test_source = test_cache if test_cache is not None else cache
    count = len(cache.labels) if evaluated is None else evaluated
    splits = stratified_folds(cache.labels[:count], folds, seed)
    for k, held in enumerate(tqdm(splits, desc="folds", unit="fold", disable=not progress)):
        out = set(held)
        train = [i for i in range(len(cache.labels)) if i not in out]
        fp, cal = fit_fingerprint(cache, train, replace(config, train=replace(config.train, seed=seed + k)),
                                  device, progress=False)
        feats = image_features(fp, test_source, config.detection, device, held)
        scores = cal.score(feats)
        report = binary_report(scores, test_source.labels[held])
        report["auc"] = roc_auc(feats * (1 if cal.slope >= 0 else -1), test_source.labels[held])
        fold_reports.append(report)
        all_scores.append(scores)
        all_labels.append(test_source.labels[held])
    summary: dict[str, Any] = {
        key: sum(r[key] for r in fold_reports) / len(fold_reports)
        for key in ("accuracy", "accuracy_real", "accuracy_fake", "auc")
    }
    summary["auc_pooled"] = roc_auc(torch.cat(all_scores), torch.cat(all_labels))
    summary["n_real"] = int((cache.labels[:count] == 0).sum())
    summary["n_fake"] = int((cache.labels[:count] == 1).sum())
    summary["extra_training_reals"] = len(cache.labels) - count
    summary["folds"] = fold_reports
    summary["seconds"] = round(time.perf_counter() - started, 2)
    return summary


def crossval(data_dir: Path, extractor: ResidualExtractor, config: FitConfig, folds: int,
             device: torch.device, seed: int = 0, crop: int = 256, progress: bool = True,
             extra_real: list[Path] | None = None) -> dict[str, Any]:
    """k-fold on DATA_DIR's images; ``extra_real`` folders only ever add training reals."""
    own = scan(data_dir)
    images = with_extra_reals(own, extra_real or [])
    cache = build_training_cache(images, extractor, crop, config.detection.max_crops, config.detection.align,
                                 device, [jpeg(q) for q in config.augment_jpeg], progress)
    return crossval_cache(cache, config, folds, device, seed, progress, evaluated=len(own.labels))

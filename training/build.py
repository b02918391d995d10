"""Train a complete, documented artifact from a labelled folder."""

from __future__ import annotations

import platform
from pathlib import Path

import torch

from dif import __version__
from dif.artifact import Fingerprint, save_fingerprint
from dif.extractors import ResidualExtractor
from training.data import FAKE, REAL, file_digest, scan
from training.evaluate import DEFAULT_FAMILY_SIZE, check_folds, crossval_cache, prepare
from training.pipeline import FitConfig, fit_fingerprint


def train_artifact(data_dir: Path, name: str, config: FitConfig, extractor: ResidualExtractor,
                   device: torch.device, progress: bool = True, crossval_folds: int = 0,
                   crop: int = 256, extra_real: list[Path] | None = None, reals: list[Path] | None = None,
                   family_size: int = DEFAULT_FAMILY_SIZE, null_reals: list[Path] | None = None) -> Fingerprint:
    """Train, fit the null and (optionally) cross-validate one generator's artifact.

    ``extra_real`` folders add real photos to training only; folds and reported
    metrics use the generator's own folder alone. ``reals`` folders are never trained on:
    the cross-validated false-positive rate is measured on them. ``null_reals`` folders only
    widen the null (``fit_fingerprint``'s ``null_only``); one also given as ``reals`` is split.
    """
    if crossval_folds:
        check_folds(scan(data_dir).labels, crossval_folds)
    data = prepare(data_dir, extractor, config, device, crop, progress, extra_real, reals, null_reals)
    images = data.trained
    fitted = fit_fingerprint(data.cache, data.training, config, device, progress, data.null_only)
    metrics = {}
    if crossval_folds:
        metrics["crossval"] = crossval_cache(data.cache, config, crossval_folds, device, config.train.seed, progress,
                                             evaluated=len(data.own.labels), reals=data.pool,
                                             family_size=family_size, null_only=data.null_only)
    metadata = {
        "samples": {"real": images.count(REAL), "fake": images.count(FAKE),
                    "extra_real": len(images.labels) - len(data.own.labels),
                    "null_only_real": len(data.null_photos)},
        "data_digest": images.digest(),
        "estimator": fitted.estimator,
        "hyperparameters": {**config.train.to_dict(), "calibration": config.calibration,
                            "inner_folds": config.inner_folds, "augment_jpeg": list(config.augment_jpeg)},
        "metrics": metrics,
        "provenance": {"trainer": f"dif {__version__}", "data": str(data_dir), "device": str(device),
                       "torch": torch.__version__, "python": platform.python_version(),
                       "extra_real": [str(p) for p in extra_real or []],
                       "unseen_reals": [str(p) for p in reals or []],
                       # Content digests: these photos fitted the null, so no false-positive count may use them.
                       "null_reals": [str(p) for p in null_reals or []],
                       "null_real_sha256": sorted(file_digest(p) for p in data.null_photos)},
    }
    return Fingerprint(name=name, tensor=fitted.fingerprint, calibration=fitted.calibration,
                       extractor=extractor.describe(), detection=fitted.detection, metadata=metadata,
                       null=fitted.null)


def generator_folders(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if (p / "0_real").is_dir() and (p / "1_fake").is_dir())


def build_defaults(root: Path, out_root: Path, config: FitConfig, extractor: ResidualExtractor,
                   device: torch.device, folds: int = 5, pool_reals: bool = False,
                   progress: bool = True, reals: list[Path] | None = None,
                   null_reals: list[Path] | None = None) -> list[Path]:
    """One artifact per generator folder under ``root``, with k-fold metrics in its metadata."""
    folders = generator_folders(root)
    if not folders:
        raise ValueError(f"{root} holds no generator folders with 0_real/ and 1_fake/")
    written = []
    for folder in folders:
        extra = [f / "0_real" for f in folders if f != folder] if pool_reals else []
        fp = train_artifact(folder, folder.name.lower(), config, extractor, device, progress,
                            crossval_folds=folds, extra_real=extra, reals=reals,
                            family_size=max(len(folders), 1), null_reals=null_reals)
        written.append(save_fingerprint(fp, out_root / fp.name))
    return written

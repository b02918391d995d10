"""Train a complete, documented artifact from a labelled folder."""

from __future__ import annotations

import platform
from pathlib import Path

import torch

from dif import __version__
from dif.artifact import Fingerprint
from dif.extractors import ResidualExtractor
from training.data import FAKE, REAL, build_cache, scan
from training.evaluate import crossval_cache
from training.pipeline import FitConfig, fit_fingerprint


def train_artifact(data_dir: Path, name: str, config: FitConfig, extractor: ResidualExtractor,
                   device: torch.device, progress: bool = True, crossval_folds: int = 0,
                   crop: int = 256) -> Fingerprint:
    images = scan(data_dir)
    if images.count(REAL) < 1 or images.count(FAKE) < 1:
        raise ValueError(f"{data_dir} needs at least one real and one fake image")
    cache = build_cache(images, extractor, crop, config.detection.max_crops, config.detection.align,
                        device, progress=progress)
    tensor, calibration = fit_fingerprint(cache, list(range(len(images.labels))), config, device, progress)
    metrics = {}
    if crossval_folds >= 2:
        metrics["crossval"] = crossval_cache(cache, config, crossval_folds, device, config.train.seed, progress)
    metadata = {
        "samples": {"real": images.count(REAL), "fake": images.count(FAKE)},
        "data_digest": images.digest(),
        "hyperparameters": {**config.train.to_dict(), "calibration": config.calibration,
                            "inner_folds": config.inner_folds},
        "metrics": metrics,
        "provenance": {"trainer": f"dif {__version__}", "data": str(data_dir), "device": str(device),
                       "torch": torch.__version__, "python": platform.python_version()},
    }
    return Fingerprint(name=name, tensor=tensor, calibration=calibration, extractor=extractor.describe(),
                       detection=config.detection, metadata=metadata)

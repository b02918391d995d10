"""Shared helpers for the accuracy benchmarks: generator folders and cached residuals."""

from __future__ import annotations

import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from dif.artifact import Detection  # noqa: E402
from training.config import FitConfig  # noqa: E402
from training.data import ResidualCache, build_cache, build_training_cache, scan, with_extra_reals  # noqa: E402
from training.perturb import jpeg, null_transforms  # noqa: E402

LTIM = REPO.parent / "shared" / "data" / "ltim"
CBSD68 = REPO.parent / "shared" / "data" / "real" / "cbsd68"
REFERENCE = REPO.parent / "shared" / "data" / "reference-fingerprints"
GENERATORS = ["sd14", "mj", "dalle_mini", "glide", "dalle_2"]
# Accuracy of the reference pipeline on these exact 20-image sets (../shared/README.md).
REFERENCE_ACCURACY = {"sd14": 1.00, "mj": 1.00, "dalle_mini": 0.95, "glide": 0.85, "dalle_2": 0.75}


def generator_cache(name: str, extractor, detection: Detection, pool_reals: bool = False,
                    augment_jpeg: tuple[int, ...] = (), transform=None) -> tuple[ResidualCache, int]:
    """Cache of a generator's 20 images (first) plus, optionally, the other folders' reals."""
    own = scan(LTIM / name)
    extra = [LTIM / g / "0_real" for g in GENERATORS if g != name] if pool_reals else []
    images = with_extra_reals(own, extra)
    if transform is not None:
        # A perturbed copy is only ever a test set: no augmentation.
        return build_cache(images, extractor, 256, detection.max_crops, detection.align, torch.device("cpu"),
                           transform, progress=False), len(own.labels)
    cache = build_training_cache(images, extractor, 256, detection.max_crops, detection.align,
                                 torch.device("cpu"), [jpeg(q) for q in augment_jpeg], progress=False,
                                 null_transforms=null_transforms(FitConfig().null_variants))
    return cache, len(own.labels)

"""Shared helpers for the accuracy benchmarks: generator folders and cached residuals."""

from __future__ import annotations

import torch

from dif.artifact import Detection
from dif.extractors import available
from testkit.paths import CBSD68, LTIM
from training.config import FitConfig
from training.data import LabelledImages, ResidualCache, build_cache, build_training_cache, scan, with_extra_reals
from training.evaluate import Prepared, null_photos, prepare, real_pool
from training.perturb import jpeg, null_transforms

GENERATORS = ["sd14", "mj", "dalle_mini", "glide", "dalle_2"]
# The extractors a bench can build without trained weights (a DnCNN needs ``dif train-denoiser`` first).
FIXED_EXTRACTORS = [key for key in available() if not key.startswith("dncnn")]
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


def prepared(name: str, extractor, config: FitConfig, pool_reals: bool = True) -> Prepared:  # noqa: ANN001
    """A generator folder as ``make fingerprints`` fits it: the other folders' reals pooled into training
    (``pool_reals``), half of CBSD68 widening the null, the other half never seen (``Prepared.pool``)."""
    extra = [LTIM / g / "0_real" for g in GENERATORS if g != name] if pool_reals else []
    return prepare(LTIM / name, extractor, config, torch.device("cpu"), progress=False, extra_real=extra,
                   reals=[CBSD68], null_reals=[CBSD68])


def unseen_photos() -> LabelledImages:
    """The CBSD68 photos that ``prepared`` (and the embedded set) never fit anything on."""
    return real_pool([CBSD68], frozenset(null_photos([CBSD68], [CBSD68])))

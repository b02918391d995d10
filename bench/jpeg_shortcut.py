"""Does the detector learn "JPEG vs PNG" instead of the generator? Re-save only the test fakes as JPEG.

Usage: python -m bench.jpeg_shortcut

The real photos are JPEG-origin, the fakes PNG. If the detector keyed on JPEG
traces, fakes re-saved as JPEG at the reals' own typical quality would be taken
for real. 5-fold crossval trained on clean images; only the held-out fakes are
re-compressed. Printed beside the clean result.
"""

from __future__ import annotations

import statistics

import torch
from PIL import Image

from bench.common import GENERATORS, generator_cache
from dif.artifact import Detection
from dif.extractors import DEFAULT_EXTRACTOR, create
from testkit.paths import LTIM
from training.data import ResidualCache, list_images
from training.evaluate import crossval_cache
from training.perturb import jpeg
from training.pipeline import FitConfig

# IJG's standard luminance table (quality 50), used to estimate an encoder's quality setting.
IJG_LUMA_SUM = 5329


def estimate_quality(path) -> int | None:
    with Image.open(path) as im:
        tables = getattr(im, "quantization", None)
        if not tables:
            return None
        scale = sum(tables[0]) / IJG_LUMA_SUM * 100
    return round(100 - scale / 2) if scale <= 100 else round(5000 / scale)


def fakes_replaced(clean: ResidualCache, perturbed: ResidualCache) -> ResidualCache:
    """Reals' crops from ``clean``, fakes' crops from ``perturbed`` (same images, same order)."""
    keep_clean = clean.labels[clean.image_of_crop] == 0
    keep_pert = perturbed.labels[perturbed.image_of_crop] == 1
    return ResidualCache(
        residuals=torch.cat([clean.residuals[keep_clean], perturbed.residuals[keep_pert]]),
        image_of_crop=torch.cat([clean.image_of_crop[keep_clean], perturbed.image_of_crop[keep_pert]]),
        labels=clean.labels, paths=clean.paths,
    )


def main() -> None:
    torch.set_num_threads(2)
    qualities = [q for g in GENERATORS for p in list_images(LTIM / g / "0_real") if (q := estimate_quality(p))]
    quality = int(statistics.median(qualities))
    print(f"reals' JPEG quality: median {quality} (min {min(qualities)}, max {max(qualities)}, n={len(qualities)})")
    extractor = create(DEFAULT_EXTRACTOR)
    config = FitConfig(detection=Detection(), estimator="flags")  # the plain mean/z (docs/accuracy.md)
    print(f"| generator | clean TPR@1 % / FPR@1 % held-out reals / AUC | fakes as JPEG q{quality}: same |")
    print("|---|---|---|")
    for name in GENERATORS:
        clean, own = generator_cache(name, extractor, config.detection, pool_reals=False)
        pert, _ = generator_cache(name, extractor, config.detection, pool_reals=False, transform=jpeg(quality))
        results = []
        for test in (clean, fakes_replaced(clean, pert)):
            r = crossval_cache(clean, config, 5, torch.device("cpu"), progress=False, test_cache=test, evaluated=own)
            results.append(f"{r['tpr_at_fpr']['0.01']:.2f} / {r['fpr_heldout_reals']['0.01']:.2f} / "
                           f"{r['auc_pooled']:.2f}")
        print(f"| {name} | {results[0]} | {results[1]} |", flush=True)


if __name__ == "__main__":
    main()

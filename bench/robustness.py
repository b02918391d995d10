"""Accuracy on perturbed held-out images: ours (zero-shift and shift-search) vs the reference fingerprints.

Usage: python -m bench.robustness [--generators sd14,mj,...] [--json out.json]

Ours (cells: TPR at whole-set FPR 1 % / FPR of the held-out reals at 1 % / AUC): 5-fold
crossval (8+8 training images per fold), trained on clean training folds, tested on the held-out
fold after the perturbation (reals and fakes alike). Reference: the released
fingerprints (imported), scored with our extractor on all 20 perturbed images;
their centres were fitted on another extractor's residuals, so we report their
sign-aligned AUC, which needs no centres.
"""

from __future__ import annotations

import argparse
import json

import torch

from bench.common import GENERATORS, generator_cache
from dif.artifact import Detection
from dif.errors import DifError
from dif.extractors import DEFAULT_EXTRACTOR, create
from dif.scoring import pearson
from testkit.paths import REFERENCE
from training.evaluate import crossval_cache
from training.importer import import_reference
from training.metrics import roc_auc
from training.perturb import PERTURBATIONS
from training.pipeline import FitConfig
from training.trainer import TrainConfig

VARIANTS = {
    "ours zero-shift (mean/z)": ("flags", Detection(feature="correlation")),
    "ours shift search ±8 (mean/peak_z)": ("flags", Detection(feature="peak", max_shift=8)),
    "ours, estimator chosen by inner CV": ("auto", Detection()),
}


def reference_auc(name: str, test_cache) -> float:
    fp = import_reference(REFERENCE / name)
    groups = test_cache.image_of_crop
    per_crop = pearson(test_cache.residuals.float(), fp.tensor[None])[:, 0]
    per_image = torch.zeros(len(test_cache.labels)).index_add_(0, groups, per_crop)
    per_image /= torch.bincount(groups, minlength=len(test_cache.labels))
    sign = 1.0 if fp.calibration.fake_centre >= fp.calibration.real_centre else -1.0
    return roc_auc(sign * per_image, test_cache.labels)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--generators", default=",".join(GENERATORS))
    parser.add_argument("--augment-jpeg", type=int, action="append", default=[])
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    torch.set_num_threads(2)
    extractor = create(DEFAULT_EXTRACTOR)
    table: dict[str, dict[str, dict[str, str]]] = {}
    for name in args.generators.split(","):
        train_cache, own = generator_cache(name, extractor, Detection(), pool_reals=False,
                                           augment_jpeg=tuple(args.augment_jpeg))
        for pert, transform in PERTURBATIONS.items():
            row = table.setdefault(pert, {})
            try:
                test_cache, _ = generator_cache(name, extractor, Detection(), pool_reals=False, transform=transform)
            except DifError as exc:
                row[name] = {"note": f"n/a ({type(exc).__name__})"}
                continue
            cell = {}
            for label, (estimator, detection) in VARIANTS.items():
                config = FitConfig(train=TrainConfig(), detection=detection, augment_jpeg=tuple(args.augment_jpeg),
                                   estimator=estimator)
                r = crossval_cache(train_cache, config, 5, torch.device("cpu"), progress=False,
                                   test_cache=test_cache, evaluated=own)
                cell[label] = (f"{r['tpr_at_fpr']['0.01']:.2f} / {r['fpr_heldout_reals']['0.01']:.2f} / "
                               f"{r['auc_pooled']:.2f}")
            own_test = test_cache.subset(list(range(own)))
            cell["reference (AUC)"] = f"{reference_auc(name, own_test):.2f}"
            row[name] = cell
            print(pert, name, cell, flush=True)
    print()
    gens = args.generators.split(",")
    print("| perturbation | method | " + " | ".join(gens) + " |")
    print("|---|---|" + "---|" * len(gens))
    for pert, row in table.items():
        for label in [*VARIANTS, "reference (AUC)"]:
            cells = [row[g].get(label, row[g].get("note", "")) for g in gens]
            print(f"| {pert} | {label} | " + " | ".join(cells) + " |")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(table, fh, indent=2)


if __name__ == "__main__":
    main()

"""Held-out fakes and unseen real photos after JPEG, resizing, shifts and crops, at the service's rule.

Usage: python -m bench.robustness [--generators sd14,mj,dalle_mini] [--seed 0] [--augment-jpeg 90]
                                  [--extractor lapnorm@1] [--json out.json]

Each generator: 5-fold crossval on its 10+10 images with the other folders' reals pooled into
training (as the embedded set is built), estimator chosen by inner CV. Each fold's fingerprint is
trained once, on clean images, then scores its held-out fakes and every CBSD68 photo (no fold
trains on them) under each perturbation. Cells: TPR of the held-out fakes at a whole-set FPR of
1 % (five generators: 0.2 % each) / FPR of the 68 perturbed photos at that rate / AUC. Two rules:
zero shift only, and with the shift-search backstop (``Detection.backstop``, the default).

Shifts: a 256-pixel fake cannot lose a row and still fill a 256 crop, so fakes are rolled
(circularly, a seam of 1-7 px) while photos are cropped (what a user does; no seam).
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace

import torch

from bench.common import FIXED_EXTRACTORS, GENERATORS, generator_cache, prepared, unseen_photos
from dif.decision import detection_rate
from dif.detection import Detection
from dif.errors import DifError
from dif.extractors import DEFAULT_EXTRACTOR, create
from training.config import FitConfig
from training.data import build_cache
from training.evaluate import auc_of
from training.perturb import Transform, crop, jpeg, resize, shift
from training.pipeline import Scored, fit_fingerprint, image_statistics, null_scored, stratified_folds

# name: (transform of the fakes, transform of the photos)
PERTURBATIONS: dict[str, tuple[Transform | None, Transform | None]] = {
    "clean": (None, None),
    "moved 1,1 px": (shift(1, 1), crop(1, 1)),
    "moved 7,5 px": (shift(7, 5), crop(7, 5)),
    "moved 4,4 px": (shift(4, 4), crop(4, 4)),
    "JPEG q90": (jpeg(90), jpeg(90)),
    "JPEG q75": (jpeg(75), jpeg(75)),
    "resized x2": (resize(2.0), resize(2.0)),
    "resized x0.5": (resize(0.5), resize(0.5)),
}
FAMILY = 5
RATE = 0.01


def photo_caches(extractor, detection: Detection) -> dict:  # noqa: ANN001
    """Per perturbation: the unseen half of CBSD68, perturbed (None: smaller than a crop)."""
    photos = unseen_photos()
    reals = {}
    for pert, (_, on_real) in PERTURBATIONS.items():
        try:
            reals[pert] = build_cache(photos, extractor, 256, detection.max_crops, detection.align,
                                      torch.device("cpu"), on_real, progress=False)
        except DifError:
            reals[pert] = None
    return reals


def fake_caches(name: str, extractor, detection: Detection) -> dict:  # noqa: ANN001
    """Per perturbation: the generator's 20 images, perturbed (None: as they are; "n/a": too small)."""
    fakes = {}
    for pert, (on_fake, _) in PERTURBATIONS.items():
        try:
            fakes[pert] = generator_cache(name, extractor, detection, transform=on_fake)[0] if on_fake else None
        except DifError:
            fakes[pert] = "n/a"
    return fakes


def run(name: str, seed: int, extractor, reals: dict, config: FitConfig) -> dict:  # noqa: ANN001
    started = time.perf_counter()
    detection = Detection()
    data = prepared(name, extractor, config)
    cache, own = data.cache, len(data.own.labels)
    fakes = fake_caches(name, extractor, detection)
    found: dict[str, dict[str, list[Scored]]] = {p: {"fake0": [], "fakeb": [], "real0": [], "realb": []}
                                                  for p in PERTURBATIONS}
    chosen = []
    for k, held in enumerate(stratified_folds(cache.labels[:own], 5, seed)):
        train = [i for i in data.training if i not in set(held)]
        fitted = fit_fingerprint(cache, train, replace(config, train=replace(config.train, seed=seed + k)),
                                 torch.device("cpu"), progress=False, null_only=data.null_only)
        chosen.append(fitted.estimator["name"])
        d = fitted.detection
        held_fakes = [i for i in held if int(cache.labels[i]) == 1]
        for pert in PERTURBATIONS:
            for kind, source, images in (("fake", fakes[pert], held_fakes), ("real", reals[pert], None)):
                if source == "n/a" or (kind == "real" and source is None):
                    continue
                source = cache if source is None else source
                cols = image_statistics(fitted.fingerprint, source, d, torch.device("cpu"), d.decision_statistics,
                                        images)
                found[pert][kind + "0"].append(null_scored(cols[0], fitted.null, replace(d, backstop_window=0)))
                found[pert][kind + "b"].append(null_scored(cols[0], fitted.null, d, *cols[1:]))
    rows = {}
    for pert, parts in found.items():
        row = {}
        for rule in ("0", "b"):
            if not parts["fake" + rule]:
                row[rule] = "n/a (smaller than a crop)"
                continue
            fake = Scored.cat(parts["fake" + rule])
            cell = f"{detection_rate(fake.p, RATE, FAMILY):.2f}"
            if parts["real" + rule]:
                real = Scored.cat(parts["real" + rule])
                cell += f" / {detection_rate(real.p, RATE, FAMILY):.3f} / {auc_of(fake, real):.2f}"
            else:
                cell += " / n/a"
            row[rule] = cell
        rows[pert] = row
        print(name, pert, row, flush=True)
    return {"estimators": chosen, "rows": rows, "seconds": round(time.perf_counter() - started)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--generators", default=",".join(GENERATORS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--augment-jpeg", type=int, action="append", default=[],
                        help="also train on JPEG copies of both classes at this quality (repeatable, as in dif train)")
    parser.add_argument("--json", default=None)
    parser.add_argument("--extractor", default=DEFAULT_EXTRACTOR, choices=FIXED_EXTRACTORS)
    args = parser.parse_args()
    torch.set_num_threads(2)
    extractor = create(args.extractor)
    gens = args.generators.split(",")
    reals = photo_caches(extractor, Detection())
    config = FitConfig(augment_jpeg=tuple(args.augment_jpeg))
    table = {name: run(name, args.seed, extractor, reals, config) for name in gens}
    print("\n| perturbation | rule | " + " | ".join(gens) + " |")
    print("|---|---|" + "---|" * len(gens))
    for pert in PERTURBATIONS:
        for rule, label in (("0", "zero shift only"), ("b", "with shift backstop")):
            print(f"| {pert} | {label} | " + " | ".join(table[g]["rows"][pert][rule] for g in gens) + " |")
    print("estimators per fold:", {g: table[g]["estimators"] for g in gens})
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(table, fh, indent=2)


if __name__ == "__main__":
    main()

"""TPR at a whole-set false-positive rate of 1 % and 5 % per generator, beside the reference's figures.

Usage: python -m bench.crossval_table [--seeds 0,1,2] [--rows embedded,reference] [--generators sd14,mj]
                                     [--extractor lapnorm@1] [--unet-steps 100,300,1000] [--json out.json]

Each "ours" row is one 5-fold crossval per generator and seed (about 50 s on 2 cores with the
inner-CV choice): ``--rows`` picks the rows to run (default: all).

Rows:
- ours, 5-fold (8+8 training images per fold), with and without the other folders' reals pooled
  into training (the embedded set is built the second way). TPR on the held-out fakes, FPR on
  the half of CBSD68 that no fold trains on or fits its null on (the other half widens the null,
  as in ``make fingerprints``), both with the service's rule at a whole-set
  rate split over 5 generators; AUC of held-out fakes against those reals. Mean over seeds, and
  the 95 % Wilson interval of that mean counted in fakes (10 per generator: the data cannot
  resolve a TPR finer than about +-0.3).
- the reference's released fingerprints (imported, scored with our extractor and rule, the
  null N(0, 1) oriented by their centres): all 10 fakes are unseen by them.
- the reference pipeline's own published accuracy on these 20 images (balanced accuracy at its
  own threshold, not TPR at a stated rate: not directly comparable, shown for orientation).
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from functools import partial

import torch

from bench.common import FIXED_EXTRACTORS, GENERATORS, REFERENCE_ACCURACY, prepared, unseen_photos
from dif.artifact import Detection, Fingerprint
from dif.decision import REPORTED_RATES, rate_key
from dif.extractors import DEFAULT_EXTRACTOR, ResidualExtractor, create
from testkit.paths import LTIM, REFERENCE
from training.data import build_cache, scan
from training.evaluate import DEFAULT_FAMILY_SIZE, auc_of, crossval_cache, rate_report
from training.importer import import_reference
from training.metrics import wilson
from training.pipeline import FitConfig, score_cache
from training.trainer import TrainConfig

ROWS = {
    "cv": "ours, estimator chosen by inner CV, 8+8 per fold",
    "embedded": "ours, estimator chosen by inner CV, + pooled reals (embedded set)",
    "plain": "ours, plain mean/z, + pooled reals (the first embedded set)",
    "reference": "reference fingerprints, our extractor and rule",
}


def summarise(reports: list[dict], fakes: int) -> dict[str, object]:
    cell: dict[str, object] = {"auc": sum(r["auc_unseen_reals"] for r in reports) / len(reports)}
    for rate in REPORTED_RATES:
        key = rate_key(rate)
        tpr = sum(r["tpr_at_fpr"][key] for r in reports) / len(reports)
        cell[f"tpr@{key}"] = tpr
        cell[f"tpr@{key}_interval"] = wilson(round(tpr * fakes), fakes)
        cell[f"fpr@{key}"] = sum(r["fpr_at"][key] for r in reports) / len(reports)
    return cell


def ours(config: FitConfig, pool: bool, seeds: list[int], generators: list[str],
         extractor_key: str = DEFAULT_EXTRACTOR) -> dict[str, dict[str, object]]:
    extractor = create(extractor_key)
    out = {}
    for name in generators:
        data = prepared(name, extractor, config, pool_reals=pool)
        started = time.perf_counter()
        reports = [crossval_cache(data.cache, config, 5, torch.device("cpu"), seed=s, progress=False,
                                  evaluated=len(data.own.labels), reals=data.pool, null_only=data.null_only)
                   for s in seeds]
        out[name] = {**summarise(reports, data.own.count(1)),
                     "seconds_per_crossval": (time.perf_counter() - started) / len(seeds)}
        print(name, out[name], flush=True)
    return out


def reference(generators: list[str]) -> dict[str, dict[str, object]]:
    """The released reference fingerprints, with our extractor and our rule, on all 10 fakes."""
    extractor = create(DEFAULT_EXTRACTOR)
    out = {}
    for name in generators:
        fp = import_reference(REFERENCE / name)
        out[name] = summarise([_score(fp, extractor, name)], 10)
    return out


def _score(fp: Fingerprint, extractor: ResidualExtractor, name: str) -> dict[str, object]:
    device = torch.device("cpu")

    def scored(images):  # noqa: ANN001, ANN202
        cache = build_cache(images, extractor, fp.crop_size, fp.detection.max_crops, fp.detection.align, device,
                            progress=False)
        return score_cache(fp.tensor, fp.null_model, cache, fp.detection, device), cache.labels

    own, labels = scored(scan(LTIM / name))
    fake = own[labels == 1]
    unseen, _ = scored(unseen_photos())
    return {**rate_report(fake.p, unseen.p, DEFAULT_FAMILY_SIZE), "auc_unseen_reals": auc_of(fake, unseen)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--unet-steps", default="",
                        help="also run DIF's U-Net prior at each of these step counts, e.g. 100,300,1000 (slow)")
    parser.add_argument("--unet-width", type=int, default=16)
    parser.add_argument("--rows", default=",".join(ROWS), help=f"which rows to run, of {', '.join(ROWS)}")
    parser.add_argument("--generators", default=",".join(GENERATORS))
    parser.add_argument("--json", default=None)
    parser.add_argument("--extractor", default=DEFAULT_EXTRACTOR, choices=FIXED_EXTRACTORS,
                        help="residual extractor of the 'ours' rows (the reference row keeps the default)")
    args = parser.parse_args()
    torch.set_num_threads(2)
    seeds = [int(s) for s in args.seeds.split(",")]
    wanted = [r for r in args.rows.split(",") if r]
    gens = args.generators.split(",")
    if unknown := sorted(set(wanted) - set(ROWS)) + sorted(set(gens) - set(GENERATORS)):
        parser.error(f"unknown {', '.join(unknown)}; rows: {', '.join(ROWS)}; generators: {', '.join(GENERATORS)}")
    base = FitConfig(train=TrainConfig(prior="mean"), detection=Detection())
    plain = replace(base, estimator="flags")
    ours_rows = partial(ours, generators=gens, extractor_key=args.extractor)
    runs = {
        "cv": lambda: ours_rows(base, pool=False, seeds=seeds),
        "embedded": lambda: ours_rows(base, pool=True, seeds=seeds),
        "plain": lambda: ours_rows(plain, pool=True, seeds=seeds),
        "reference": lambda: reference(gens),
    }
    rows = {ROWS[key]: runs[key]() for key in ROWS if key in wanted}
    for steps in [int(n) for n in args.unet_steps.split(",") if n]:
        # "flags": the U-Net itself, not the inner-CV choice among the closed-form estimators;
        # "train": theory's null, no inner folds (each would train the U-Net again).
        unet = replace(plain, train=replace(base.train, prior="unet", steps=steps, width=args.unet_width, lr=3e-3),
                       calibration="train")
        rows[f"DIF U-Net prior ({steps} steps, width {args.unet_width})"] = ours_rows(unet, pool=False,
                                                                                   seeds=seeds[:1])
    print(f"\nTPR at whole-set FPR 1 % [95 % interval] / TPR at 5 % / AUC vs unseen reals; FPR measured on "
          f"the half of CBSD68 no fingerprint fits on (seeds {args.seeds}, family of {DEFAULT_FAMILY_SIZE})\n")
    print("| method | " + " | ".join(gens) + " |")
    print("|---" * (len(gens) + 1) + "|")
    for label, res in rows.items():
        cells = [f"{r['tpr@0.01']:.2f} [{r['tpr@0.01_interval'][0]:.2f}-{r['tpr@0.01_interval'][1]:.2f}] / "
                 f"{r['tpr@0.05']:.2f} / {r['auc']:.2f}" for r in (res[g] for g in gens)]
        print(f"| {label} | " + " | ".join(cells) + " |")
    print("| reference pipeline, published accuracy % (its own threshold, not a stated FPR) | "
          + " | ".join(f"{REFERENCE_ACCURACY[g] * 100:.0f}" for g in gens) + " |")
    print("\nFPR on the unseen reals at 1 % / 5 % (whole set):")
    for label, res in rows.items():
        print(f"- {label}: " + ", ".join(f"{g} {res[g]['fpr@0.01']:.3f}/{res[g]['fpr@0.05']:.3f}" for g in gens))
    for label, res in rows.items():
        if "seconds_per_crossval" in res[gens[0]]:
            print(f"\nwall time of one 5-fold crossval ({label}): "
                  + ", ".join(f"{g} {res[g]['seconds_per_crossval']:.1f}s" for g in gens))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=2)


if __name__ == "__main__":
    main()

"""5-fold cross-validated accuracy per generator, beside the reference pipeline's figures.

Usage: python bench/crossval_table.py [--unet-steps N] [--seeds 0,1,2] [--json out.json]

Rows: our default (closed-form mean prior, 8+8 training images per fold), the
same with the other folders' reals pooled into training, optionally DIF's U-Net
prior, and the reference pipeline's accuracy on the same 20 images.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace

import torch
from common import GENERATORS, REFERENCE_ACCURACY, generator_cache

from dif.artifact import Detection
from dif.extractors import DEFAULT_EXTRACTOR, create
from training.evaluate import crossval_cache
from training.pipeline import FitConfig
from training.trainer import TrainConfig


def run(config: FitConfig, pool: bool, seeds: list[int]) -> dict[str, dict[str, float]]:
    extractor = create(DEFAULT_EXTRACTOR)
    out = {}
    for name in GENERATORS:
        cache, own = generator_cache(name, extractor, config.detection, pool_reals=pool,
                                     augment_jpeg=config.augment_jpeg)
        started = time.perf_counter()
        reports = [crossval_cache(cache, config, 5, torch.device("cpu"), seed=s, progress=False, evaluated=own)
                   for s in seeds]
        out[name] = {
            "accuracy": sum(r["accuracy"] for r in reports) / len(reports),
            "auc": sum(r["auc_pooled"] for r in reports) / len(reports),
            "seconds_per_crossval": (time.perf_counter() - started) / len(seeds),
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--unet-steps", type=int, default=0, help="also run DIF's U-Net prior (slow on CPU)")
    parser.add_argument("--unet-width", type=int, default=16)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    torch.set_num_threads(2)
    seeds = [int(s) for s in args.seeds.split(",")]
    base = FitConfig(train=TrainConfig(prior="mean"), detection=Detection())
    rows = {
        "ours, 8+8 per fold": run(base, pool=False, seeds=seeds),
        "ours, + pooled reals": run(base, pool=True, seeds=seeds),
    }
    if args.unet_steps:
        unet = replace(base, train=replace(base.train, prior="unet", steps=args.unet_steps, width=args.unet_width,
                                           lr=3e-3), calibration="train")
        rows[f"DIF U-Net prior ({args.unet_steps} steps, width {args.unet_width})"] = run(unet, False, seeds[:1])
    header = "| method | " + " | ".join(GENERATORS) + " |"
    print(header)
    print("|---" * (len(GENERATORS) + 1) + "|")
    for label, res in rows.items():
        cells = [f"{res[g]['accuracy'] * 100:.0f} / {res[g]['auc']:.2f}" for g in GENERATORS]
        print(f"| {label} (acc % / AUC) | " + " | ".join(cells) + " |")
    reference = " | ".join(f"{REFERENCE_ACCURACY[g] * 100:.0f}" for g in GENERATORS)
    print(f"| reference pipeline (acc %) | {reference} |")
    timing = rows["ours, 8+8 per fold"]
    print("\nwall time of one 5-fold crossval (20 images): "
          + ", ".join(f"{g} {timing[g]['seconds_per_crossval']:.1f}s" for g in GENERATORS))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=2)


if __name__ == "__main__":
    main()

"""Which residual extractor? 5-fold cross-validated accuracy per extractor and generator.

Usage: python -m bench.extractors [--denoiser-steps 600]

Every extractor runs through the same pipeline (default prior and calibration,
8+8 training images per fold, 2 seeds). The learned DnCNN is first trained
here with `dif train-denoiser` on the real photos of all five folders; it never
sees a fake, but it has seen the test folds' reals (noted in docs/accuracy.md).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch

from bench.common import GENERATORS, generator_cache
from dif.artifact import Detection
from dif.extractors import create
from testkit.paths import LTIM
from training.denoiser import DenoiserConfig, train_denoiser
from training.evaluate import crossval_cache
from training.pipeline import FitConfig

FIXED = ["laplacian@1", "signlap@1", "lapnorm@1", "boxhp5@1"]


def pooled_reals(dest: Path) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    for g in GENERATORS:
        for p in (LTIM / g / "0_real").iterdir():
            (dest / f"{g}_{p.name}").symlink_to(p.resolve())
    return dest


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--denoiser-steps", type=int, default=600)
    parser.add_argument("--seeds", default="0,1")
    args = parser.parse_args()
    torch.set_num_threads(2)
    seeds = [int(s) for s in args.seeds.split(",")]
    work = Path(tempfile.mkdtemp(prefix="dif-extractors-"))
    train_denoiser(pooled_reals(work / "reals"), work / "dncnn", DenoiserConfig(steps=args.denoiser_steps),
                   torch.device("cpu"), progress=False)
    extractors = {key: create(key) for key in FIXED}
    extractors["dncnn@1 (ours, 6x16)"] = create("dncnn@1", work / "dncnn")
    config = FitConfig(detection=Detection(), estimator="flags")  # the plain mean/z, per extractor
    print("| extractor | " + " | ".join(GENERATORS) + " | mean |")
    print("|---" * (len(GENERATORS) + 2) + "|")
    for label, extractor in extractors.items():
        accs = []
        for name in GENERATORS:
            cache, own = generator_cache(name, extractor, config.detection)
            runs = [crossval_cache(cache, config, 5, torch.device("cpu"), seed=s, progress=False, evaluated=own)
                    for s in seeds]
            accs.append(sum(r["accuracy"] for r in runs) / len(runs))
        cells = " | ".join(f"{a * 100:.0f}" for a in accs)
        print(f"| {label} | {cells} | {sum(accs) / len(accs) * 100:.0f} |", flush=True)


if __name__ == "__main__":
    main()

"""``dif train``, ``dif eval``, ``dif crossval``: the trainer's command line."""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

from dif.artifact import FEATURES, Detection, load_fingerprint, save_fingerprint
from dif.extractors import DEFAULT_EXTRACTOR, create
from training.blank import blank_experiment
from training.build import build_defaults, train_artifact
from training.denoiser import DenoiserConfig, train_denoiser
from training.evaluate import crossval, evaluate
from training.pipeline import FitConfig
from training.trainer import TrainConfig, resolve_device


def add_training_options(p: argparse.ArgumentParser) -> None:
    defaults = TrainConfig()
    p.add_argument("--prior", default=defaults.prior, choices=["mean", "unet"],
                   help="fingerprint prior: closed-form mean (default, fast) or DIF's U-Net (slow on CPU)")
    p.add_argument("--steps", type=int, default=defaults.steps, help="optimisation steps (U-Net prior)")
    p.add_argument("--width", type=int, default=defaults.width, help="U-Net width (channels at the top level)")
    p.add_argument("--lr", type=float, default=defaults.lr)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--extractor", default=DEFAULT_EXTRACTOR, help="residual extractor key (name@version)")
    p.add_argument("--extractor-dir", type=Path, default=None, help="weights folder of a learned extractor")
    p.add_argument("--crops", type=int, default=Detection().max_crops, help="crops per image (grid-aligned)")
    p.add_argument("--feature", default=Detection().feature, choices=list(FEATURES),
                   help="detection statistic: correlation (zero shift, best on aligned images) or peak "
                        "(best shift within --max-shift: tolerates crops and shifts, costs clean accuracy)")
    p.add_argument("--max-shift", type=int, default=8, help="shift window of the peak features, pixels")
    p.add_argument("--calibration", default="inner-cv", choices=["inner-cv", "train"])
    p.add_argument("--extra-real", type=Path, action="append", default=[],
                   help="folder of more real photos, used for training only (repeatable)")
    p.add_argument("--augment-jpeg", type=int, action="append", default=[],
                   help="also train on copies re-saved as JPEG at this quality (repeatable)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def fit_config(args: argparse.Namespace) -> FitConfig:
    train = replace(TrainConfig(), prior=args.prior, steps=args.steps, width=args.width, lr=args.lr, seed=args.seed)
    shift = args.max_shift if args.feature in ("peak", "peak_z") else 0
    detection = Detection(feature=args.feature, max_shift=shift, max_crops=args.crops)
    return FitConfig(train=train, detection=detection, calibration=args.calibration,
                     augment_jpeg=tuple(args.augment_jpeg))


def print_report(report: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(report, sort_keys=True))
        return
    print(f"balanced accuracy {report['accuracy']:.3f} (real {report['accuracy_real']:.3f}, "
          f"fake {report['accuracy_fake']:.3f}), AUC {report['auc']:.3f}, "
          f"{report['n_real']} real + {report['n_fake']} fake")


def cmd_train(args: argparse.Namespace) -> int:
    device = resolve_device(args.device)
    extractor = create(args.extractor, args.extractor_dir)
    name = args.name or Path(args.data_dir).resolve().name.lower()
    fp = train_artifact(Path(args.data_dir), name, fit_config(args), extractor, device,
                        progress=not args.quiet, crossval_folds=args.crossval, extra_real=args.extra_real)
    out = save_fingerprint(fp, args.out)
    print(f"wrote {out} (real centre {fp.calibration.real_centre:+.3f}, fake centre {fp.calibration.fake_centre:+.3f})")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    fp = load_fingerprint(args.fp_dir)
    extractor = create(fp.extractor_key, args.extractor_dir)
    report = evaluate(fp, extractor, Path(args.data_dir), resolve_device(args.device), progress=not args.json)
    print_report(report, args.json)
    return 0


def cmd_crossval(args: argparse.Namespace) -> int:
    extractor = create(args.extractor, args.extractor_dir)
    report = crossval(Path(args.data_dir), extractor, fit_config(args), args.folds, resolve_device(args.device),
                      seed=args.seed, progress=not (args.quiet or args.json), extra_real=args.extra_real)
    print_report(report, args.json)
    return 0


def cmd_train_denoiser(args: argparse.Namespace) -> int:
    config = DenoiserConfig(depth=args.depth, width=args.width, steps=args.steps, seed=args.seed)
    model = train_denoiser(Path(args.real_dir), args.out, config, resolve_device(args.device), not args.quiet)
    print(f"wrote {args.out} ({model.key}, digest {model.digest()[:12]})")
    return 0


def cmd_blank(args: argparse.Namespace) -> int:
    config = replace(TrainConfig(), width=args.width, seed=args.seed)
    stats = blank_experiment(args.out, config, steps=args.steps, device=resolve_device(args.device))
    print(json.dumps({"out": str(args.out), **stats}))
    return 0


def cmd_build_defaults(args: argparse.Namespace) -> int:
    written = build_defaults(args.data, args.out, fit_config(args), create(args.extractor, args.extractor_dir),
                             resolve_device(args.device), folds=args.folds, pool_reals=args.pool_reals,
                             progress=not args.quiet)
    for path in written:
        print(f"wrote {path}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a fingerprint from DATA_DIR/0_real and DATA_DIR/1_fake")
    p.add_argument("data_dir")
    p.add_argument("--out", required=True, type=Path, help="artifact folder to write")
    p.add_argument("--name", default=None, help="generator name (default: the data folder's name)")
    p.add_argument("--crossval", type=int, default=0, help="also record k-fold metrics in the metadata")
    add_training_options(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("eval", help="evaluate a fingerprint artifact on a labelled folder")
    p.add_argument("fp_dir", type=Path)
    p.add_argument("data_dir")
    p.add_argument("--json", action="store_true")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--extractor-dir", type=Path, default=None)
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("crossval", help="stratified k-fold: train on k-1 folds, test on the held-out one")
    p.add_argument("data_dir")
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--json", action="store_true")
    add_training_options(p)
    p.set_defaults(func=cmd_crossval)

    p = sub.add_parser("train-denoiser", help="train a DnCNN residual extractor on real photos")
    p.add_argument("real_dir")
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--depth", type=int, default=DenoiserConfig().depth)
    p.add_argument("--width", type=int, default=DenoiserConfig().width)
    p.add_argument("--steps", type=int, default=DenoiserConfig().steps)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_train_denoiser)

    p = sub.add_parser("blank", help="gray-image experiment: the U-Net's own output for a flat gray target")
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--width", type=int, default=TrainConfig().width)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.set_defaults(func=cmd_blank)

    p = sub.add_parser("build-defaults", help="train the embedded fingerprint set: one per generator folder")
    p.add_argument("--data", type=Path, required=True, help="folder of generator folders, each with 0_real/ 1_fake/")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--folds", type=int, default=5, help="k-fold metrics recorded in each artifact's metadata")
    p.add_argument("--pool-reals", action="store_true", help="train on the real images of every folder")
    add_training_options(p)
    p.set_defaults(func=cmd_build_defaults)

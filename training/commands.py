"""``dif train``, ``dif eval``, ``dif crossval`` and friends: the trainer's command line."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from dif.detection import DEFAULT_EXTRACTOR, FEATURES, Detection
from training.config import AUTO, DEFAULT_FAMILY_SIZE, ESTIMATORS, DenoiserConfig, FitConfig, TrainConfig

DEVICES = ["auto", "cpu", "cuda"]
DEVICE_HELP = "where to compute: auto picks CUDA when available"
# The parsers need only the light modules above; each handler imports torch-using code when it runs,
# so `dif --help` and `dif train --help` answer at once.


def add_training_options(p: argparse.ArgumentParser) -> None:
    defaults = TrainConfig()
    p.add_argument("--estimator", default=AUTO, choices=[AUTO, *ESTIMATORS, "flags"],
                   help="how the fingerprint is estimated and decided on: auto chooses per generator by inner "
                        "cross-validation among the named ones; flags uses --prior/--feature/--max-shift as given")
    p.add_argument("--prior", default=defaults.prior, choices=["mean", "lattice", "unet"],
                   help="fingerprint prior with --estimator flags: closed-form mean (fast), its --period lattice, "
                        "or DIF's U-Net (slow on CPU)")
    p.add_argument("--period", type=int, default=defaults.period, help="lattice period in pixels (--prior lattice)")
    p.add_argument("--deblock", type=int, default=defaults.deblock,
                   help="project every fingerprint off the row+column patterns of this block grid (JPEG's 8), "
                        "so photos' block grids at any crop offset cannot match it; 0: off")
    p.add_argument("--steps", type=int, default=defaults.steps, help="optimisation steps (U-Net prior)")
    p.add_argument("--width", type=int, default=defaults.width, help="U-Net width (channels at the top level)")
    p.add_argument("--lr", type=float, default=defaults.lr, help="learning rate (U-Net prior)")
    p.add_argument("--seed", type=int, default=0, help="seed of folds, sampling and the U-Net")
    p.add_argument("--device", default="auto", choices=DEVICES, help=DEVICE_HELP)
    p.add_argument("--extractor", default=DEFAULT_EXTRACTOR, help="residual extractor key (name@version)")
    p.add_argument("--extractor-dir", type=Path, default=None, help="weights folder of a learned extractor")
    p.add_argument("--crops", type=int, default=Detection().max_crops, help="crops per image (grid-aligned)")
    p.add_argument("--feature", default=Detection().feature, choices=list(FEATURES),
                   help="detection statistic: correlation (zero shift, best on aligned images) or peak "
                        "(best shift within --max-shift: tolerates crops and shifts, costs clean accuracy)")
    p.add_argument("--max-shift", type=int, default=8, help="shift window of the peak features, pixels")
    p.add_argument("--calibration", default="inner-cv", choices=["inner-cv", "train"],
                   help="inner-cv: fit the null's tail correction on training images scored by fingerprints "
                        "that did not see them; train: theory's N(0, 1) null, no inner folds (faster)")
    p.add_argument("--extra-real", type=Path, action="append", default=[],
                   help="folder of more real photos, used for training only (repeatable)")
    p.add_argument("--augment-jpeg", type=int, action="append", default=[],
                   help="also train on copies re-saved as JPEG at this quality (repeatable)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def add_null_reals_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--null-reals", type=Path, action="append", default=[],
                   help="folder of real photos that never train but widen each fingerprint's null, so it holds "
                        "beyond one photo collection (repeatable); a folder also given as --reals is split, "
                        "every other photo to each")


def add_rate_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--reals", type=Path, action="append", default=[],
                   help="folder of real photos never trained on, to measure the false-positive rate (repeatable; "
                        "refused if it shares an image with the training data)")
    p.add_argument("--family-size", type=int, default=DEFAULT_FAMILY_SIZE,
                   help="generators the service splits the false-positive rate over (the embedded set has 5)")


def fit_config(args: argparse.Namespace) -> FitConfig:
    if args.deblock < 0 or (args.deblock and 256 % args.deblock):
        raise ValueError(f"--deblock must be 0 (off) or a period dividing the 256-pixel crop, such as 8 or 16, "
                         f"not {args.deblock}")
    train = replace(TrainConfig(), prior=args.prior, steps=args.steps, width=args.width, lr=args.lr, seed=args.seed,
                    period=args.period, deblock=args.deblock)
    shift = args.max_shift if args.feature in ("peak", "peak_z") else 0
    detection = Detection(feature=args.feature, max_shift=shift, max_crops=args.crops)
    return FitConfig(train=train, detection=detection, calibration=args.calibration,
                     augment_jpeg=tuple(args.augment_jpeg), estimator=args.estimator)


def print_report(report: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(report, sort_keys=True))
        return
    unseen = report.get("n_unseen_reals") or report["n_real"]
    rates = ", ".join(f"TPR {report['tpr_at_fpr'][k]:.2f} / FPR {report['fpr_at'][k]:.3f} at {float(k):.0%}"
                      for k in report["tpr_at_fpr"])
    print(f"{rates} (whole-set rate, {report['family_size']} generators), AUC {report['auc']:.3f}; "
          f"{report['n_fake']} fakes, {unseen} unseen reals")


def check_positive(value: int, flag: str) -> None:
    if value < 1:
        raise ValueError(f"{flag} must be at least 1, not {value}")


def refuse_overwrite(out: Path, force: bool) -> None:
    """Checked before training, so a mistyped --out costs seconds, not a training run and an artifact."""
    from dif.artifact import METADATA_FILE, WEIGHTS_FILE

    if not force and any((out / name).exists() for name in (WEIGHTS_FILE, METADATA_FILE)):
        raise ValueError(f"{out} already holds an artifact; pass --force to overwrite it, or choose another --out")


def cmd_train(args: argparse.Namespace) -> int:
    from dif.artifact import save_fingerprint
    from dif.extractors import create
    from training.build import train_artifact
    from training.trainer import resolve_device

    refuse_overwrite(args.out, args.force)
    device = resolve_device(args.device)
    extractor = create(args.extractor, args.extractor_dir)
    name = args.name or Path(args.data_dir).resolve().name.lower()
    check_positive(args.family_size, "--family-size")
    fp = train_artifact(Path(args.data_dir), name, fit_config(args), extractor, device,
                        progress=not args.quiet, crossval_folds=args.crossval, extra_real=args.extra_real,
                        reals=args.reals, family_size=args.family_size, null_reals=args.null_reals)
    out = save_fingerprint(fp, args.out)
    measured = f", cross-validated TPR at 1 %: {fp.crossval.tpr_at_fpr['0.01']:.2f}" if fp.crossval else ""
    print(f"wrote {out} (null scale {fp.null_model.scale:.2f}{measured})")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from dif.artifact import load_fingerprint
    from dif.extractors import create
    from training.evaluate import evaluate
    from training.overlap import training_overlap
    from training.trainer import resolve_device

    fp = load_fingerprint(args.fp_dir)
    extractor = create(fp.extractor_key, args.extractor_dir)
    check_positive(args.family_size, "--family-size")
    report = evaluate(fp, extractor, Path(args.data_dir), resolve_device(args.device), progress=not args.quiet,
                      reals=args.reals, family_size=args.family_size)
    warning = training_overlap(fp, Path(args.data_dir), args.reals)
    if warning:
        print(f"dif eval: warning: {warning}", file=sys.stderr)
        report["warning"] = warning
    print_report(report, args.json)
    return 0


def cmd_crossval(args: argparse.Namespace) -> int:
    from dif.extractors import create
    from training.evaluate import crossval
    from training.trainer import resolve_device

    extractor = create(args.extractor, args.extractor_dir)
    check_positive(args.family_size, "--family-size")
    report = crossval(Path(args.data_dir), extractor, fit_config(args), args.folds, resolve_device(args.device),
                      seed=args.seed, progress=not args.quiet, extra_real=args.extra_real, reals=args.reals,
                      family_size=args.family_size, null_reals=args.null_reals)
    print_report(report, args.json)
    return 0


def cmd_train_denoiser(args: argparse.Namespace) -> int:
    from training.denoiser import train_denoiser
    from training.trainer import resolve_device

    config = DenoiserConfig(depth=args.depth, width=args.width, steps=args.steps, seed=args.seed)
    model = train_denoiser(Path(args.real_dir), args.out, config, resolve_device(args.device), not args.quiet)
    print(f"wrote {args.out} ({model.key}, digest {model.digest()[:12]})")
    return 0


def cmd_blank(args: argparse.Namespace) -> int:
    from training.blank import blank_experiment
    from training.trainer import resolve_device

    config = replace(TrainConfig(), width=args.width, seed=args.seed)
    stats = blank_experiment(args.out, config, steps=args.steps, device=resolve_device(args.device))
    print(json.dumps({"out": str(args.out), **stats}))
    return 0


def cmd_build_defaults(args: argparse.Namespace) -> int:
    from dif.extractors import create
    from training.build import build_defaults
    from training.trainer import resolve_device

    written = build_defaults(args.data, args.out, fit_config(args), create(args.extractor, args.extractor_dir),
                             resolve_device(args.device), folds=args.folds, pool_reals=args.pool_reals,
                             progress=not args.quiet, reals=args.reals, null_reals=args.null_reals)
    for path in written:
        print(f"wrote {path}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    formatter = argparse.ArgumentDefaultsHelpFormatter
    p = sub.add_parser("train", help="train a fingerprint from DATA_DIR/0_real and DATA_DIR/1_fake",
                       description="Train one generator's fingerprint artifact, fit its null model and "
                                   "(with --crossval) record its cross-validated TPR at FPR 1 %% and 5 %%.",
                       formatter_class=formatter)
    p.add_argument("data_dir", help="folder with 0_real/ (real photos) and 1_fake/ (the generator's images)")
    p.add_argument("--out", required=True, type=Path,
                   help="artifact folder to write (refused if it already holds an artifact, unless --force)")
    p.add_argument("--force", action="store_true", help="overwrite the artifact already in --out")
    p.add_argument("--name", default=None, help="generator name (default: the data folder's name)")
    p.add_argument("--crossval", type=int, default=0,
                   help="also record k-fold TPR/FPR in the metadata (0: skip; GET /generators shows them)")
    add_training_options(p)
    add_rate_options(p)
    add_null_reals_option(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("eval", help="evaluate a fingerprint artifact on a labelled folder",
                       description="TPR on DATA_DIR/1_fake and FPR on --reals (else DATA_DIR/0_real) at FPR 1 %% "
                                   "and 5 %%, with the service's own decision rule and forward pass.",
                       formatter_class=formatter)
    p.add_argument("fp_dir", type=Path, help="artifact folder (fingerprint.safetensors + metadata.json)")
    p.add_argument("data_dir", help="folder with 0_real/ and 1_fake/")
    p.add_argument("--json", action="store_true", help="one JSON object on stdout")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--device", default="auto", choices=DEVICES, help=DEVICE_HELP)
    p.add_argument("--extractor-dir", type=Path, default=None, help="weights folder of a learned extractor")
    add_rate_options(p)
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("crossval", help="stratified k-fold: train on k-1 folds, test on the held-out one",
                       description="Stratified k-fold cross-validation: TPR on held-out fakes, FPR on --reals "
                                   "(photos no fold trains on), at FPR 1 %% and 5 %% with the service's rule.",
                       formatter_class=formatter)
    p.add_argument("data_dir", help="folder with 0_real/ and 1_fake/")
    p.add_argument("--folds", type=int, default=5, help="k, from 2 to the size of the smaller class")
    p.add_argument("--json", action="store_true", help="one JSON object on stdout (progress stays on stderr)")
    add_training_options(p)
    add_rate_options(p)
    add_null_reals_option(p)
    p.set_defaults(func=cmd_crossval)

    p = sub.add_parser("train-denoiser", help="train a DnCNN residual extractor on real photos")
    p.add_argument("real_dir", help="folder of real photos (synthetic noise is added to them)")
    p.add_argument("--out", required=True, type=Path, help="folder to write denoiser.safetensors and metadata.json")
    p.add_argument("--depth", type=int, default=DenoiserConfig().depth, help="convolution layers")
    p.add_argument("--width", type=int, default=DenoiserConfig().width, help="channels per layer")
    p.add_argument("--steps", type=int, default=DenoiserConfig().steps, help="optimisation steps")
    p.add_argument("--seed", type=int, default=0, help="seed of patches and initial weights")
    p.add_argument("--device", default="auto", choices=DEVICES, help=DEVICE_HELP)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_train_denoiser)

    p = sub.add_parser("blank", help="gray-image experiment: the U-Net's own output for a flat gray target")
    p.add_argument("--out", required=True, type=Path, help="folder for blank_image.png, blank_spectrum.png and "
                                                           "blank_output.safetensors")
    p.add_argument("--steps", type=int, default=200, help="optimisation steps of the U-Net towards flat gray")
    p.add_argument("--width", type=int, default=TrainConfig().width)
    p.add_argument("--seed", type=int, default=0, help="seed of the fixed input noise and the weights")
    p.add_argument("--device", default="auto", choices=DEVICES, help=DEVICE_HELP)
    p.set_defaults(func=cmd_blank)

    p = sub.add_parser("build-defaults", help="train the embedded fingerprint set: one per generator folder")
    p.add_argument("--data", type=Path, required=True, help="folder of generator folders, each with 0_real/ 1_fake/")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--folds", type=int, default=5, help="k-fold metrics recorded in each artifact's metadata")
    p.add_argument("--pool-reals", action="store_true", help="train on the real images of every folder")
    add_training_options(p)
    p.add_argument("--reals", type=Path, action="append", default=[],
                   help="folder of real photos never trained on: each artifact's cross-validated FPR (repeatable)")
    add_null_reals_option(p)
    p.set_defaults(func=cmd_build_defaults)

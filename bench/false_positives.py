"""How often a fingerprint set calls a real photo fake: per generator and for the whole set.

Usage: python -m bench.false_positives [--fingerprints fingerprints] [--reals DIR ...] [--json out.json]
                                       [--png docs/false-positives.png]

Every real photo in ``--reals`` (default: ../shared/data/real/cbsd68, lossless PNG) that trained
none of the loaded fingerprints (checked by content against each artifact's recorded training
folders) is scored as it is and as a user might upload it: re-saved as JPEG (q95, q90, q75),
upscaled (x1.25, x1.5, x2, bicubic), mirrored and cropped by a few pixels. All of them are real photos, so every `fake`
is a false positive. Scored through ``Detector.predict``, the service's own forward pass and
rule, at the whole-set rates 1 % and 5 %, with 95 % Wilson intervals counted in photos.

The plot: (left) observed whole-set FPR against the requested rate, per variant, with the
diagonal that the rule promises not to exceed; (right) each generator's statistic on these
photos in null units against N(0, 1) (a QQ plot: points above the diagonal in the upper tail
would mean a too-narrow null).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from dif.artifact import Fingerprint, load_all
from dif.decision import REPORTED_RATES, OperatingPoint, rate_key
from dif.detector import Detector
from dif.extractors import create
from dif.images import decode_image
from testkit.paths import CBSD68, REPO
from training.data import file_digest, list_images
from training.evaluate import predict_files
from training.metrics import wilson
from training.overlap import null_fitting_digests
from training.perturb import Transform, crop, jpeg, resize

VARIANTS: dict[str, Transform | None] = {
    "as is (PNG)": None,
    "JPEG q95": jpeg(95),
    "JPEG q90": jpeg(90),
    "JPEG q75": jpeg(75),
    "upscaled x1.25": resize(1.25),
    "upscaled x1.5": resize(1.5),
    "upscaled x2": resize(2.0),
    "mirrored": lambda image: image.flip(-1).contiguous(),
    # Off the 8x8 grid: a JPEG-origin photo's block trace moves to another phase (none of these
    # offsets is one the trainer fits its null on: 1-3, 3-6, 6-1).
    "cropped 1,1 px": crop(1, 1),
    "cropped 0,3 px": crop(0, 3),
    "cropped 5,7 px": crop(5, 7),
    "cropped 2,2 px": crop(2, 2),
}
CURVE_RATES = np.geomspace(1e-4, 0.2, 40)


def training_digests(fingerprints: list[Fingerprint]) -> set[str]:
    """Content digests of every real photo the artifacts record training on (where it is still on disk)."""
    folders: set[Path] = set()
    for fp in fingerprints:
        provenance = fp.metadata.get("provenance") or {}
        if provenance.get("data"):
            folders.add(Path(provenance["data"]) / "0_real")
        folders.update(Path(p) for p in provenance.get("extra_real") or [])
    digests = set()
    for folder in folders:
        resolved = folder if folder.is_absolute() else REPO / folder
        if resolved.is_dir():
            digests.update(file_digest(p) for p in list_images(resolved))
    return digests


def unseen_reals(folders: list[Path], fingerprints: list[Fingerprint]) -> tuple[list[Path], int]:
    """Photos of ``folders`` that neither trained a fingerprint nor fitted its null."""
    excluded = training_digests(fingerprints) | null_fitting_digests(fingerprints)
    paths = [p for folder in folders for p in list_images(folder)]
    kept = [p for p in paths if file_digest(p) not in excluded]
    return kept, len(paths) - len(kept)


def p_values(detector: Detector, paths: list[Path], transform: Transform | None) -> torch.Tensor:
    """``[N, G]`` per-generator p-values through the service's forward pass."""
    rows = [[g.p_value for g in image.generators] for image in predict_files(detector, paths, transform)]
    return torch.tensor(rows, dtype=torch.float64)


def counts(p: torch.Tensor, rate: float) -> dict[str, object]:
    """Whole-set and per-generator false positives at ``rate`` (Bonferroni, as the service)."""
    flagged = p * p.shape[1] <= rate
    n = p.shape[0]
    overall = int(flagged.any(dim=1).sum())
    return {"overall": overall, "n": n, "fpr": overall / n, "interval": wilson(overall, n),
            "per_generator": [int(v) for v in flagged.sum(dim=0)]}


def null_units(detector: Detector, p: torch.Tensor) -> torch.Tensor:
    """Per-generator p-values back to N(0, 1) units (for the QQ plot)."""
    searched = detector.null_searched
    one_sided = -torch.expm1(torch.log1p(-p.clamp(max=1 - 1e-16)) / searched)  # undo the Sidak count
    return -torch.special.ndtri(one_sided.clamp(1e-300, 1 - 1e-16))


def plot(results: dict[str, torch.Tensor], detector: Detector, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 5.5))
    pooled = {"all variants pooled": torch.cat(list(results.values()))}
    for name, p in {**results, **pooled}.items():
        observed = [float((p * p.shape[1] <= r).any(dim=1).double().mean()) for r in CURVE_RATES]
        style = {"color": "black", "lw": 2.5} if name in pooled else {"lw": 1.0, "alpha": 0.8}
        # Zero observed false positives are drawn on the floor of the axis.
        left.plot(CURVE_RATES, np.maximum(observed, 1e-4), label=f"{name} (n={p.shape[0]})", **style)
    left.plot(CURVE_RATES, CURVE_RATES, "r--", lw=1.5, label="promised: observed <= requested")
    left.set(xscale="log", yscale="log", xlabel="requested whole-set false-positive rate (DIF_FALSE_POSITIVE_RATE)",
             ylabel="observed share of real photos answered fake", ylim=(8e-5, 1),
             title=f"Whole set of {len(detector.names)} generators on real photos it never saw")
    left.legend(fontsize=7, loc="upper left")
    left.grid(True, which="both", alpha=0.3)
    every = torch.cat(list(results.values()))
    z = null_units(detector, every)
    theory = torch.special.ndtri((torch.arange(1, z.shape[0] + 1) - 0.5) / z.shape[0]).numpy()
    for g, name in enumerate(detector.names):
        right.plot(theory, np.sort(z[:, g].numpy()), ".", ms=3, label=name)
    right.plot([-4, 4], [-4, 4], "k--", lw=1.5, label="N(0, 1)")
    right.set(xlabel="N(0, 1) quantile", ylabel="statistic in null units (sign x stat / scale)",
              title=f"Null model check: {z.shape[0]} real-photo scorings per generator", xlim=(-4, 4), ylim=(-5, 6))
    right.legend(fontsize=8)
    right.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fingerprints", type=Path, default=REPO / "fingerprints")
    parser.add_argument("--reals", type=Path, action="append", default=[])
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--png", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(2)
    fingerprints = load_all(args.fingerprints)
    detector = Detector(fingerprints, create(fingerprints[0].extractor_key), "cpu")
    paths, skipped = unseen_reals(args.reals or [CBSD68], fingerprints)
    print(f"{len(paths)} real photos no loaded fingerprint trained on or fitted its null on ({skipped} skipped); "
          f"generators: {', '.join(detector.names)}", flush=True)
    results = {name: p_values(detector, paths, transform) for name, transform in VARIANTS.items()}
    report: dict[str, object] = {"generators": detector.names, "n_photos": len(paths), "skipped_trained": skipped,
                                 "variants": {}}
    header = " | ".join(f"at {r:.0%}: fake (FPR, 95 % CI) | per generator" for r in REPORTED_RATES)
    print(f"\n| variant | {header} |\n|---|" + "---|---|" * len(REPORTED_RATES))
    for name, p in list(results.items()) + [("all variants", torch.cat(list(results.values())))]:
        cells = {rate_key(r): counts(p, r) for r in REPORTED_RATES}
        report["variants"][name] = cells  # type: ignore[index]
        row = " | ".join(f"{c['overall']}/{c['n']} ({c['fpr']:.3f}, {c['interval'][0]:.3f}-{c['interval'][1]:.3f})"
                         f" | {' '.join(map(str, c['per_generator']))}" for c in cells.values())
        print(f"| {name} | {row} |")
    # The plain photos one more way: the operating point the service runs at by default.
    default = detector.predict([detector.prepare(decode_image(p)) for p in paths[:8]], OperatingPoint())
    print(f"\nfirst 8 photos at the default point: {[v.verdict for v in default.images]}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=1) + "\n")
    if args.png:
        plot(results, detector, args.png)
        print(f"plot: {args.png}")


if __name__ == "__main__":
    main()

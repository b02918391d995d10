"""How wide each photo collection spreads against the embedded fingerprints, per null variant.

Usage: python -m bench.null_spread [--fingerprints fingerprints] [--generators sd14,mj,dalle_mini]

A fingerprint's null must hold for every collection users bring, so its scale is the widest
one fitted (``dif.decision.widest``). This prints, per collection (the half of CBSD68 that
fitted the nulls, the half nothing saw, the sample reals the set trained on) and per variant
(as they are, and each of ``training.perturb.NULL_VARIANTS``), the two widths ``fit_null``
reads off raw statistics: the RMS of the positive part and the 98th percentile over its
normal quantile, then the largest value. Where a generator's scale comes from, and so where
its margin goes, is the widest cell of its column.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from dif.decision import tail_widths
from dif.detector import Detector
from dif.errors import DifError
from dif.fingerprint_set import load_fingerprint_set
from dif.images import decode_image
from testkit.paths import CBSD68, LTIM
from training.perturb import NULL_VARIANTS, Transform


def widths(values: torch.Tensor) -> tuple[float, float, float]:
    """``fit_null``'s two readings of one column of raw statistics (sign applied), and its maximum."""
    return (*tail_widths(values), float(values.max()))


def statistics(detector: Detector, images: list[torch.Tensor], transform: Transform | None) -> torch.Tensor:
    """``[N, G]`` raw decision statistics, oriented by each null's sign (images too small are skipped)."""
    prepared = []
    for image in images:
        try:
            prepared.append(detector.prepare(image if transform is None else transform(image)))
        except DifError:
            continue
    scores = detector.scores(prepared).cpu()
    return scores.pick(detector.statistics).double() * detector.null_sign


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fingerprints", type=Path, default=Path("fingerprints"))
    parser.add_argument("--generators", default="sd14,mj,dalle_mini")
    args = parser.parse_args()
    torch.set_num_threads(2)
    loaded = load_fingerprint_set(args.fingerprints, None)
    wanted = args.generators.split(",")
    fingerprints = [f for f in loaded.fingerprints if f.name in wanted]
    detector = Detector(fingerprints, loaded.extractor, "cpu")
    photos = sorted(CBSD68.glob("*.png"))
    collections = {"CBSD68, null half": photos[0::2], "CBSD68, unseen half": photos[1::2],
                   "sample reals (trained on)": sorted(LTIM.glob("*/0_real/*"))}
    variants: dict[str, Transform | None] = {"as they are": None, **NULL_VARIANTS}
    print("cells: RMS of the positive part / 98th percentile over its normal quantile / max, raw statistic\n")
    print("| collection | variant | " + " | ".join(f.name for f in fingerprints) + " |")
    print("|---|---|" + "---|" * len(fingerprints))
    for label, paths in collections.items():
        images = [decode_image(p.read_bytes()) for p in paths]
        for variant, transform in variants.items():
            columns = statistics(detector, images, transform).T
            cells = " | ".join("{:.2f} / {:.2f} / {:.1f}".format(*widths(c)) for c in columns)
            print(f"| {label} | {variant} | {cells} |", flush=True)
    print("\nscales: " + ", ".join(f"{f.name} {f.null_model.scale:.2f}" for f in fingerprints))


if __name__ == "__main__":
    main()

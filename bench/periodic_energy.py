"""Which generators leave a periodic trace at all: per image, and in 1,024-image fingerprints.

Usage: python -m bench.periodic_energy [--periods 2,4,8,16] [--jpeg 95,90,75] [--json F]
                                       [--png docs/periodic-energy.png]

For every image, whether its residual has any P-periodic content beyond what noise leaves,
at any phase, so no fingerprint is needed (``training.periodicity.residual_ratio``: about 1
for noise, far above 1 for a fixed pattern on a P-pixel grid).

The same subspace's share of a fingerprint's energy, over the share white noise would have,
says whether a fingerprint is periodic: for the reference's released ones (1,024 fakes each,
its U-Net prior) and our embedded ones (10 fakes; the lattice estimators are periodic by
construction, so only the plain ``mean`` ones are informative).

``--jpeg``: also every fake and CBSD68 photo re-saved as JPEG at these qualities, to see how much
of a trace a re-save leaves for any fingerprint to find.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from bench.common import GENERATORS
from dif.artifact import load_fingerprint
from dif.detection import DEFAULT_EXTRACTOR
from dif.extractors import create
from dif.images import decode_image
from dif.scoring import lattice_cell
from testkit.paths import CBSD68, LTIM, REFERENCE
from training.importer import import_reference
from training.periodicity import pattern_ratio, residual_ratio
from training.perturb import Transform, jpeg


def image_ratios(paths: list[Path], periods: list[int], transform: Transform | None = None) -> dict[int, list[float]]:
    extractor = create(DEFAULT_EXTRACTOR)
    out: dict[int, list[float]] = {p: [] for p in periods}
    for path in paths:
        image = decode_image(path)
        with torch.no_grad():
            residual = extractor((transform(image) if transform else image)[None])[0]
        for period in periods:
            out[period].append(residual_ratio(residual, period))
    return out


def shared_lattice(tensors: dict[str, torch.Tensor], periods: list[int]) -> dict[int, dict[str, float]]:
    """Cosine between the reference fingerprints' P-periodic cells, over all 12 generators.

    A lattice the fingerprint network puts into every output (its own up- and down-sampling) is
    shared by unrelated generators; a generator's own trace is not.
    """
    print(f"\nReference fingerprints' periodic cells, cosine between the {len(tensors)} generators")
    out: dict[int, dict[str, float]] = {}
    for period in periods:
        cells = torch.stack([lattice_cell(t.reshape(-1, *t.shape[-2:]).double(), period).flatten()
                             for t in tensors.values()])
        unit = cells / cells.norm(dim=1, keepdim=True)
        cosine = unit @ unit.T
        names = list(tensors)
        pairs = cosine[torch.triu(torch.ones_like(cosine, dtype=torch.bool), diagonal=1)].abs()
        glide = {n: round(float(cosine[names.index("glide"), i]), 2) for i, n in enumerate(names) if n != "glide"}
        out[period] = {"median_abs": float(pairs.median()), **{f"glide~{n}": v for n, v in glide.items()}}
        print(f"P={period}: median |cosine| over pairs {float(pairs.median()):.2f}; GLIDE's with each: {glide}")
    return out


def treated_alike(names: list[str], name: str) -> list[str]:
    """The photo groups a fake group is compared with: those treated the same way (as they are, or
    re-saved alike; a name's treatment follows its ", ")."""
    return [n for n in names if "fakes" not in n and n.partition(", ")[2] == name.partition(", ")[2]]


def plot(groups: dict[str, dict[int, list[float]]], periods: list[int], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(groups)
    width = max(4.2, 0.3 * len(names))
    fig, axes = plt.subplots(1, len(periods), figsize=(width * len(periods), 5.5), sharey=False)
    for ax, period in zip(np.atleast_1d(axes), periods, strict=True):
        for i, name in enumerate(names):
            values = np.array(groups[name][period])
            jitter = np.random.default_rng(i).uniform(-0.15, 0.15, len(values))
            ax.plot(i + jitter, values, ".", ms=5, alpha=0.8)
        # Fakes are compared with photos treated alike (as they are, or re-saved the same way).
        for k, first in enumerate(dict.fromkeys(n.partition(", ")[2] for n in names)):
            xs = [i for i, n in enumerate(names) if n.partition(", ")[2] == first]
            reals = [max(groups[n][period]) for n in treated_alike(names, names[xs[0]])]
            if reals:
                ax.hlines(max(reals), min(xs) - 0.4, max(xs) + 0.4, colors="r", linestyles="--", lw=1,
                          label="largest real photo, treated alike" if k == 0 else None)
        ax.axhline(1.0, color="k", ls=":", lw=1, label="noise (1)")
        ax.set(yscale="log", title=f"period {period} px", ylabel="periodic energy / noise's (log)")
        ax.set_xticks(range(len(names)), names, rotation=60, ha="right", fontsize=8)
        ax.grid(True, axis="y", which="both", alpha=0.3)
    np.atleast_1d(axes)[0].legend(fontsize=8)
    fig.suptitle("Periodic energy of each image's signlap residual, any phase (block grid removed)", fontsize=10)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--periods", default="2,4,8,16")
    parser.add_argument("--fingerprints", type=Path, default=Path("fingerprints"))
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--png", type=Path, default=None)
    parser.add_argument("--jpeg", default="", help="also re-saved as JPEG at these qualities, e.g. 95,90,75")
    args = parser.parse_args()
    torch.set_num_threads(2)
    periods = [int(p) for p in args.periods.split(",")]
    groups = {f"{g} fakes": sorted((LTIM / g / "1_fake").iterdir()) for g in GENERATORS}
    groups["sample reals (web JPEG)"] = sorted(LTIM.glob("*/0_real/*"))
    groups["CBSD68 photos"] = sorted(CBSD68.glob("*.png"))
    measured = {name: image_ratios(paths, periods) for name, paths in groups.items()}
    for quality in [int(q) for q in args.jpeg.split(",") if q]:
        for name in [n for n in groups if "fakes" in n or "CBSD68" in n]:
            measured[f"{name}, JPEG q{quality}"] = image_ratios(groups[name], periods, jpeg(quality))

    print("Per image: periodic energy over noise's (~1 without a periodic trace); median [max]")
    print(f"{'images':36s}" + "".join(f"{'P=' + str(p):>16s}" for p in periods)
          + "   n above every real photo (treated alike)")
    for name, by_period in measured.items():
        cells = "".join(f"{np.median(v):>8.2f} [{max(v):5.2f}]" for v in by_period.values())
        reals = treated_alike(list(measured), name)
        above = ([sum(x > max(max(measured[n][p]) for n in reals) for x in by_period[p]) for p in periods]
                 if "fakes" in name else [])
        print(f"{name:36s}{cells}   {above if above else ''}")

    references = {f.name: import_reference(f).tensor for f in sorted(REFERENCE.iterdir()) if f.is_dir()}
    fingerprints: dict[str, dict[str, list[float]]] = {}
    print("\nFingerprints: share of energy on the P-lattice over white noise's (1 = no periodic part)")
    for name in GENERATORS:
        rows = {"reference (1,024 fakes)": references[name]}
        ours = args.fingerprints / name
        if ours.is_dir():
            fp = load_fingerprint(ours)
            rows[f"ours ({fp.metadata.get('estimator', {}).get('name', '?')})"] = fp.tensor
        for label, tensor in rows.items():
            ratios = [pattern_ratio(tensor.reshape(-1, *tensor.shape[-2:]), p) for p in periods]
            fingerprints.setdefault(name, {})[label] = ratios
            print(f"{name:11s} {label:26s}" + "".join(f"{'P=' + str(p)}: {r:8.1f}  " for p, r in zip(periods, ratios,
                                                                                                 strict=True)))
    shared = shared_lattice(references, periods)
    if args.json:
        args.json.write_text(json.dumps({"images": measured, "fingerprints": fingerprints,
                                         "reference_cell_cosine": shared}, indent=1))
    if args.png:
        plot(measured, periods, args.png)
        print(f"wrote {args.png}")


if __name__ == "__main__":
    main()

"""Can the shape of an image's spectrum tell GLIDE or DALL·E 2 from a photo? Only as "resampled".

Usage: python -m bench.spectral_falloff [--json F] [--png docs/spectral-falloff.png]

GLIDE and DALL·E 2 leave no periodic trace (``bench.periodic_energy``), so the one spectral lead
left is aperiodic: how a generator's power falls off towards the Nyquist frequency. Per image,
with no fingerprint (``training.falloff``): the power of a central crop's linear Laplacian residual
in radial bands, and the log10 share of the outermost band (radius >= 0.9 of Nyquist).

The photos are also measured after what users do to them: upscaled x1.25/x1.5/x2 (bicubic) and
re-saved as JPEG q90/q75. A fake group is separable at a 1 % rate only if it sits apart from
every such group, since the service must hold its rate on all of them (issue 13, item 3).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from bench.common import GENERATORS
from dif.images import decode_image
from testkit.paths import CBSD68, LTIM
from training.falloff import BANDS, TOP, high_share, laplacian_power, radial_profile
from training.perturb import Transform, jpeg, resize

PHOTO_VARIANTS: dict[str, Transform | None] = {
    "": None, "upscaled x1.25": resize(1.25), "upscaled x1.5": resize(1.5), "upscaled x2": resize(2.0),
    "JPEG q90": jpeg(90), "JPEG q75": jpeg(75),
}


def measure(paths: list[Path], transform: Transform | None = None) -> tuple[list[float], np.ndarray]:
    shares, profiles = [], []
    for path in paths:
        image = decode_image(path)
        power = laplacian_power(transform(image) if transform is not None else image)
        if power is None:  # one web photo's central crop is a flat background
            continue
        shares.append(high_share(power))
        profiles.append(radial_profile(power))
    return shares, np.array(profiles)


def auc_below(fakes: list[float], reals: list[float]) -> float:
    """P(a fake's share < a photo's): 1.0 when every fake has less high-frequency power."""
    f, r = np.array(fakes)[:, None], np.array(reals)[None, :]
    return float((f < r).mean() + 0.5 * (f == r).mean())


def plot(profiles: dict[str, np.ndarray], shares: dict[str, list[float]], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(15, 5.5))
    centres = (np.arange(BANDS) + 0.5) / BANDS
    colours = {name: plt.cm.tab20(i % 20) for i, name in enumerate(profiles)}  # more groups than tab10 has
    for name, values in profiles.items():
        style = "-" if "fakes" in name else "--"
        left.plot(centres, np.median(values, axis=0), style, marker=".", color=colours[name], label=name)
    left.set(xlabel="radial frequency / Nyquist (last band: the corners too)",
             ylabel="log10 share of the residual's power (median over images)",
             title="Radial power profile of the 3x3 Laplacian residual")
    left.grid(True, alpha=0.3)
    left.legend(fontsize=7)
    names = list(shares)
    for i, name in enumerate(names):
        jitter = np.random.default_rng(i).uniform(-0.15, 0.15, len(shares[name]))
        right.plot(i + jitter, shares[name], "." if "fakes" in name else "x", ms=5, alpha=0.8, color=colours[name])
    glide = shares.get("glide fakes")
    if glide:
        right.axhline(max(glide), color="r", ls="--", lw=1, label="highest GLIDE fake")
        right.legend(fontsize=8)
    right.set_xticks(range(len(names)), names, rotation=60, ha="right", fontsize=8)
    right.set(ylabel=f"log10 share of power at radius >= {TOP} Nyquist",
              title="Per image: high-frequency share (lower: smoother)")
    right.grid(True, axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--png", type=Path, default=None)
    args = parser.parse_args()
    groups: dict[str, tuple[list[Path], Transform | None]] = {
        f"{g} fakes": (sorted((LTIM / g / "1_fake").iterdir()), None) for g in GENERATORS}
    groups["sample reals (web JPEG)"] = (sorted(LTIM.glob("*/0_real/*")), None)
    photos = sorted(CBSD68.glob("*.png"))
    for variant, transform in PHOTO_VARIANTS.items():
        groups[f"CBSD68 photos{', ' + variant if variant else ''}"] = (photos, transform)
    shares, profiles = {}, {}
    for name, (paths, transform) in groups.items():
        shares[name], profiles[name] = measure(paths, transform)
        print(f"measured {name}: {len(shares[name])} of {len(paths)} images (a flat centre has no spectrum)",
              flush=True)

    reals = [n for n in shares if "fakes" not in n]
    print(f"\nlog10 share of the Laplacian residual's power at radius >= {TOP} x Nyquist: median [min, max]")
    print("fakes: AUC of 'smoother than the photo' against each photo group")
    print("photo groups: " + "; ".join(f"{chr(65 + i)} = {n}" for i, n in enumerate(reals)))
    letters = " ".join(f"{chr(65 + i):>5s}" for i in range(len(reals)))
    print(f"{'images':34s}{'median':>8s} {'[min, max]':>16s}   {letters}")
    summary: dict[str, dict[str, object]] = {}
    for name, values in shares.items():
        row: dict[str, object] = {"median": float(np.median(values)), "min": min(values), "max": max(values)}
        aucs = {r: auc_below(values, shares[r]) for r in reals} if "fakes" in name else {}
        if aucs:
            row["auc_smoother_than"] = aucs
        summary[name] = row
        cells = " ".join(f"{a:5.2f}" for a in aucs.values())
        print(f"{name:34s}{np.median(values):8.2f} [{min(values):6.2f}, {max(values):6.2f}]   {cells}")
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2))
    if args.png:
        plot(profiles, shares, args.png)
        print(f"wrote {args.png}")


if __name__ == "__main__":
    main()

"""Training at scale: one fingerprint from 1024 real + 1024 generated images on this machine.

    python -m bench.train_scale [--count 1024] [--size 512] [--work /tmp/dif-train-scale]

The shared sample data holds ten images per class, so the large set is made
here: random ``--size`` crops (and mirror flips) of the shared real photos, and
the same kind of crops pushed through a toy upsampling generator
(``testkit/synthetic.py``) for the fake class. Photos are split first, so
the held-out test set (``--test`` per class) comes from photos no training
image was cut from.

Runs ``dif train`` on the small set (10 + 10, the baseline) and on the large
one, each in its own process, and reports wall time and peak resident memory
(the kernel's ``ru_maxrss`` of that process) plus the accuracy of the large
fingerprint on the held-out set (``dif eval``). Everything lands in ``--work``;
the generated images are reused by later runs.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from dif.images import decode_image
from testkit.paths import LTIM, REPO
from testkit.synthetic import ToyGenerator, save_png

GIB = 1024**3
CROP = 256


@dataclass
class Run:
    images: int
    wall_s: float
    peak_rss_gib: float
    residual_cache_gib: float  # what the crops' residuals alone take (fp16 above 512 images)


def photos(size: int) -> list[torch.Tensor]:
    found = [decode_image(p) for p in sorted(LTIM.glob("*/0_real/*"))]
    usable = [img for img in found if min(img.shape[1:]) >= size]
    if len(usable) < 10:
        sys.exit(f"need at least 10 real photos >= {size} px under {LTIM}, found {len(usable)}")
    return usable


def random_crop(photo: torch.Tensor, size: int, rng: random.Random) -> torch.Tensor:
    _, h, w = photo.shape
    top, left = rng.randrange(h - size + 1), rng.randrange(w - size + 1)
    crop = photo[:, top : top + size, left : left + size]
    return crop.flip(-1) if rng.random() < 0.5 else crop


def write_split(root: Path, sources: list[torch.Tensor], count: int, size: int, generator: ToyGenerator,
                seed: int) -> Path:
    if (root / "done").exists():
        return root
    rng = random.Random(seed)
    for i in tqdm(range(count), desc=f"images {root.name}", unit="pair"):
        save_png(random_crop(rng.choice(sources), size, rng), root / "0_real" / f"r{i:05d}.png")
        save_png(generator(random_crop(rng.choice(sources), size, rng)), root / "1_fake" / f"f{i:05d}.png")
    (root / "done").touch()
    return root


def dif(*args: str) -> tuple[float, float, str]:
    """Run ``dif ARGS`` in a fresh process: (wall seconds, peak RSS in GiB, stdout)."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "dif_cli", *args], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        sys.exit(f"dif {' '.join(args)} failed with {proc.returncode}")
    return wall, usage.ru_maxrss * 1024 / GIB, out  # Linux reports ru_maxrss in KiB


def train(data: Path, out: Path, images: int, crops: int) -> Run:
    wall, peak, _ = dif("train", str(data), "--out", str(out), "--device", "cpu", "--quiet")
    per_crop = 3 * CROP * CROP * (2 if images > 512 else 4)  # training/data.py keeps fp16 above 512 images
    return Run(images, wall, peak, images * crops * per_crop / GIB)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=1024, help="images per class in the large training set")
    parser.add_argument("--size", type=int, default=512, help="side of every generated image (512: 4 crops)")
    parser.add_argument("--test", type=int, default=100, help="held-out images per class")
    parser.add_argument("--work", type=Path, default=Path("/tmp/dif-train-scale"))
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args()

    sources = photos(args.size)
    rng = random.Random(0)
    rng.shuffle(sources)
    held = max(2, len(sources) // 5)
    train_photos, test_photos = sources[held:], sources[:held]
    generator = ToyGenerator(seed=1, stride=2)
    crops = min(4, (args.size // CROP) ** 2)  # grid crops per image (Detection.max_crops = 4)

    small = write_split(args.work / "train-10", train_photos, 10, args.size, generator, seed=1)
    large = write_split(args.work / f"train-{args.count}", train_photos, args.count, args.size, generator, seed=2)
    test = write_split(args.work / "test", test_photos, args.test, args.size, generator, seed=3)

    runs = [train(small, args.work / "fp-10", 20, crops),
            train(large, args.work / f"fp-{args.count}", 2 * args.count, crops)]
    _, _, report = dif("eval", str(args.work / f"fp-{args.count}"), str(test), "--json", "--device", "cpu")
    accuracy = json.loads(report.strip().splitlines()[-1])

    base, big = runs
    print(f"{'images':>7} {'wall s':>8} {'peak RSS GiB':>13} {'residual cache GiB':>19}")
    for run in runs:
        print(f"{run.images:>7} {run.wall_s:>8.1f} {run.peak_rss_gib:>13.2f} {run.residual_cache_gib:>19.2f}")
    print(f"{big.images / base.images:.0f}x the images: {big.wall_s / base.wall_s:.1f}x the wall time, "
          f"{big.wall_s / big.images * 1000:.0f} ms per image; peak memory {big.peak_rss_gib:.2f} GiB "
          f"= {big.peak_rss_gib / big.residual_cache_gib:.2f}x the residual cache")
    print(f"held-out accuracy {accuracy['accuracy']:.3f} (AUC {accuracy['auc']:.3f}) on "
          f"{accuracy['n_real']} + {accuracy['n_fake']} images from unseen photos")
    if args.json:
        args.json.write_text(json.dumps({"runs": [asdict(r) for r in runs], "held_out": accuracy,
                                         "cpu_count": os.cpu_count()}, indent=2))


if __name__ == "__main__":
    main()

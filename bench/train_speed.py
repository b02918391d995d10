"""Training speed: cached residuals vs re-extracting them at every step (the reference's way).

Usage: python -m bench.train_speed [--steps 20] [--width 8] [--generator mj]

Both loops run the same U-Net prior, loss and step count on the same crops in
one process; the only difference is whether the residual extractor runs once
(before training) or on every step's batch. Printed as a ratio. The reference
denoiser (17 layers, 64 channels) is stood in for by an untrained DnCNN of the
same size, since only its cost matters here.
"""

from __future__ import annotations

import argparse
import time

import torch

from dif.detector import extract_residuals
from dif.extractors import DEFAULT_EXTRACTOR, DnCNN, create
from dif.images import decode_image, grid_crops
from dif.scoring import standardize
from dif.unet import UNet
from testkit.paths import LTIM
from training.data import list_images
from training.trainer import TrainConfig, pairwise_margin_loss, train_fingerprint


def crops_of(folder, count: int) -> torch.Tensor:
    return torch.cat([grid_crops(decode_image(p), 256, 1, 16)[0] for p in list_images(folder)[:count]])


def reextracting_loop(extractor, real_crops, fake_crops, cfg: TrainConfig) -> None:
    torch.manual_seed(cfg.seed)
    net = UNet(cfg.noise_channels, 3, cfg.depth, cfg.width)
    noise = torch.rand(1, cfg.noise_channels, 256, 256) * cfg.noise_scale
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr)
    for _ in range(cfg.steps):
        real = standardize(extract_residuals(extractor, real_crops))
        fake = standardize(extract_residuals(extractor, fake_crops))
        unit = standardize(net(noise + torch.randn_like(noise) * cfg.jitter))[0]
        loss = pairwise_margin_loss(real @ unit, fake @ unit, cfg.margin)
        opt.zero_grad()
        loss.backward()
        opt.step()


def cached_loop(extractor, real_crops, fake_crops, cfg: TrainConfig) -> None:
    real, fake = extract_residuals(extractor, real_crops), extract_residuals(extractor, fake_crops)
    train_fingerprint(real, fake, cfg, torch.device("cpu"), progress=False)


def timed(fn, *args) -> float:
    started = time.perf_counter()
    fn(*args)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--width", type=int, default=8)
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--generator", default="mj")
    args = parser.parse_args()
    torch.set_num_threads(2)
    real = crops_of(LTIM / args.generator / "0_real", args.images)
    fake = crops_of(LTIM / args.generator / "1_fake", args.images)
    cfg = TrainConfig(prior="unet", steps=args.steps, width=args.width, loss="pairwise")
    print(f"{args.images}+{args.images} crops of 256², U-Net width {args.width}, {args.steps} steps")
    for label, extractor in [(DEFAULT_EXTRACTOR, create(DEFAULT_EXTRACTOR)),
                             ("DnCNN 17x64 (reference-sized)", DnCNN(depth=17, width=64).eval())]:
        cached = timed(cached_loop, extractor, real, fake, cfg)
        again = timed(reextracting_loop, extractor, real, fake, cfg)
        print(f"| {label} | cached {cached:.1f} s | re-extract every step {again:.1f} s | "
              f"speed-up {again / cached:.2f}x |")


if __name__ == "__main__":
    main()

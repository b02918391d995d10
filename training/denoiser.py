"""Training our own DnCNN-style residual extractor on real photos.

The reference denoiser's weights were never published. This one learns to
predict additive Gaussian noise on patches of real photos; at inference its
noise estimate is the residual.
"""

from __future__ import annotations

import random
from dataclasses import asdict
from pathlib import Path

import torch
from torch.nn import functional as F
from tqdm import tqdm

from dif.errors import DatasetError
from dif.extractors import DnCNN, save_denoiser
from dif.images import decode_image
from training.config import DenoiserConfig
from training.data import IMAGE_SUFFIXES
from training.trainer import seed_everything


def load_photos(folder: Path, limit: int = 500) -> list[torch.Tensor]:
    paths = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())[:limit]
    if not paths:
        raise DatasetError(f"{folder} holds no images to train a denoiser on")
    return [decode_image(p) for p in paths]


def sample_patches(photos: list[torch.Tensor], count: int, size: int, rng: random.Random) -> torch.Tensor:
    patches = []
    for _ in range(count):
        img = photos[rng.randrange(len(photos))]
        _, h, w = img.shape
        if h < size or w < size:
            img = F.interpolate(img[None], size=(max(h, size), max(w, size)), mode="bilinear")[0]
            _, h, w = img.shape
        top, left = rng.randrange(h - size + 1), rng.randrange(w - size + 1)
        patches.append(img[:, top : top + size, left : left + size])
    return torch.stack(patches)


def train_denoiser(real_dir: Path, out_dir: Path, config: DenoiserConfig, device: torch.device,
                   progress: bool = True) -> DnCNN:
    gen = seed_everything(config.seed)
    rng = random.Random(config.seed)
    photos = load_photos(real_dir)
    model = DnCNN(config.depth, config.width).to(device).train()
    opt = torch.optim.Adam(model.parameters(), lr=config.lr)
    bar = tqdm(range(config.steps), desc="denoiser", unit="step", disable=not progress)
    for _ in bar:
        clean = sample_patches(photos, config.batch, config.patch, rng)
        sigma = torch.empty(config.batch, 1, 1, 1).uniform_(config.sigma_min, config.sigma_max, generator=gen)
        noise = torch.randn(clean.shape, generator=gen) * sigma
        loss = F.mse_loss(model((clean + noise).to(device)), noise.to(device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        bar.set_postfix(psnr_gain=f"{10 * torch.log10(sigma.square().mean() / loss.detach().cpu()).item():.1f}dB")
    model.eval()
    save_denoiser(model.cpu(), out_dir, {"training": {**asdict(config), "data": str(real_dir),
                                                      "images": len(photos)}})
    return model

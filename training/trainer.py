"""The DIF fingerprint trainer.

A U-Net fed fixed noise (plus fresh jitter each step) outputs a pattern; a
pairwise margin loss on Pearson correlations pushes every fake residual's
correlation with it above every real one's. The exponential moving average of
the output is the fingerprint.
"""

from __future__ import annotations

import random

import numpy as np
import torch
from tqdm import tqdm

from dif.devices import resolve_device as resolve_device  # re-exported for the command lines
from dif.scoring import standardize
from dif.unet import UNet
from training.config import TrainConfig as TrainConfig  # re-exported: its home is torch-free
from training.data import CropSet


def seed_everything(seed: int) -> torch.Generator:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def pairwise_margin_loss(corr_real: torch.Tensor, corr_fake: torch.Tensor, margin: float) -> torch.Tensor:
    """Hinge on every (fake, real) pair: works for any class sizes, including one each."""
    gaps = corr_fake[:, None] - corr_real[None, :]
    return torch.relu(margin - gaps).mean()


def _sample(count: int, size: int, gen: torch.Generator) -> torch.Tensor:
    if count <= size:
        return torch.arange(count)
    return torch.randperm(count, generator=gen)[:size]


def standardized_mean(crops: CropSet, device: torch.device, chunk: int = 256) -> torch.Tensor:
    """Mean of the crops' standardized residuals, flattened, read ``chunk`` crops at a time."""
    total = torch.zeros(crops.crop_shape.numel(), device=device)
    for block in crops.chunks(chunk):
        total += standardize(block.to(device)).sum(0)
    return total / len(crops)


def lattice(pattern: torch.Tensor, period: int) -> torch.Tensor:
    """``[C, S, S]`` -> its P-periodic part: the mean over every P x P cell, tiled back to S x S."""
    channels, height, width = pattern.shape
    if height % period or width % period:
        raise ValueError(f"a lattice of period {period} needs a crop size divisible by it, not {height}x{width}")
    cell = pattern.reshape(channels, height // period, period, width // period, period).mean(dim=(1, 3))
    return cell.repeat(1, height // period, width // period)


def deblocked(pattern: torch.Tensor, period: int) -> torch.Tensor:
    """``[C, S, S]`` less its P-periodic *separable* part: a row profile plus a column profile of
    the P x P cell (two-way main effects), tiled.

    A block codec's grid (JPEG's 8x8 luma blocks, 16x16 with 4:2:0 chroma) leaves, on average over a
    photo, steps along block rows and block columns: in the folded cell it is almost entirely a
    function of y plus a function of x (measured on CBSD68: 92 % of the mean folded residual's
    energy; SD1.4, MJ and DALL-E Mini fakes keep 49-75 % of theirs in the remainder). The subspace is
    invariant under shifts, so a fingerprint orthogonal to it cannot hear a photo's grid at any
    phase: a crop or a re-save cannot move a real photo towards it, and the fingerprint does not
    inherit the training reals' grid with the opposite sign.
    """
    channels, height, width = pattern.shape
    if height % period or width % period:
        raise ValueError(f"deblocking with period {period} needs a crop size divisible by it, not {height}x{width}")
    cell = pattern.reshape(channels, height // period, period, width // period, period).mean(dim=(1, 3))
    rows, cols = cell.mean(2, keepdim=True), cell.mean(1, keepdim=True)
    separable = rows + cols - cell.mean(dim=(1, 2), keepdim=True)
    return pattern - separable.repeat(1, height // period, width // period)


def train_fingerprint(real: torch.Tensor | CropSet, fake: torch.Tensor | CropSet, config: TrainConfig,
                      device: torch.device, progress: bool = True) -> torch.Tensor:
    """Train on residuals ``[Nr, 3, S, S]`` and ``[Nf, 3, S, S]``; returns the fingerprint ``[3, S, S]``."""
    real = real if isinstance(real, CropSet) else CropSet.of(real)
    fake = fake if isinstance(fake, CropSet) else CropSet.of(fake)
    if len(real) == 0 or len(fake) == 0:
        raise ValueError("training needs at least one real and one fake residual")
    gen = seed_everything(config.seed)
    shape = real.crop_shape
    size = shape[-1]
    if config.prior in ("mean", "lattice"):
        mean = (standardized_mean(fake, device) - standardized_mean(real, device)).reshape(shape).float().cpu()
        return _deblock(mean if config.prior == "mean" else lattice(mean, config.period), config)
    net = UNet(config.noise_channels, 3, config.depth, config.width).to(device).train()
    noise = (torch.rand((1, config.noise_channels, size, size), generator=gen) * config.noise_scale).to(device)
    opt = torch.optim.AdamW(net.parameters(), lr=config.lr)
    ema: torch.Tensor | None = None
    first_ema_step = int(config.steps * config.ema_start)
    bar = tqdm(range(config.steps), desc="fingerprint", unit="step", disable=not progress)
    for step in bar:
        jitter = torch.randn(noise.shape, generator=gen).to(device) * config.jitter
        out = net(noise + jitter)
        unit = standardize(out)[0]
        # Each step standardizes only its own sample, so no class is ever copied whole.
        r_idx = _sample(len(real), config.batch_per_class, gen)
        f_idx = _sample(len(fake), config.batch_per_class, gen)
        c_real = standardize(real.take(r_idx).to(device)) @ unit
        c_fake = standardize(fake.take(f_idx).to(device)) @ unit
        if config.loss == "gap":
            loss = c_real.mean() - c_fake.mean()
        else:
            loss = pairwise_margin_loss(c_real, c_fake, config.margin)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step >= first_ema_step:
            detached = out.detach()[0]
            ema = detached if ema is None else config.ema * ema + (1 - config.ema) * detached
        bar.set_postfix(loss=f"{loss.item():.4f}", real=f"{c_real.mean().item():+.3f}",
                        fake=f"{c_fake.mean().item():+.3f}")
    assert ema is not None
    return _deblock(ema.float().cpu(), config)


def _deblock(pattern: torch.Tensor, config: TrainConfig) -> torch.Tensor:
    return deblocked(pattern, config.deblock) if config.deblock else pattern

"""A toy image generator for end-to-end tests: photos pushed through a random upsampling network.

Transposed-convolution upsampling with a random kernel stamps a periodic
pattern on every output, the same mechanism that leaves fingerprints in real
CNN generators. Different seeds give unrelated generators.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.nn import functional as F


class ToyGenerator(nn.Module):
    def __init__(self, seed: int, stride: int = 2, strength: float = 0.15):
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.stride = stride
        self.up = nn.ConvTranspose2d(3, 3, kernel_size=2 * stride, stride=stride, padding=stride // 2, bias=True)
        with torch.no_grad():
            # Start from a plain nearest-neighbour upsampler, then perturb it randomly.
            base = torch.zeros_like(self.up.weight)
            for c in range(3):
                base[c, c, stride // 2 : stride // 2 + stride, stride // 2 : stride // 2 + stride] = 1.0
            noise = torch.randn(self.up.weight.shape, generator=gen) * strength / stride
            self.up.weight.copy_(base + noise)
            self.up.bias.copy_(torch.randn(3, generator=gen) * 0.01)

    @torch.no_grad()
    def forward(self, image: torch.Tensor) -> torch.Tensor:
        low = F.avg_pool2d(image[None], self.stride)
        out = self.up(low)[0]
        return out[:, : image.shape[1], : image.shape[2]].clamp(0, 1)


def save_png(image: torch.Tensor, path: Path) -> None:
    arr = (image.permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)


def photo_crops(photos: list[Path], size: int = 320) -> list[torch.Tensor]:
    """Centre crops of real photos (decoded, so JPEG origin is kept in both classes)."""
    from dif.images import decode_image

    crops = []
    for p in photos:
        img = decode_image(p)
        _, h, w = img.shape
        if h >= size and w >= size:
            top, left = (h - size) // 2, (w - size) // 2
            crops.append(img[:, top : top + size, left : left + size])
    return crops


def write_dataset(root: Path, reals: list[torch.Tensor], fakes_from: list[torch.Tensor],
                  generator: Callable[[torch.Tensor], torch.Tensor]) -> Path:
    """``reals`` as they are and ``generator``'s output of each of ``fakes_from``, in the 0_real/1_fake layout."""
    for i, img in enumerate(reals):
        save_png(img, root / "0_real" / f"r{i:03d}.png")
    for i, img in enumerate(fakes_from):
        save_png(generator(img), root / "1_fake" / f"f{i:03d}.png")
    return root

"""The fingerprint prior: a small U-Net that maps fixed noise to an image-sized pattern."""

from __future__ import annotations

import torch
from torch import nn


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.LeakyReLU(0.2, inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.LeakyReLU(0.2, inplace=True),
    )


class UNet(nn.Module):
    """``depth`` resolution levels, ``width`` channels at the top, doubling per level."""

    def __init__(self, in_channels: int = 16, out_channels: int = 3, depth: int = 4, width: int = 32):
        super().__init__()
        widths = [width * 2**i for i in range(depth)]
        self.down = nn.ModuleList()
        cin = in_channels
        for w in widths:
            self.down.append(_block(cin, w))
            cin = w
        self.pool = nn.AvgPool2d(2)
        self.up = nn.ModuleList()
        self.merge = nn.ModuleList()
        for w_hi, w_lo in zip(reversed(widths[:-1]), reversed(widths[1:]), strict=True):
            self.up.append(nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False))
            self.merge.append(_block(w_lo + w_hi, w_hi))
        self.head = nn.Conv2d(widths[0], out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for i, block in enumerate(self.down):
            x = block(x if i == 0 else self.pool(x))
            skips.append(x)
        skips.pop()
        for up, merge in zip(self.up, self.merge, strict=True):
            x = merge(torch.cat([up(x), skips.pop()], dim=1))
        return self.head(x)

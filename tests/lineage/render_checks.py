"""Pixel checks of rendered PNGs: does a picture carry a colour scale?"""

from __future__ import annotations

import numpy as np
from PIL import Image

COLUMN_STEP = 3  # a colour bar is at least 10 pixels wide
# A scale covers at least 40 % of its map (a decision line drawn across it may split it in two)
# in at least 40 distinct colours.
SPAN, DISTINCT = 100, 40


def colour_scale_length(image: Image.Image, cmap: str) -> int:
    """Height in pixels of the longest vertical run that walks ``cmap`` monotonically across much of its range.

    A colour bar is such a run; the cells of a heatmap or the pixels of a picture are not (they
    hold a few values, or jump back and forth). 0 when there is none.
    """
    from matplotlib import colormaps

    table = (colormaps[cmap](np.linspace(0, 1, 256))[:, :3] * 255).astype(np.float32)
    pixels = np.asarray(image.convert("RGB"))[:, ::COLUMN_STEP, :].transpose(1, 0, 2)
    # A picture has far fewer distinct colours than pixels: match each colour once.
    packed = pixels.astype(np.uint32) @ np.array([1 << 16, 1 << 8, 1], dtype=np.uint32)
    codes, inverse = np.unique(packed.ravel(), return_inverse=True)
    colours = np.stack([(codes >> 16) & 255, (codes >> 8) & 255, codes & 255], axis=1).astype(np.float32)
    distance = ((colours[:, None, :] - table[None, :, :]) ** 2).sum(axis=2)
    nearest = distance.argmin(axis=1)
    close = distance[np.arange(len(nearest)), nearest] < 12.0
    index = nearest[inverse.ravel()].reshape(pixels.shape[:2])
    on_map = close[inverse.ravel()].reshape(pixels.shape[:2])
    return max((_monotone_run(column, ok) for column, ok in zip(index, on_map, strict=True)), default=0)


def _monotone_run(index: np.ndarray, on_map: np.ndarray) -> int:
    """Longest stretch of on-map pixels whose index only goes one way and spans most of the map."""
    steps = np.diff(index)
    sign = np.sign(steps)
    # the direction so far at each step: the last non-zero sign (0 before the first one)
    last = np.maximum.accumulate(np.where(sign != 0, np.arange(len(sign)), -1))
    direction = np.where(last >= 0, sign[np.maximum(last, 0)], 0)
    turned = np.zeros(len(sign), dtype=bool)
    turned[1:] = (sign[1:] != 0) & (direction[:-1] != 0) & (sign[1:] != direction[:-1])
    # a run breaks before pixel i+1 when either pixel is off the map or the walk turns back
    breaks = ~on_map[1:] | ~on_map[:-1] | turned
    starts = np.concatenate(([0], np.nonzero(breaks)[0] + 1))
    ends = np.concatenate((starts[1:], [len(index)]))
    span = np.maximum.reduceat(index, starts) - np.minimum.reduceat(index, starts)
    # distinct colours of a monotone run = its changes + 1: a bar has dozens, heatmap cells a few
    changes = np.concatenate(([0], np.cumsum(steps != 0)))
    distinct = changes[ends - 1] - changes[starts] + 1
    good = on_map[starts] & (span >= SPAN) & (distinct >= DISTINCT)
    return int((ends - starts)[good].max()) if good.any() else 0

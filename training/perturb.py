"""Image perturbations for robustness tests and for training augmentation.

Each takes and returns a float ``[3, H, W]`` tensor in ``[0, 1]``.
"""

from __future__ import annotations

import io
from collections.abc import Callable

import numpy as np
import torch
from PIL import Image

Transform = Callable[[torch.Tensor], torch.Tensor]


def to_pil(image: torch.Tensor) -> Image.Image:
    array = (image.clamp(0, 1).permute(1, 2, 0).numpy() * 255.0 + 0.5).astype(np.uint8)
    return Image.fromarray(array, "RGB")


def from_pil(image: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0).permute(2, 0, 1).contiguous()


def jpeg(quality: int) -> Transform:
    def apply(image: torch.Tensor) -> torch.Tensor:
        buf = io.BytesIO()
        to_pil(image).save(buf, format="JPEG", quality=quality)
        return from_pil(Image.open(io.BytesIO(buf.getvalue())))
    return apply


def shift(dy: int, dx: int) -> Transform:
    """Move the pixel grid by (dy, dx) without resampling.

    A circular roll keeps the image size, so a 256-pixel image can still be
    scored with a 256 crop; the wrapped-around strip is a few pixels wide.
    """
    def apply(image: torch.Tensor) -> torch.Tensor:
        return torch.roll(image, shifts=(dy, dx), dims=(1, 2)).contiguous()
    return apply


def crop(top: int, left: int) -> Transform:
    """Cut ``top`` rows and ``left`` columns off: the image's own grid moves against the crop grid.

    Unlike ``shift`` nothing wraps around, so no seam is added: this is what a user's crop does.
    """
    def apply(image: torch.Tensor) -> torch.Tensor:
        return image[:, top:, left:].contiguous()
    return apply


def resize(factor: float) -> Transform:
    def apply(image: torch.Tensor) -> torch.Tensor:
        pil = to_pil(image)
        size = (max(1, round(pil.width * factor)), max(1, round(pil.height * factor)))
        return from_pil(pil.resize(size, Image.Resampling.BICUBIC))
    return apply


PERTURBATIONS: dict[str, Transform | None] = {
    "clean": None,
    "shift-1px": shift(1, 1),
    "shift-7px": shift(7, 5),
    "jpeg-q90": jpeg(90),
    "jpeg-q75": jpeg(75),
    "resize-x0.5": resize(0.5),
}


# Real photos as users also upload them: what the null model must hold for (training.config.FitConfig).
NULL_VARIANTS: dict[str, Transform] = {
    "upscale-1.25": resize(1.25),
    "upscale-1.5": resize(1.5),
    "upscale-2": resize(2.0),
    "jpeg-90": jpeg(90),
    # Cropped off the 8x8 grid: a JPEG-origin photo's block trace then sits at another phase, where a
    # lattice fingerprint (fake minus JPEG-origin real) can match it. Measured on the first
    # structured set: 13-18 of 68 CBSD68 photos answered fake at 1 % once cropped by 1-7 px.
    "crop-1-3": crop(1, 3),
    "crop-3-6": crop(3, 6),
    "crop-6-1": crop(6, 1),
}


def null_transforms(names: tuple[str, ...]) -> list[Transform]:
    unknown = [n for n in names if n not in NULL_VARIANTS]
    if unknown:
        raise ValueError(f"unknown null variant(s) {unknown}; known: {', '.join(NULL_VARIANTS)}")
    return [NULL_VARIANTS[n] for n in names]

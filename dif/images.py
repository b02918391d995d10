"""Decoding uploads into float tensors and cutting grid-aligned crops.

Pixels are kept exactly where the generator put them: no EXIF rotation, no
resampling. A generator's fingerprint lives on its pixel grid, so crops start at
multiples of ``align`` counted from the image origin.
"""

from __future__ import annotations

import io
import math
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from dif.errors import CorruptImage, ImageTooLarge, ImageTooSmall, UnsupportedImage

DEFAULT_MAX_PIXELS = 40_000_000
SUPPORTED_FORMATS = frozenset({"PNG", "JPEG", "WEBP", "BMP", "TIFF", "GIF", "PPM", "MPO"})
# Leading bytes of the supported formats. Pillow reports a PNG with a bad CRC or an
# impossible header as "unidentified"; telling its sender "not an image, upload PNG"
# would be wrong, so such an upload is called corrupt instead.
SIGNATURES = {b"\x89PNG\r\n\x1a\n": "PNG", b"\xff\xd8\xff": "JPEG", b"GIF87a": "GIF", b"GIF89a": "GIF",
              b"II*\x00": "TIFF", b"MM\x00*": "TIFF", b"BM": "BMP"}


def decode_image(
    data: bytes | Path | str, max_pixels: int = DEFAULT_MAX_PIXELS
) -> torch.Tensor:
    """Decode bytes or a file into a float32 tensor ``[3, H, W]`` in ``[0, 1]``.

    The pixel limit is checked on the header, before any pixel is decoded, so a
    decompression bomb costs nothing.
    """
    source = io.BytesIO(data) if isinstance(data, (bytes, bytearray, memoryview)) else data
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(source)
    except UnidentifiedImageError as exc:
        claimed = _claimed_format(source)
        if claimed is not None:
            raise CorruptImage(f"the data starts like a {claimed} but its header is corrupt") from exc
        raise UnsupportedImage("not a recognised image; upload PNG, JPEG, WebP, BMP or TIFF") from exc
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageTooLarge(f"image declares too many pixels (limit {max_pixels})") from exc
    except (OSError, ValueError, SyntaxError) as exc:
        raise CorruptImage(f"cannot read image header: {exc}") from exc
    with image:
        if image.format not in SUPPORTED_FORMATS:
            raise UnsupportedImage(f"image format {image.format} is not supported")
        width, height = image.size
        if width * height > max_pixels:
            raise ImageTooLarge(
                f"image is {width}x{height} = {width * height} pixels, over the limit of {max_pixels}"
            )
        if width < 1 or height < 1:
            raise CorruptImage("image has no pixels")
        try:
            image.seek(0)
            image.load()
            array = _to_rgb_array(image)
        except (OSError, ValueError, SyntaxError, EOFError) as exc:
            raise CorruptImage(f"image data is corrupt or truncated: {exc}") from exc
    return torch.from_numpy(array).permute(2, 0, 1).contiguous()


def _claimed_format(source: io.BytesIO | Path | str) -> str | None:
    """The supported format whose signature the data starts with, if any."""
    if isinstance(source, io.BytesIO):
        head = source.getvalue()[:12]
    else:
        with open(source, "rb") as f:
            head = f.read(12)
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    return next((fmt for magic, fmt in SIGNATURES.items() if head.startswith(magic)), None)


def _to_rgb_array(image: Image.Image) -> np.ndarray:
    """RGB float32 ``[H, W, 3]`` in ``[0, 1]``; keeps 16-bit precision, drops alpha."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        raw = np.asarray(image, dtype=np.float32)
        if not np.isfinite(raw).all():
            # Float TIFFs can hold NaN or infinity; they would reach the scores as NaN.
            raise CorruptImage("image holds NaN or infinite pixel values")
        scale = 65535.0 if image.mode != "F" and raw.max(initial=0) > 255 else 255.0
        if image.mode == "F":
            scale = max(float(raw.max(initial=1.0)), 1.0)
        grey = np.clip(raw / scale, 0.0, 1.0)
        return np.repeat(grey[:, :, None], 3, axis=2)
    if image.mode != "RGB":
        image = image.convert("RGB")
    return np.asarray(image, dtype=np.float32) / 255.0


def crop_offsets(length: int, size: int, count: int, align: int) -> list[int]:
    """Up to ``count`` distinct aligned offsets spread over ``length``, centre first."""
    last = (length - size) // align * align
    centre = (length - size) // 2 // align * align
    if count <= 1 or last == 0:
        return [centre]
    spread = {int(round(v / align)) * align for v in np.linspace(0, last, count)}
    spread.discard(centre)
    ordered = sorted(spread, key=lambda o: abs(o - centre))
    return [centre, *ordered][:count]


def grid_crops(
    image: torch.Tensor, size: int = 256, max_crops: int = 1, align: int = 16
) -> tuple[torch.Tensor, list[tuple[int, int]]]:
    """Cut up to ``max_crops`` crops of ``size``² on the ``align`` grid.

    Returns ``[K, 3, size, size]`` and the ``(top, left)`` of each crop. Images
    smaller than the crop are refused: padding would dilute the correlation and
    silently lower scores.
    """
    _, height, width = image.shape
    if height < size or width < size:
        raise ImageTooSmall(
            f"image is {width}x{height}; at least {size}x{size} pixels are needed"
        )
    per_axis = max(1, math.isqrt(max_crops))
    tops = crop_offsets(height, size, per_axis if width > size else max_crops, align)
    lefts = crop_offsets(width, size, per_axis if height > size else max_crops, align)
    positions = sorted(
        {(t, l) for t in tops for l in lefts},
        key=lambda p: abs(p[0] - tops[0]) + abs(p[1] - lefts[0]),
    )[:max_crops]
    crops = torch.stack([image[:, t : t + size, l : l + size] for t, l in positions])
    return crops, positions

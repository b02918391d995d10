"""PNG renderings for people: fingerprints, their spectra, matrices."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw


def _stretch(x: np.ndarray) -> np.ndarray:
    lo, hi = np.percentile(x, [0.5, 99.5])
    return np.clip((x - lo) / max(hi - lo, 1e-12), 0.0, 1.0)


def fingerprint_image(fp: torch.Tensor) -> Image.Image:
    """Contrast-stretched RGB view of a ``[3, H, W]`` fingerprint."""
    arr = fp.detach().float().cpu().numpy().transpose(1, 2, 0)
    return Image.fromarray((_stretch(arr) * 255).astype(np.uint8), "RGB")


def spectrum_image(fp: torch.Tensor) -> Image.Image:
    """Centred log-magnitude spectrum, averaged over channels: periodic artefacts show as dots."""
    centred = fp.detach().float().cpu() - fp.detach().float().cpu().mean(dim=(1, 2), keepdim=True)
    mag = torch.fft.fftshift(torch.fft.fft2(centred).abs().mean(dim=0))
    arr = np.log1p(mag.numpy())
    return Image.fromarray((_stretch(arr) * 255).astype(np.uint8), "L")


def png_bytes(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def save_png(image: Image.Image, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, format="PNG")


def heatmap_image(matrix: np.ndarray, labels: list[str], cell: int = 48, title: str = "",
                  col_labels: list[str] | None = None, outline: np.ndarray | None = None,
                  missing: str | None = None) -> Image.Image:
    """Annotated heatmap of a square or rectangular matrix (rows and columns share ``labels`` when square).

    ``col_labels`` names the columns of a rectangular matrix; ``outline`` (bool,
    same shape) frames the cells that pass a decision; ``missing`` is written in
    non-finite cells instead of ``nan`` (e.g. the diagonal of a pairwise matrix).
    """
    rows, cols = matrix.shape
    col_labels = col_labels or (labels if cols == len(labels) else [str(c) for c in range(cols)])
    margin = 8 * max(len(s) for s in [*labels, *col_labels]) + 16
    top = margin + (20 if title else 0)
    img = Image.new("RGB", (max(margin + cols * cell + 8, 8 * len(title) + 16), top + rows * cell + 8), "white")
    draw = ImageDraw.Draw(img)
    if title:
        draw.text((8, 4), title, fill="black")
    finite = matrix[np.isfinite(matrix)]
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    for r in range(rows):
        draw.text((4, top + r * cell + cell // 2 - 5), labels[r], fill="black")
        for c in range(cols):
            v = matrix[r, c]
            t = 0.0 if not np.isfinite(v) else (v - lo) / max(hi - lo, 1e-12)
            colour = (int(255 * t), int(80 + 80 * (1 - abs(2 * t - 1))), int(255 * (1 - t)))
            x0, y0 = margin + c * cell, top + r * cell
            if missing is not None and not np.isfinite(v):
                draw.rectangle([x0, y0, x0 + cell - 1, y0 + cell - 1], fill=(200, 200, 200))
                draw.text((x0 + 4, y0 + cell // 2 - 5), missing, fill="black")
                continue
            draw.rectangle([x0, y0, x0 + cell - 1, y0 + cell - 1], fill=colour)
            if outline is not None and bool(outline[r, c]):
                draw.rectangle([x0 + 1, y0 + 1, x0 + cell - 2, y0 + cell - 2], outline="black", width=3)
            draw.text((x0 + 4, y0 + cell // 2 - 5), f"{v:.2f}", fill="white")
    for c, name in enumerate(col_labels):
        for i, ch in enumerate(name[: margin // 10]):
            draw.text((margin + c * cell + cell // 2 - 3, 4 + (20 if title else 0) + i * 10), ch, fill="black")
    return img

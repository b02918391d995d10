"""PNG renderings for people: fingerprints, their spectra, matrices.

Each picture says what it shows: a title, a colour scale with its unit, and a one-line
caption on how to read it. Drawn with matplotlib's object API on the Agg canvas, never
pyplot: pyplot keeps global state, and the service renders from worker threads.
matplotlib is imported on first use, so importing this module stays cheap.
"""

from __future__ import annotations

import io
import math
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from PIL import Image

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.colors import Normalize
    from matplotlib.figure import Figure
    from matplotlib.image import AxesImage

    from dif.lineage import LineageConfig, LineageMatrix

DPI = 100
CAPTION_WIDTH = 110  # characters per caption line at the default figure widths


def _stretch(x: np.ndarray) -> np.ndarray:
    lo, hi = np.percentile(x, [0.5, 99.5])
    return np.clip((x - lo) / max(hi - lo, 1e-12), 0.0, 1.0)


def _figure(width: float, height: float, fitted: bool = False) -> Figure:
    """A figure; ``fitted`` lays it out around its labels (a few hundred ms), else panels sit where placed."""
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=DPI, layout="constrained" if fitted else None)


def _caption(fig: Figure, text: str, width: int = CAPTION_WIDTH) -> None:
    """How to read the picture, under it."""
    wrapped = "\n".join(textwrap.wrap(text, width))
    if fig.get_layout_engine() is not None:
        fig.supxlabel(wrapped, fontsize=8, color="0.25", ha="center")
    else:
        fig.text(0.5, 0.02, wrapped, fontsize=8, color="0.25", ha="center", va="bottom")


def _image(fig: Figure) -> Image.Image:
    """Render on the Agg canvas (no display, no global backend) into an RGB image."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return Image.fromarray(np.asarray(canvas.buffer_rgba())[..., :3].copy(), "RGB")


def _named(what: str, name: str | None) -> str:
    return f"{what} of {name}" if name else what


def fingerprint_image(fp: torch.Tensor, name: str | None = None) -> Image.Image:
    """A ``[3, H, W]`` fingerprint: its colour view and its channel mean on a signed scale."""
    arr = fp.detach().float().cpu().numpy()
    channels, height, width = arr.shape
    mean = arr.mean(axis=0)
    limit = float(np.percentile(np.abs(mean), 99.5)) or 1e-12
    fig = _figure(9.0, 5.0)
    fig.suptitle(f"{_named('Fingerprint', name)}  ({channels}×{height}×{width})", fontsize=12, y=0.97)
    left, right = fig.add_axes((0.06, 0.19, 0.38, 0.68)), fig.add_axes((0.49, 0.19, 0.38, 0.68))
    left.imshow(_stretch(arr.transpose(1, 2, 0)), interpolation="nearest")
    left.set_title("colour channels (each stretched to its 0.5–99.5 % range)", fontsize=9)
    shown = right.imshow(mean, cmap="RdBu_r", vmin=-limit, vmax=limit, interpolation="nearest")
    right.set_title("mean of the channels", fontsize=9)
    fig.colorbar(shown, cax=fig.add_axes((0.89, 0.25, 0.015, 0.56)), label="fingerprint value (residual units)")
    for ax in (left, right):
        ax.set_xlabel("x (pixels)", fontsize=8)
        ax.tick_params(labelsize=7)
    left.set_ylabel("y (pixels)", fontsize=8)
    _caption(fig, "The pattern the generator leaves in the noise residual of its images. A fixed texture, "
                  "often a grid, is the trace; red and blue are opposite signs, white is zero.")
    return _image(fig)


def spectrum_image(fp: torch.Tensor, name: str | None = None) -> Image.Image:
    """Centred log-magnitude spectrum, averaged over channels: periodic artefacts show as dots."""
    centred = fp.detach().float().cpu() - fp.detach().float().cpu().mean(dim=(1, 2), keepdim=True)
    mag = torch.fft.fftshift(torch.fft.fft2(centred).abs().mean(dim=0))
    arr = np.log10(1e-12 + mag.numpy())
    lo, hi = np.percentile(arr, [0.5, 99.9])
    fig = _figure(6.4, 5.6)
    ax = fig.add_axes((0.13, 0.22, 0.64, 0.7))
    shown = ax.imshow(arr, cmap="magma", vmin=lo, vmax=hi, extent=(-0.5, 0.5, 0.5, -0.5),
                      interpolation="nearest")
    fig.colorbar(shown, cax=fig.add_axes((0.8, 0.27, 0.03, 0.6)), label="log10 |FFT| (mean of the channels)")
    ax.set_title(_named("Spectrum of the fingerprint", name), fontsize=12)
    ax.set_xlabel("horizontal frequency (cycles/pixel)", fontsize=8)
    ax.set_ylabel("vertical frequency (cycles/pixel)", fontsize=8)
    ax.tick_params(labelsize=7)
    _caption(fig, "Zero frequency at the centre. Bright dots away from it are periodic artefacts, e.g. of "
                  "upsampling layers (2× upsampling puts dots at ±1/2 cycles/pixel, 4× also at ±1/4); "
                  "a smooth glow is broadband noise.", 80)
    return _image(fig)


def png_bytes(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def save_png(image: Image.Image, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, format="PNG")


def _annotate(ax: Axes, matrix: np.ndarray, shown: AxesImage, missing: str | None) -> None:
    """Each cell's value in black or white, whichever reads better on its colour."""
    rgba = shown.to_rgba(matrix)
    for r in range(matrix.shape[0]):
        for c in range(matrix.shape[1]):
            v = matrix[r, c]
            if not np.isfinite(v):
                if missing is not None:
                    ax.text(c, r, missing, ha="center", va="center", fontsize=8, color="0.3")
                continue
            red, green, blue = rgba[r, c, :3]
            dark = 0.299 * red + 0.587 * green + 0.114 * blue < 0.5
            ax.text(c, r, f"{v:.2f}", ha="center", va="center", fontsize=8, color="white" if dark else "black")


def _scale(matrix: np.ndarray, center: float | None, marks: list[float]) -> tuple[Normalize, str]:
    """Colour range and map covering the finite values and the marks: diverging around ``center`` if given."""
    from matplotlib.colors import Normalize

    finite = matrix[np.isfinite(matrix)]
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    lo, hi = min([lo, *marks]), max([hi, *marks])
    if center is not None:  # linear, equal steps up (red) and down (blue), white at the centre
        half = 1.05 * max(hi - center, center - lo, 1e-9)  # headroom: a mark at the extreme stays visible
        return Normalize(vmin=center - half, vmax=center + half), "RdBu_r"
    return Normalize(vmin=lo, vmax=hi if hi > lo else lo + 1), "viridis"


def heatmap_image(matrix: np.ndarray, labels: list[str], title: str = "", col_labels: list[str] | None = None,
                  outline: np.ndarray | None = None, missing: str | None = None, value_label: str = "value",
                  center: float | None = None, marks: dict[str, float] | None = None, caption: str = "",
                  row_title: str = "", col_title: str = "") -> Image.Image:
    """Annotated heatmap of a square or rectangular matrix with its colour scale.

    ``labels`` name the rows (and the columns of a square matrix; ``col_labels`` those of a
    rectangular one); ``outline`` (bool, same shape) frames the cells that pass a decision;
    ``missing`` is written in non-finite cells (e.g. the diagonal of a pairwise matrix);
    ``center`` makes the scale diverge around that value; ``marks`` draws labelled lines on
    the colour bar (e.g. a decision threshold).
    """
    from matplotlib import colormaps
    from matplotlib.patches import Rectangle

    rows, cols = matrix.shape
    col_labels = col_labels or (labels if cols == len(labels) else [str(c) for c in range(cols)])
    norm, cmap = _scale(matrix, center, list((marks or {}).values()))
    longest = max(len(s) for s in [*labels, *col_labels])
    fig = _figure(max(5.5, 0.62 * cols + 0.07 * longest + 2.4), max(4.0, 0.5 * rows + 0.07 * longest + 1.8),
                  fitted=True)
    ax = fig.subplots()
    masked = np.ma.masked_invalid(matrix)
    shown = ax.imshow(masked, cmap=colormaps[cmap].with_extremes(bad="0.85"), norm=norm, aspect="auto",
                      interpolation="nearest")
    _annotate(ax, matrix, shown, missing)
    if outline is not None:
        for r, c in zip(*np.nonzero(outline), strict=True):
            ax.add_patch(Rectangle((c - 0.5, r - 0.5), 1, 1, fill=False, edgecolor="black", linewidth=2.5))
    ax.set_xticks(range(cols), col_labels, rotation=45, ha="right", rotation_mode="anchor", fontsize=8)
    ax.set_yticks(range(rows), labels, fontsize=8)
    ax.set_xlabel(col_title, fontsize=9)
    ax.set_ylabel(row_title, fontsize=9)
    lines = "; ".join(f"line: {text}" for text in marks or {})
    bar = fig.colorbar(shown, ax=ax, shrink=0.9, label=value_label + (f"  ({lines})" if lines else ""))
    for value in (marks or {}).values():
        bar.ax.axhline(value, color="black", linewidth=2)
    if title:
        ax.set_title("\n".join(textwrap.wrap(title, max(40, int(9 * fig.get_figwidth())))), fontsize=10)
    if caption:
        _caption(fig, caption, max(60, int(12 * fig.get_figwidth())))
    return _image(fig)


def lineage_heatmap(result: LineageMatrix, config: LineageConfig) -> Image.Image:
    """The lineage matrix of ``dif lineage-matrix --png`` and ``GET /lineage/matrix`` (one drawing for both)."""
    values = np.array([[math.nan if v is None else v for v in row] for row in result.values()], dtype=float)
    related = np.array([[bool(v) for v in row] for row in result.values("related")])
    return heatmap_image(
        values, result.names, title=f"Lineage: is one generator derived from the other? ({len(result.names)} "
                                    f"fingerprints, shifts up to {config.max_shift} px)",
        outline=related, missing="–", value_label="similarity (z-score)", center=0.0,
        marks={f"related ≥ {config.threshold:.2f}": config.threshold},
        caption=f"Framed cells are related pairs (similarity ≥ {config.threshold:.2f}, false-positive rate "
                f"{config.alpha:g} per pair). Unrelated pairs scatter around 0 (white); red is more alike, "
                "blue less alike than unrelated pairs.")

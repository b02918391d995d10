"""How an image's power falls off towards the Nyquist frequency, without any fingerprint.

The one spectral trait left to look at for generators without a periodic trace (GLIDE, DALL·E 2):
an upsampler leaves less power near Nyquist than a camera does. Measured on the gray level of a
central crop through a *linear* 3x3 Laplacian (``signlap``'s sign would flatten the very fall-off
measured). Every resampled photo is smoother too, which is why no estimator uses it
(docs/accuracy.md, "GLIDE's one spectral difference"). Used by ``bench/spectral_falloff.py``.
"""

from __future__ import annotations

import numpy as np
import torch

SIZE = 256
BANDS = 12
TOP = 0.9  # the outermost band's inner radius, in units of the Nyquist frequency


def _radius(n: int) -> np.ndarray:
    """Each FFT bin's radial frequency over the Nyquist frequency (the corners reach sqrt 2)."""
    fy, fx = np.fft.fftfreq(n)[:, None], np.fft.fftfreq(n)[None, :]
    return np.sqrt(fy**2 + fx**2) / 0.5


RADIUS = _radius(SIZE - 2)  # the residual loses a pixel on each side


def laplacian_power(image: torch.Tensor) -> np.ndarray | None:
    """Power spectrum of the Laplacian residual of the image's central ``SIZE`` crop, in gray; None
    when the image is smaller than the crop or the crop is flat (no spectrum to compare)."""
    if min(image.shape[-2:]) < SIZE:
        return None
    gray = image.mean(dim=0).double().numpy()
    top, left = (gray.shape[0] - SIZE) // 2, (gray.shape[1] - SIZE) // 2
    c = gray[top : top + SIZE, left : left + SIZE]
    residual = 4 * c[1:-1, 1:-1] - c[:-2, 1:-1] - c[2:, 1:-1] - c[1:-1, :-2] - c[1:-1, 2:]
    power = np.abs(np.fft.fft2(residual)) ** 2
    return power if power.sum() > 0 else None


def radial_profile(power: np.ndarray) -> np.ndarray:
    """log10 share of the power in each of ``BANDS`` radial bands up to Nyquist (corners in the last)."""
    band = np.minimum((RADIUS * BANDS).astype(int), BANDS - 1)
    mean = np.bincount(band.ravel(), weights=power.ravel(), minlength=BANDS) / np.bincount(band.ravel(),
                                                                                          minlength=BANDS)
    return np.log10(mean / mean.sum() + 1e-30)


def high_share(power: np.ndarray) -> float:
    """log10 of the share of the power at radius >= ``TOP`` x Nyquist: lower is smoother."""
    return float(np.log10(power[RADIUS >= TOP].sum() / power.sum() + 1e-30))

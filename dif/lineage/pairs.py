"""One pair's uncalibrated statistics: orientation, unit tensors, the correlation surface over
circular shifts, its aligned value, window peak and PCE, and the Gaussian tails they are read with."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from dif.artifact import Fingerprint

PCE_EXCLUDE = 1  # the peak's own main lobe, left out of the PCE's energy
Z_CAP = 37.0  # beyond this a p-value underflows


# --- Gaussian tails (no scipy) ------------------------------------------------------------------

def upper_tail(z: float) -> float:
    """P(N(0,1) > z)."""
    return 0.5 * math.erfc(z / math.sqrt(2.0))


def inverse_upper_tail(p: float) -> float:
    """z with P(N(0,1) > z) = p, by bisection on the monotone tail."""
    if p <= 0.0:
        return Z_CAP
    if p >= 1.0:
        return -Z_CAP
    lo, hi = -Z_CAP, Z_CAP
    for _ in range(100):
        mid = (lo + hi) / 2
        if upper_tail(mid) > p:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def fisher(r: float) -> float:
    """atanh, clipped: puts correlations of different strengths on one scale."""
    return math.atanh(max(-0.999999, min(0.999999, r)))


def orientation(fp: Fingerprint) -> float:
    """+1 when the generator's residuals correlate positively with the fingerprint, else -1."""
    return 1.0 if fp.calibration.fake_centre > fp.calibration.real_centre else -1.0


def unit(x: torch.Tensor) -> torch.Tensor:
    """Per-channel zero mean, unit norm over each ``[C, H, W]`` tensor (float64)."""
    x = x.to(torch.float64)
    x = x - x.mean(dim=(-2, -1), keepdim=True)
    norm = x.flatten(-3).norm(dim=-1).clamp_min(1e-30)
    return x / norm[..., None, None, None]


def correlation_surface(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Correlation of unit tensors ``[C, H, W]`` at every circular shift: ``[H, W]``.

    Index ``(dy, dx)`` is ``sum_p a(p) b(p + (dy, dx))``: it peaks there when
    ``b``'s pattern is ``a``'s moved by ``(dy, dx)``.
    """
    cross = (torch.fft.rfft2(a).conj() * torch.fft.rfft2(b)).sum(dim=0)
    return torch.fft.irfft2(cross, s=tuple(a.shape[-2:]))


def _window_indices(size: int, max_shift: int) -> torch.Tensor:
    """Circular indices of shifts ``-max_shift..max_shift`` along one axis (each once)."""
    reach = min(max_shift, (size - 1) // 2)
    return torch.arange(-reach, reach + 1).remainder(size)


def _signed(index: int, size: int) -> int:
    return index - size if index > size // 2 else index


@dataclass(frozen=True)
class PairStats:
    """Uncalibrated statistics of one pair."""

    aligned: float  # correlation at zero shift
    peak: float  # best correlation within the window
    shift: tuple[int, int]  # where ``peak`` is, (dy, dx) signed
    pce_aligned: float
    pce_peak: float

    def swapped(self) -> PairStats:
        """The same pair measured the other way round (B against A)."""
        return PairStats(self.aligned, self.peak, (-self.shift[0], -self.shift[1]), self.pce_aligned,
                         self.pce_peak)


def _pce(surfaces: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor, energy: torch.Tensor) -> torch.Tensor:
    """Signed PCE of each surface at ``(dy, dx)``: the value squared over the mean energy away from it.

    The energy away from the peak is the total minus the peak's ``(2 PCE_EXCLUDE + 1)^2`` neighbourhood.
    """
    count, h, w = surfaces.shape
    offsets = torch.arange(-PCE_EXCLUDE, PCE_EXCLUDE + 1)
    rows = (dy[:, None] + offsets).remainder(h)[:, :, None]
    cols = (dx[:, None] + offsets).remainder(w)[:, None, :]
    near = surfaces[torch.arange(count)[:, None, None], rows, cols]
    far = (energy - near.square().sum(dim=(1, 2))) / (h * w - near[0].numel())
    peak = surfaces[torch.arange(count), dy, dx]
    return torch.sign(peak) * peak.square() / far.clamp_min(1e-30)


def surface_stats(surfaces: torch.Tensor, max_shift: int) -> list[PairStats]:
    """Aligned value, window peak, its shift and both PCEs of each surface ``[P, H, W]``."""
    count, h, w = surfaces.shape
    rows, cols = _window_indices(h, max_shift), _window_indices(w, max_shift)
    window = surfaces[:, rows][:, :, cols].reshape(count, -1)
    best = window.argmax(dim=1)
    dy, dx = rows[best // len(cols)], cols[best % len(cols)]
    energy = surfaces.square().sum(dim=(1, 2))
    zeros = torch.zeros(count, dtype=torch.long)
    pce_aligned, pce_peak = _pce(surfaces, zeros, zeros, energy), _pce(surfaces, dy, dx, energy)
    peak = surfaces[torch.arange(count), dy, dx]
    return [PairStats(aligned=float(surfaces[k, 0, 0]), peak=float(peak[k]),
                      shift=(_signed(int(dy[k]), h), _signed(int(dx[k]), w)),
                      pce_aligned=float(pce_aligned[k]), pce_peak=float(pce_peak[k])) for k in range(count)]

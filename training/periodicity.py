"""How much of a residual or a fingerprint repeats on a P-pixel grid, at any phase.

The lattice estimators (``training/config.py``) can only find a trace that repeats with the
crop grid's period. These measures say, without any fingerprint, whether there is one to find:
a residual folded modulo P (the mean of every P x P cell), less its separable part (a row plus
a column profile, which a photo's block grid fills: ``training.trainer.deblocked``), keeps 3 (P - 1)^2 free
values. Both measures are 1 for white noise and far above 1 for a fixed pattern on the grid.
Folding and squaring ignore the phase, so an image moved off its generator's grid keeps its
value. Used by ``bench/periodic_energy.py``.
"""

from __future__ import annotations

import torch

from dif.scoring import lattice_cell


def residual_ratio(residual: torch.Tensor, period: int) -> float:
    """An image residual's P-periodic energy over what a residual without a periodic part has (~1).

    Each value of the folded cell is a mean of ``n = HW / P^2`` pixels, so without a periodic
    part ``n |cell|^2 / var`` is about its 3 (P - 1)^2 degrees of freedom.
    """
    _, height, width = residual.shape
    cut = residual[:, : height - height % period, : width - width % period].double()
    cells = cut.shape[1] * cut.shape[2] / period**2
    dof = 3 * (period - 1) ** 2
    return float(lattice_cell(cut, period).square().sum() * cells / cut.var() / dof)


def pattern_ratio(pattern: torch.Tensor, period: int) -> float:
    """A fingerprint's share of energy on the P-periodic non-separable subspace, over white noise's."""
    _, height, width = pattern.shape
    cut = pattern.double()
    share = float(lattice_cell(cut, period).square().sum() * (height * width / period**2) / cut.square().sum())
    return share / ((period - 1) ** 2 / (height * width))

"""The periodic-energy measures behind ``bench/periodic_energy.py``: 1 for noise, large for a
fixed pattern on the grid at any phase, blind to a block grid's row and column steps."""

from __future__ import annotations

import pytest
import torch

from training.periodicity import pattern_ratio, residual_ratio

PERIODS = (2, 4, 8, 16)


def noise(seed: int, size: int = 512) -> torch.Tensor:
    return torch.randn((3, size, size), generator=torch.Generator().manual_seed(seed))


def test_noise_sits_at_one_for_every_period() -> None:
    # A chi-square over its 3 (P - 1)^2 degrees of freedom: averaged over images, within 4 sd of 1.
    images = [noise(seed, 256) for seed in range(20)]
    for period in PERIODS:
        dof = 3 * (period - 1) ** 2
        slack = 4 * (2 / dof / len(images)) ** 0.5
        for measure in (residual_ratio, pattern_ratio):
            mean = sum(measure(image, period) for image in images) / len(images)
            assert abs(mean - 1) < slack, (measure.__name__, period, mean)


def test_a_faint_grid_pattern_stands_out_at_any_phase() -> None:
    # Per pixel the pattern is a tenth of the noise: invisible pixel by pixel, obvious folded.
    cell = torch.randn((3, 8, 8), generator=torch.Generator().manual_seed(7))
    image = noise(1) + 0.1 * cell.repeat(1, 64, 64)
    ratio = residual_ratio(image, 8)
    assert ratio > 3.0
    assert residual_ratio(image, 16) > 1.5  # an 8-periodic pattern is 16-periodic too
    moved = image.roll((3, 5), dims=(1, 2))
    assert residual_ratio(moved, 8) == pytest.approx(ratio, rel=1e-6)
    assert pattern_ratio(cell.repeat(1, 32, 32), 8) > 500


def test_a_block_grid_is_not_periodic_energy() -> None:
    # JPEG-like steps along block rows and columns: a row profile plus a column profile.
    gen = torch.Generator().manual_seed(3)
    rows, cols = torch.randn((3, 8, 1), generator=gen), torch.randn((3, 1, 8), generator=gen)
    grid = (rows + cols).repeat(1, 64, 64)
    assert residual_ratio(noise(2) + 0.5 * grid, 8) < 1.3

"""The spectral fall-off measure behind ``bench/spectral_falloff.py``: lower for smoother images,
blind to brightness and contrast, and silent where there is no spectrum to compare."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from training.falloff import BANDS, high_share, laplacian_power, radial_profile
from training.perturb import resize


def noise_image(seed: int, size: int = 300) -> torch.Tensor:
    return torch.rand((3, size, size), generator=torch.Generator().manual_seed(seed))


def test_an_upscaled_image_is_smoother_the_more_it_is_enlarged() -> None:
    image = noise_image(0)
    shares = [high_share(laplacian_power(resize(f)(image) if f != 1 else image)) for f in (1.0, 1.25, 1.5, 2.0)]
    assert all(b < a - 0.1 for a, b in zip(shares[:-1], shares[1:], strict=True)), shares


def test_white_noise_puts_most_laplacian_power_near_nyquist() -> None:
    # The Laplacian's gain grows with frequency, so white noise's residual is dominated by the top bands.
    profile = radial_profile(laplacian_power(noise_image(1)))
    assert np.argmax(profile) >= BANDS - 3
    assert np.sum(10.0**profile) == pytest.approx(1.0, rel=1e-9)


def test_the_share_ignores_brightness_and_contrast() -> None:
    image = noise_image(2) * 0.5
    assert high_share(laplacian_power(image * 0.4 + 0.3)) == pytest.approx(high_share(laplacian_power(image)),
                                                                             abs=1e-6)


def test_no_spectrum_for_flat_or_small_images() -> None:
    assert laplacian_power(torch.full((3, 300, 300), 0.5)) is None
    assert laplacian_power(noise_image(3, size=200)) is None

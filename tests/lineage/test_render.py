"""The PNGs made for people carry a title, a caption and a colour scale, and render safely from threads."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch

from dif.render import fingerprint_image, heatmap_image, png_bytes, spectrum_image

from .render_checks import colour_scale_length

# The colour bars are 250-500 px tall; the old renderings had none (0).
MIN_SCALE = 150


@pytest.fixture(scope="module")
def tensor() -> torch.Tensor:
    """A fingerprint-like pattern: a periodic grid plus noise."""
    generator = torch.Generator().manual_seed(0)
    grid = torch.zeros(3, 64, 64)
    grid[:, ::4, :] = 1.0
    return (grid + 0.3 * torch.randn(3, 64, 64, generator=generator)).contiguous()


def test_fingerprint_png_has_a_signed_scale(tensor: torch.Tensor) -> None:
    image = fingerprint_image(tensor, "toy")
    assert image.width > 2 * 64 and colour_scale_length(image, "RdBu_r") >= MIN_SCALE


def test_spectrum_png_has_a_scale(tensor: torch.Tensor) -> None:
    assert colour_scale_length(spectrum_image(tensor, "toy"), "magma") >= MIN_SCALE


@pytest.mark.parametrize(("center", "cmap"), [(None, "viridis"), (0.0, "RdBu_r")])
def test_heatmap_has_a_scale(center: float | None, cmap: str) -> None:
    values = np.arange(20, dtype=float).reshape(4, 5) - 5
    values[0, 0] = np.nan
    image = heatmap_image(values, ["a", "b", "c", "d"], col_labels=["a long column label", "b", "c", "d", "e"],
                          title="t", missing="-", center=center, value_label="v", caption="how to read it")
    assert colour_scale_length(image, cmap) >= MIN_SCALE


def test_renderings_from_threads_match_sequential_ones(tensor: torch.Tensor) -> None:
    """The service renders in worker threads: no shared plotting state may leak between them."""
    jobs = [(fingerprint_image, tensor), (spectrum_image, tensor), (fingerprint_image, -tensor),
            (spectrum_image, tensor * 2)]
    sequential = [png_bytes(render(t)) for render, t in jobs]
    with ThreadPoolExecutor(4) as pool:
        threaded = list(pool.map(lambda job: png_bytes(job[0](job[1])), jobs))
    assert threaded == sequential

import math

import numpy as np
import torch

from dif.scoring import CorrelationScorer, pearson, standardize


def test_pearson_matches_numpy():
    torch.manual_seed(0)
    a, b = torch.randn(4, 3, 8, 8), torch.randn(2, 3, 8, 8)
    got = pearson(a, b)
    for i in range(4):
        for j in range(2):
            want = np.corrcoef(a[i].flatten().numpy(), b[j].flatten().numpy())[0, 1]
            assert abs(float(got[i, j]) - want) < 1e-5


def test_standardize_is_scale_and_offset_invariant():
    x = torch.randn(3, 3, 4, 4)
    assert torch.allclose(standardize(x), standardize(5 * x + 2), atol=1e-6)


def test_scorer_zero_shift_equals_pearson_and_z_uses_surface_rms():
    torch.manual_seed(1)
    fps, res = torch.randn(3, 3, 32, 32), torch.randn(5, 3, 32, 32)
    scorer = CorrelationScorer(fps)
    s = scorer.score(res, torch.arange(5), 5)
    assert torch.allclose(s.correlation, pearson(res, fps), atol=1e-5)
    image_spec = torch.fft.rfft2(scorer.crop_mean(res, torch.arange(5), 5).reshape(5, 3, 32, 32))
    surface = torch.fft.irfft2(scorer.cross_spectra(image_spec), s=(32, 32))
    assert torch.allclose(s.z, s.correlation / surface.square().mean(dim=(-2, -1)).sqrt(), atol=1e-4)


def test_embedded_fingerprint_stands_out_in_z():
    torch.manual_seed(2)
    fps = torch.randn(2, 3, 64, 64)
    res = torch.randn(2, 3, 64, 64)
    res[0] += 0.3 * fps[1]
    z = CorrelationScorer(fps).score(res, torch.arange(2), 2).z
    assert z[0, 1] > 10 and abs(float(z[0, 0])) < 4 and abs(float(z[1, 1])) < 4


def test_shift_search_recovers_offset_and_pce_is_high():
    torch.manual_seed(3)
    fps = torch.randn(1, 3, 64, 64)
    res = torch.roll(fps + 2 * torch.randn(1, 3, 64, 64), shifts=(3, -2), dims=(2, 3))
    s = CorrelationScorer(fps, max_shift=4).score(res, torch.arange(1), 1)
    assert tuple(s.shift[0, 0].tolist()) == (3, -2)
    assert s.peak_z[0, 0] > 5 * abs(float(s.z[0, 0]))
    assert s.pce[0, 0] > 50


def test_shift_window_limits_search():
    torch.manual_seed(4)
    fps = torch.randn(1, 3, 64, 64)
    res = torch.roll(fps, shifts=(10, 0), dims=(2, 3))
    s = CorrelationScorer(fps, max_shift=4).score(res, torch.arange(1), 1)
    assert max(abs(int(v)) for v in s.shift[0, 0]) <= 4
    assert s.peak_z[0, 0] < 6


def test_crops_of_one_image_average_coherently():
    torch.manual_seed(5)
    fps = torch.randn(1, 3, 32, 32)
    crops = torch.stack([fps[0] + 3 * torch.randn(3, 32, 32) for _ in range(8)])
    one = CorrelationScorer(fps).score(crops[:1], torch.zeros(1, dtype=torch.long), 1).z
    eight = CorrelationScorer(fps).score(crops, torch.zeros(8, dtype=torch.long), 1).z
    assert eight[0, 0] > 1.4 * one[0, 0]


def test_a_batch_scores_each_image_as_it_would_alone_whatever_its_crops_order() -> None:
    """The CPU scores a batch in steps, each standardizing only its images' crops: images of
    1-4 crops, listed out of order, must get exactly what each gets alone."""
    torch.manual_seed(6)
    fps = torch.randn(2, 3, 32, 32)
    scorer = CorrelationScorer(fps, max_shift=3)
    counts = [3, 1, 4, 2, 1, 2, 4]
    groups = torch.arange(len(counts)).repeat_interleave(torch.tensor(counts))
    order = torch.randperm(groups.numel())
    res = torch.randn(groups.numel(), 3, 32, 32)
    together = scorer.score(res[order], groups[order], len(counts))
    for i in range(len(counts)):
        alone = scorer.score(res[groups == i], torch.zeros(counts[i], dtype=torch.long), 1)
        for mine, theirs in zip(together.columns(), alone.columns(), strict=True):
            assert torch.allclose(mine[i].float(), theirs[0].float(), atol=1e-5, equal_nan=True)


def _full_surface_search(surface: torch.Tensor, max_shift: list[int], exclude: int):
    """The shift search read off whole surfaces, the plain way: what the scorer's window-only search must equal."""
    n, g, h, w = surface.shape
    signed = lambda i, size: i - size if i > size // 2 else i  # noqa: E731
    peaks, shifts, pces = torch.zeros(n, g), torch.zeros(n, g, 2, dtype=torch.long), torch.zeros(n, g)
    for i in range(n):
        for j in range(g):
            best, where = -float("inf"), (0, 0)
            for y in range(h):
                for x in range(w):
                    if abs(signed(y, h)) <= max_shift[j] and abs(signed(x, w)) <= max_shift[j]:
                        if surface[i, j, y, x] > best:
                            best, where = float(surface[i, j, y, x]), (y, x)
            far = [float(surface[i, j, y, x]) ** 2 for y in range(h) for x in range(w)
                   if min((y - where[0]) % h, (where[0] - y) % h) > exclude
                   or min((x - where[1]) % w, (where[1] - x) % w) > exclude]
            peaks[i, j] = best
            shifts[i, j] = torch.tensor([signed(where[0], h), signed(where[1], w)])
            pces[i, j] = math.copysign(best**2, best) / (sum(far) / len(far))
    return peaks, shifts, pces


def test_the_window_search_equals_a_search_of_the_whole_surface():
    """Only the window is read and the PCE's far energy comes from Parseval: same peak, shift and PCE."""
    torch.manual_seed(6)
    fps = torch.randn(3, 3, 32, 32)
    res = torch.randn(4, 3, 32, 32)
    res[1] += 0.5 * torch.roll(fps[2], shifts=(3, -2), dims=(1, 2))  # a clear peak inside gen 2's window
    res[2] += 0.5 * torch.roll(fps[0], shifts=(-1, 1), dims=(1, 2))
    windows = [1, 4, 15]  # the last as wide as the surface allows
    for with_z in (True, False):
        scorer = CorrelationScorer(fps, max_shift=torch.tensor(windows))
        s = scorer.score(res, torch.arange(4), 4, with_z=with_z)
        spec = torch.fft.rfft2(scorer.crop_mean(res, torch.arange(4), 4).reshape(4, 3, 32, 32))
        surface = torch.fft.irfft2(scorer.cross_spectra(spec), s=(32, 32))
        peaks, shifts, pces = _full_surface_search(surface, windows, scorer.pce_exclude)
        assert torch.allclose(s.peak, peaks, atol=1e-6)
        assert torch.equal(s.shift, shifts)
        assert torch.allclose(s.pce, pces, rtol=1e-3)
    assert tuple(s.shift[1, 2].tolist()) == (3, -2) and s.pce[1, 2] > 50


def test_the_spectral_background_is_the_mean_of_each_bins_eight_neighbours():
    """Circular along the full frequency axis, mirrored at the half-plane's edges: checked bin by bin."""
    from dif.scoring import _neighbour_mean

    torch.manual_seed(7)
    planes = torch.rand(3, 8, 5, dtype=torch.float64)
    got = _neighbour_mean(planes)
    h, w = planes.shape[1:]
    for k in range(3):
        for y in range(h):
            for x in range(w):
                values = [float(planes[k, (y + dy) % h, abs(x + dx) if x + dx < w else 2 * (w - 1) - (x + dx)])
                          for dy in (-1, 0, 1) for dx in (-1, 0, 1) if (dy, dx) != (0, 0)]
                assert abs(float(got[k, y, x]) - sum(values) / 8) < 1e-12


def test_scoring_in_chunks_of_images_equals_scoring_the_batch_at_once(monkeypatch):
    """On a CPU a batch is scored a few images at a time; images with several crops must stay whole."""
    import dif.scoring

    torch.manual_seed(8)
    fps = torch.randn(3, 3, 32, 32)
    groups = torch.tensor([0, 0, 0, 1, 2, 2, 3, 4, 4, 4, 4])  # 5 images of 3, 1, 2, 1 and 4 crops
    res = torch.randn(len(groups), 3, 32, 32)
    scorer = CorrelationScorer(fps, max_shift=torch.tensor([0, 2, 4]), background=True)
    chunked = scorer.score(res, groups, 5)
    monkeypatch.setattr(dif.scoring, "CPU_SCORE_CHUNK", 64)
    whole = scorer.score(res, groups, 5)
    for a, b in zip(chunked.columns(), whole.columns(), strict=True):
        assert a.shape == b.shape and torch.allclose(a, b, atol=1e-5, equal_nan=True)


def _mixed_set() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Four 8-periodic fingerprints (deblocked cells, as the lattice estimators make them), one
    that claims the lattice but is not periodic, one aperiodic searched; residuals carrying them moved."""
    gen = torch.Generator().manual_seed(5)
    cells = torch.randn(4, 3, 8, 8, generator=gen)
    cells -= cells.mean(-1, keepdim=True) + cells.mean(-2, keepdim=True) - cells.mean((-2, -1), keepdim=True)
    fps = torch.cat([cells.repeat(1, 1, 8, 8), torch.randn(2, 3, 64, 64, generator=gen)])
    carried = fps[[0, 1, 2, 3, 4, 5, 0]].roll((3, -2), (-2, -1))
    return fps, torch.randn(7, 3, 64, 64, generator=gen) + 0.1 * carried, torch.tensor([8, 8, 8, 8, 8, 0])


def test_periodic_fingerprints_score_on_their_lattice_exactly_as_in_full():
    """The folded search and the lattice-bin noise levels are shortcuts, not approximations: every
    statistic matches the full-surface computation of the same fingerprints scored as aperiodic."""
    fps, res, lattice = _mixed_set()
    windows = torch.tensor([4, 4, 3, 0, 4, 8])
    fast = CorrelationScorer(fps, max_shift=windows, background=True, lattice=lattice)
    full = CorrelationScorer(fps, max_shift=windows, background=True)
    assert set(fast.lattice_bins) == {8} and fast.lattice_bins[8][0].tolist() == [0, 1, 2, 3]
    assert fast.fold_search[8][0].tolist() == [0, 1, 2] and fast.surface_columns.tolist() == [4, 5]
    groups = torch.tensor([0, 1, 2, 3, 4, 5, 5])
    for with_z in (False, True):
        got, want = fast.score(res, groups, 6, with_z), full.score(res, groups, 6, with_z)
        for name, a, b in zip(("correlation", "z", "peak", "peak_z", "shift", "pce", "z_bg", "peak_zbg"),
                              got.columns()[:8], want.columns()[:8], strict=True):
            assert torch.allclose(a.double(), b.double(), rtol=1e-4, atol=1e-5, equal_nan=True), name
    assert tuple(got.shift[0, 0].tolist()) == (3, -2) and got.peak_z[0, 0] > 5


def test_grid_cosine_of_a_periodic_fingerprint_is_one_for_its_own_moved_pattern():
    fps, _, lattice = _mixed_set()
    moved = fps[:1].roll((5, 1), (-2, -1))
    scores = CorrelationScorer(fps, max_shift=4, lattice=lattice).score(moved, torch.arange(1), 1)
    assert abs(float(scores.grid_cosine[0, 0]) - 1.0) < 1e-4
    assert float(scores.grid_cosine[0, 1:4].abs().max()) < 0.7 and torch.isnan(scores.grid_cosine[0, 5])


def test_noise_levels_are_the_same_whichever_way_they_are_computed():
    """z from the lattice's bins, from a search's cross-spectra or from the full outer-product GEMM;
    z_bg computed only for the fingerprints decided on it, equal to the all-background scorer's."""
    fps, res, lattice = _mixed_set()
    wants = torch.tensor([True, False, False, True, False, False])
    fast = CorrelationScorer(fps, max_shift=torch.tensor([4, 4, 3, 0, 4, 8]), background=wants, lattice=lattice)
    assert fast.cross_energy[1].tolist() == [4, 5] and fast.dense_columns.numel() == 0
    got = fast.score(res, torch.arange(7), 7)
    plain = CorrelationScorer(fps, background=True).score(res, torch.arange(7), 7)  # every z by the GEMM
    assert torch.allclose(got.z, plain.z, rtol=1e-4)
    assert torch.allclose(got.z_bg[:, wants], plain.z_bg[:, wants], rtol=1e-4)
    assert torch.isnan(got.z_bg[:, ~wants]).all()

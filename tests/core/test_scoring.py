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

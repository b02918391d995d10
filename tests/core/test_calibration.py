import torch

from dif.calibration import Calibration, fit


def test_midpoint_scores_half_and_orders_classes():
    cal = fit(torch.tensor([-1.0, 0.0, 1.0]), torch.tensor([4.0, 5.0, 6.0]), "test")
    assert abs(cal.threshold - 2.5) < 1e-9
    s = cal.score(torch.tensor([0.0, 2.5, 5.0]))
    assert s[0] < 0.05 and abs(float(s[1]) - 0.5) < 1e-6 and s[2] > 0.95


def test_reversed_centres_still_score_fakes_high():
    cal = Calibration(real_centre=0.01, fake_centre=-0.02, real_spread=0.005, fake_spread=0.005)
    assert cal.score(torch.tensor(-0.02)) > 0.9 and cal.score(torch.tensor(0.01)) < 0.1


def test_single_sample_per_class_has_finite_slope():
    cal = fit(torch.tensor([0.0]), torch.tensor([1.0]), "test")
    assert torch.isfinite(torch.tensor(cal.slope))
    assert 0.0 <= float(cal.score(torch.tensor(0.3))) <= 1.0


def test_round_trip_dict():
    cal = fit(torch.tensor([0.0, 1.0]), torch.tensor([3.0, 4.0]), "inner-cv-3")
    again = Calibration.from_dict(cal.to_dict())
    assert again == cal

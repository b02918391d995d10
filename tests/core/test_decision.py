"""The decision rule: p-values, family-wise control, score, verdict and top (dif.decision)."""

from __future__ import annotations

import math

import pytest
import torch

from dif.decision import (
    NullModel,
    OperatingPoint,
    backstopped,
    check_rate,
    decide,
    detection_rate,
    fit_null,
    p_values,
)
from dif.errors import InvalidRate


def one(value: float) -> torch.Tensor:
    return torch.tensor([value], dtype=torch.float64)


def test_p_values_lie_in_the_unit_interval_and_fall_as_the_statistic_rises() -> None:
    stat = torch.linspace(-60, 60, 2001, dtype=torch.float64)[:, None]
    for scale, searched in ((1.0, 1), (1.3, 1), (1.0, 289)):
        p = p_values(stat, one(1.0), one(scale), one(searched))[:, 0]
        assert bool(((p >= 0) & (p <= 1)).all())
        assert bool((p[1:] <= p[:-1]).all()), "p must not rise with the statistic"
        assert p[0] > 0.999 and p[-1] < 1e-100  # still resolved far in the tail, not rounded to 0
    z = torch.tensor([[3.0]])
    plain = float(p_values(z, one(1.0), one(1.0), one(1)))
    assert plain == pytest.approx(0.0013499, rel=1e-4)  # the Gaussian upper tail
    assert float(p_values(z, one(1.0), one(1.2), one(1))) > plain  # a wider null is more cautious
    assert float(p_values(z, one(1.0), one(1.0), one(25))) > plain  # so is the best of 25 shifts
    assert float(p_values(z, one(-1.0), one(1.0), one(1))) == pytest.approx(1 - plain)  # orientation
    assert float(p_values(torch.tensor([[math.nan]]), one(1.0), one(1.0), one(1))) == 1.0


def test_search_window_null_matches_the_maximum_of_independent_draws() -> None:
    draws = torch.randn((200_000, 9), generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    best = draws.max(dim=1).values[:, None]
    p = p_values(best, one(1.0), one(1.0), one(9))[:, 0]
    for rate in (0.01, 0.05):
        assert float((p <= rate).double().mean()) == pytest.approx(rate, abs=0.002)


def test_shift_backstop_keeps_the_rate_and_most_of_the_zero_shift_power() -> None:
    """Zero shift at 80 % of the rate, the window's best at the rest: the pair still holds the rate."""
    draws = torch.randn((200_000, 81), generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    zero, best = draws[:, :1], draws.max(dim=1).values[:, None]  # zero shift is one of the 81 shifts
    p0 = p_values(zero, one(1.0), one(1.0), one(1))
    p = backstopped(p0, p_values(best, one(1.0), one(1.0), one(81)), torch.tensor([True]))[:, 0]
    for rate in (0.01, 0.05):
        assert float((p <= rate).double().mean()) <= rate + 0.002
    assert torch.equal(backstopped(p0, torch.zeros_like(p0), torch.tensor([False])), p0)  # no backstop: p0
    # A clean image pays a factor 1 / (1 - SEARCH_SHARE) = 1.25, never more; the search alone 1 / SEARCH_SHARE.
    assert torch.allclose(backstopped(p0, torch.ones_like(p0), torch.tensor([True])), (p0 / 0.8).clamp(max=1.0))
    assert torch.allclose(backstopped(torch.ones_like(p0), p0, torch.tensor([True])), (p0 / 0.2).clamp(max=1.0))


@pytest.mark.parametrize("correlated", [False, True])
def test_whole_set_rate_holds_however_many_generators_are_loaded(correlated: bool) -> None:
    """Family-wise control: adding generators must not raise the chance that a real photo is called fake."""
    gen = torch.Generator().manual_seed(1)
    photos = 100_000
    for generators in (1, 5, 13, 50):
        if correlated:  # the worst case for Bonferroni's tightness, never for its validity
            stat = torch.randn((photos, 1), generator=gen, dtype=torch.float64).expand(photos, generators)
        else:
            stat = torch.randn((photos, generators), generator=gen, dtype=torch.float64)
        ones = torch.ones(generators, dtype=torch.float64)
        p = p_values(stat, ones, ones, ones)
        for rate in (0.01, 0.05):
            d = decide(p, [OperatingPoint(rate, max(rate, 0.05))] * photos)
            observed = sum(v == "fake" for v in d.verdict) / photos
            # 4 binomial standard deviations above the rate: a real excess, never noise.
            assert observed <= rate + 4 * math.sqrt(rate / photos), (generators, rate, observed)
            if generators == 1:
                assert observed == pytest.approx(rate, abs=4 * math.sqrt(rate / photos))


def test_score_is_one_half_exactly_at_the_operating_point() -> None:
    rate = 0.01
    p = torch.tensor([[1.0, rate / 2, rate / 2 * 1.0001, rate * rate / 2, 0.3]], dtype=torch.float64)
    d = decide(p, [OperatingPoint(rate)])
    adjusted = d.adjusted[0].tolist()
    assert adjusted == pytest.approx([1.0, rate * 5 / 2, rate * 5 / 2 * 1.0001, rate * rate * 5 / 2, 1.0])
    scores = d.score[0].tolist()
    assert scores[0] == 0.0 and scores[-1] == 0.0
    for score, fake in zip(scores, d.fake[0].tolist(), strict=True):
        assert 0.0 <= score <= 1.0 and (score >= 0.5) == fake
    exact = decide(torch.tensor([[rate / 5] * 5], dtype=torch.float64), [OperatingPoint(rate)])
    assert exact.fake[0].all() and exact.score[0].tolist() == [0.5] * 5
    strongest = decide(torch.tensor([[rate * rate / 5]], dtype=torch.float64), [OperatingPoint(rate)])
    assert float(strongest.score[0, 0]) == pytest.approx(1.0, abs=1e-6)


def test_verdict_top_and_family_p() -> None:
    p = torch.tensor([
        [0.5, 0.3, 0.9],  # nothing: real
        [0.5, 1e-6, 0.2],  # generator 1 passes at 1 % (3 x 1e-6 <= 0.01), far ahead of the others
        [0.5, 0.01, 0.2],  # 3 x 0.01 = 0.03: only the inconclusive band (5 %)
        [1e-3, 0.5, 1e-12],  # both pass: the far stronger one is blamed
    ], dtype=torch.float64)
    d = decide(p, [OperatingPoint(0.01, 0.05)] * 4)
    assert d.verdict == ["real", "fake", "inconclusive", "fake"]
    assert d.top == [None, 1, None, 2] and d.candidates == [[], [1], [], [2]]
    assert d.family_p.tolist() == pytest.approx([0.9, 3e-6, 0.03, 3e-12])
    # A request for a looser rate turns the inconclusive one into a fake.
    loose = decide(p[2:3], [OperatingPoint(0.05, 0.1)])
    assert loose.verdict == ["fake"]
    # ...but p = 0.01 against 0.2 is weak evidence: too close to the runner-up to name the generator.
    assert loose.top == [None] and loose.candidates == [[1, 2, 0]]


def test_a_request_may_not_ask_for_an_unsupported_rate() -> None:
    for bad in (0, 0.5, 1.5, -0.01, float("nan"), "abc", None, 1e-5):
        with pytest.raises(InvalidRate):
            check_rate(bad)  # type: ignore[arg-type]
    assert check_rate("0.05") == 0.05
    with pytest.raises(InvalidRate):
        OperatingPoint(rate=0.3)


def test_the_null_is_widened_by_wide_real_photos_and_never_narrowed() -> None:
    gen = torch.Generator().manual_seed(2)
    assert fit_null(torch.randn(400, generator=gen) * 0.6).scale == 1.0
    wide = fit_null(torch.randn(400, generator=gen) * 1.5)
    assert wide.scale == pytest.approx(1.5, rel=0.15) and wide.method == "gaussian+tail" and wide.n_reals == 400
    # Reals that sit below zero (they anti-correlate with fake - real) do not make it narrower either.
    assert fit_null(torch.randn(400, generator=gen) - 3.0).scale == 1.0
    assert NullModel.from_dict(wide.to_dict()) == wide
    with pytest.raises(ValueError):
        NullModel.from_dict({"scale": 0.5})


def test_detection_rate_uses_the_share_of_the_whole_set() -> None:
    p = torch.tensor([0.001, 0.003, 0.02, 0.5])
    assert detection_rate(p, 0.01, 1) == 0.5
    assert detection_rate(p, 0.01, 5) == 0.25  # 0.01 / 5 = 0.002: only the first


def test_a_generator_is_blamed_only_when_it_clearly_beats_the_others() -> None:
    """Related generators raise each other's statistic: too close to tell means top is None."""
    def p_at(*z: float) -> torch.Tensor:
        stat = torch.tensor([z], dtype=torch.float64)
        ones = torch.ones(len(z), dtype=torch.float64)
        return p_values(stat, ones, ones, ones)

    clear = decide(p_at(9.0, 2.0, 0.1), [OperatingPoint()])
    assert clear.top == [0] and clear.candidates == [[0]]
    close = decide(p_at(2.0, 3.7, 0.1), [OperatingPoint()])  # an SD image that the MJ fingerprint also sees
    assert close.verdict == ["fake"] and close.top == [None] and close.candidates == [[1, 0]]
    assert decide(p_at(0.5, 0.2), [OperatingPoint()]).candidates == [[]]

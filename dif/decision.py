"""The decision rule: a fingerprint's statistic -> p-value -> verdict, at a stated false-positive rate.

Why a p-value and not a fitted posterior: what costs the users of this detector is calling a
real photo fake, so the one number that must hold is the false-positive rate on real photos.
The per-generator statistic (``z``: the zero-shift correlation over this image's own
correlation noise level, see ``dif.scoring``) follows a standard normal on real photos that a
fingerprint never saw, PNG and JPEG alike (measured in docs/accuracy.md). So, as in camera
identification (PRNU), the rule is a threshold on a statistic with a known null:

- ``p_value``: the chance that a real photo scores at least this high against this generator,
  ``1 - Phi(sign * stat / scale) ** searched``. ``scale >= 1`` is a tail correction fitted on
  held-out real photos at training time (never tighter than the theory); ``searched`` is the
  number of shifts a shift-searching statistic took the best of (the maximum of many noisy
  correlations is larger than one: Sidak correction).
- Family-wise control: with G generators loaded each is tested at ``rate / G`` (Bonferroni),
  so the chance that a real photo is called fake *by the whole set* stays at most ``rate``
  however many generators are added.
- ``score`` in [0, 1]: ``log(p_adj) / (2 log(rate))`` clipped, with ``p_adj = min(1, G p)``.
  0 = no evidence, exactly 0.5 at the operating point (``score >= 0.5`` <=> ``fake``), 1 at a
  family-wise p-value of ``rate**2`` or smaller. It ranks evidence; it is not a probability.
- ``verdict``: ``fake`` (some generator passes at ``rate``), ``inconclusive`` (the best one
  passes only at the looser ``inconclusive_rate``: worth a human look), else ``real`` (not made
  by any loaded generator, as far as the fingerprints can tell).
- ``top``: the generator blamed, only when its evidence beats every other's by a margin.
  Related generators (a fine-tune and its parent, MidJourney and Stable Diffusion sharing a
  decoder) leave related fingerprints, so a fake of one also raises the other's statistic,
  sometimes higher. When another generator's evidence is within ``AMBIGUITY_MARGIN`` of the
  strongest (or above ``RELATIVE_MARGIN`` of it), ``top`` is None and ``candidates`` lists them:
  "fake, made by one of these".
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

import torch

from dif.errors import InvalidRate

DEFAULT_RATE = 0.01
DEFAULT_INCONCLUSIVE_RATE = 0.05
# Below 1e-4 the Gaussian tail is extrapolated far past anything measured on real photos;
# above 0.2 a "fake" is closer to a coin flip than to evidence.
MIN_RATE, MAX_RATE = 1e-4, 0.2
# The rates every accuracy figure is published at (TPR at FPR 1 % and 5 %).
REPORTED_RATES = (0.01, 0.05)
VERDICTS = ("fake", "inconclusive", "real")
# In N(0, 1) units of each generator's own null: a one-sided 5 % test (1.645) of the difference
# of two unit-variance statistics (sd sqrt(2) when independent; related ones differ less, so
# this is the cautious side). Below it the data cannot say which of the two made the image.
AMBIGUITY_MARGIN = 1.645 * math.sqrt(2.0)
# Under strong evidence the statistics' spread grows with the signal, and a related generator (one
# sharing a decoder: MidJourney and Stable Diffusion's 8-pixel VAE grid) scores in proportion to
# what it shares: one within half of the strongest's evidence is not ruled out either.
RELATIVE_MARGIN = 0.5


def check_rate(rate: float | str, what: str = "false-positive rate") -> float:
    """``rate`` as a float within the supported range, or InvalidRate saying what is allowed."""
    try:
        value = float(rate)
    except (TypeError, ValueError):
        raise InvalidRate(f"{what} must be a number between {MIN_RATE:g} and {MAX_RATE:g}, not {rate!r}") from None
    if not MIN_RATE <= value <= MAX_RATE:  # also refuses NaN
        raise InvalidRate(f"{what} must be between {MIN_RATE:g} and {MAX_RATE:g} (e.g. 0.01 for 1 %), not {rate!r}")
    return value


def rate_key(rate: float) -> str:
    """JSON key of a rate: ``0.01 -> "0.01"``."""
    return f"{rate:g}"


@dataclass(frozen=True)
class NullModel:
    """How one fingerprint's statistic is distributed on real photos it never saw."""

    scale: float = 1.0  # real photos' sign * statistic / scale ~ N(0, 1); >= 1
    sign: float = 1.0  # +1 when fakes correlate positively with the fingerprint
    method: str = "gaussian"  # "gaussian" (theory) or "gaussian+tail" (scale fitted on held-out reals)
    n_reals: int = 0  # held-out real photos the scale was checked on
    observed_sd: float | None = None  # their standard deviation in statistic units
    # The shift-search backstop's own scale (None: ``scale``), see ``fit_search_null``.
    search_scale: float | None = None

    @property
    def backstop_scale(self) -> float:
        return self.scale if self.search_scale is None else self.search_scale

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> NullModel:
        scale, sign = float(data.get("scale", 1.0)), float(data.get("sign", 1.0))
        if not (math.isfinite(scale) and scale >= 1.0) or sign not in (1.0, -1.0):
            raise ValueError(f"null model needs a finite scale >= 1 and a sign of +1 or -1, got {scale}, {sign}")
        observed, search = data.get("observed_sd"), data.get("search_scale")
        if search is not None and not (math.isfinite(float(search)) and float(search) >= scale):
            raise ValueError(f"null model's search_scale must be finite and >= its scale {scale}, got {search}")
        return cls(scale=scale, sign=sign, method=str(data.get("method", "gaussian")),
                   n_reals=int(data.get("n_reals", 0)), observed_sd=None if observed is None else float(observed),
                   search_scale=None if search is None else float(search))


# The shift search's share of a backstopped fingerprint's rate. Most images reach the service on
# their generator's grid, so the zero-shift test keeps most of the rate: a clean image pays a
# factor 1.25 in p, not 2 (with an even split, MidJourney's lattice lost 2 of 10 clean held-out
# fakes, docs/accuracy.md). One constant for every generator, not tuned per generator.
SEARCH_SHARE = 0.2

TAIL_QUANTILE = 0.98
TAIL_Z = 2.0537489  # Phi^-1(0.98)


def tail_widths(values: torch.Tensor) -> tuple[float, float]:
    """Two readings of how wide real photos' oriented, finite statistics spread: ``fit_null`` takes
    the larger (the percentile only from 50 photos on).

    Only the upper tail can call a real photo fake, so the spread is read from it: for N(0, s)
    the mean of max(x, 0)^2 is s^2 / 2. Measured about zero, not the mean, so a real class
    that sits above zero widens the null too, while one below zero (fingerprints are fake
    minus real residuals, so reals often anti-correlate) does not make it narrower than theory.
    A heavy upper tail (upscaled photos against a lattice fingerprint) can hide behind a normal
    RMS, so the 98th percentile over where N(0, 1) puts it is the second reading.
    """
    rms = float((values.clamp_min(0.0).square().mean() * 2.0).sqrt())
    return rms, float(torch.quantile(values, TAIL_QUANTILE)) / TAIL_Z


def fit_null(real_statistic: torch.Tensor, sign: float = 1.0) -> NullModel:
    """Tail correction from held-out real photos' statistic: widen the null when they spread more.

    Never narrower than N(0, 1): a handful of photos can look tighter than the truth by
    chance, and a too-narrow null is exactly what would call real photos fake.
    """
    values = real_statistic.double().flatten() * sign
    values = values[torch.isfinite(values)]
    if values.numel() < 2:
        return NullModel(sign=sign)
    rms, tail = tail_widths(values)
    # The percentile of fewer photos than this is too noisy to trust beside the RMS.
    spread = max(rms, tail) if values.numel() >= 50 else rms
    return NullModel(scale=max(1.0, spread), sign=sign, method="gaussian+tail", n_reals=int(values.numel()),
                     observed_sd=round(spread, 4))


def widest(nulls: list[NullModel]) -> NullModel:
    """The zero-shift null that holds for every photo collection: each fitted on one collection
    alone (``fit_null``), the widest scale kept. Pooled, a small wide collection hides behind a
    large narrow one (measured: MJ's z_bg null fitted on 400 web photos and 272 CBSD68 ones
    together had scale 1.32; CBSD68 photos it never saw spread 1.65 at their 98th percentile)."""
    return replace(nulls[0], scale=max(n.scale for n in nulls), n_reals=sum(n.n_reals for n in nulls),
                   observed_sd=max((n.observed_sd for n in nulls if n.observed_sd is not None), default=None))


# Quantiles of held-out reals' window peaks that the shift search's null must cover.
SEARCH_QUANTILES = (0.5, 0.9, TAIL_QUANTILE)


def fit_search_null(null: NullModel, peaks: torch.Tensor, searched: int) -> NullModel:
    """The shift search's own null: ``null`` with a ``search_scale`` that held-out reals' window peaks justify.

    Sidak's count assumes the shifts are independent draws of the zero-shift null. Real photos
    break that where they carry a periodic trace of their own: JPEG's 8x8 blocks, resampling,
    which a lattice fingerprint matches at *some* phase of its window (measured: 13 % of CBSD68
    photos over the 1 % threshold with the zero-shift scale). So the scale is widened until the
    peaks' median, 90th and 98th percentiles sit no higher than the best of ``searched``
    N(0, scale) draws puts them; never narrower than the zero-shift null.
    """
    values = peaks.double().flatten() * null.sign
    values = values[torch.isfinite(values)]
    scale = null.scale
    for q in SEARCH_QUANTILES:
        if values.numel() * (1.0 - q) >= 1.0:  # at least one photo above the quantile
            expected = float(torch.special.ndtri(torch.tensor(q, dtype=torch.float64) ** (1.0 / searched)))
            scale = max(scale, float(torch.quantile(values, q)) / expected)
    return replace(null, search_scale=scale)


def p_values(statistic: torch.Tensor, sign: torch.Tensor, scale: torch.Tensor, searched: torch.Tensor
             ) -> torch.Tensor:
    """Per (image, generator) p-values ``[N, G]`` under each generator's null, in float64.

    ``1 - Phi(x) ** searched`` through ``log_ndtr`` so that p-values of 1e-30 are exact
    rather than rounded to 0. A NaN statistic (nothing to correlate) gets p = 1.
    """
    x = statistic.double() * sign.double() / scale.double()
    p = -torch.expm1(searched.double() * torch.special.log_ndtr(x))
    # Floored at 1e-300 rather than 0: "smaller than any double", never "impossible for a real photo".
    return torch.where(torch.isnan(p), torch.ones_like(p), p).clamp_(1e-300, 1.0)


def gated(p: torch.Tensor, cosine: torch.Tensor, min_cosine: torch.Tensor) -> torch.Tensor:
    """A lattice fingerprint's p-values (its search's, or its zero-shift test's under the lower
    floor) where the image's periodic pattern has the fingerprint's shape (``cosine >= min_cosine``;
    ``dif.detection.Detection.gated`` and ``floored``), 1 elsewhere. A gate of 0 lets everything
    through, a NaN cosine nothing where there is a gate."""
    shaped = (cosine.double() >= min_cosine.double()) | (min_cosine.double() <= 0.0)
    return torch.where(shaped, p, torch.ones_like(p))


def backstopped(p_zero: torch.Tensor, p_search: torch.Tensor, backstop: torch.Tensor) -> torch.Tensor:
    """One p-value from a zero-shift test and a shift-search backstop, sharing the rate unevenly.

    Weighted Bonferroni (valid under any dependence between the two): the zero-shift test gets
    ``1 - SEARCH_SHARE`` of the rate and the search the rest, ``min(1, p0 / (1 - w), ps / w)``
    where ``backstop`` is set, ``p0`` elsewhere.
    """
    both = torch.minimum(p_zero / (1.0 - SEARCH_SHARE), p_search / SEARCH_SHARE).clamp_(max=1.0)
    return torch.where(backstop, both, p_zero)


@dataclass(frozen=True)
class OperatingPoint:
    """The false-positive rate a decision is taken at, for the whole loaded set."""

    rate: float = DEFAULT_RATE
    inconclusive_rate: float = DEFAULT_INCONCLUSIVE_RATE

    def __post_init__(self) -> None:
        check_rate(self.rate)
        check_rate(self.inconclusive_rate, "inconclusive rate")


@dataclass(frozen=True)
class Decisions:
    """Every decision of a batch, ``[N, G]`` per generator and ``[N]`` per image."""

    p_value: torch.Tensor  # raw per-generator p-value
    adjusted: torch.Tensor  # min(1, G p): family-wise
    fake: torch.Tensor  # bool [N, G]
    score: torch.Tensor  # [N, G] in [0, 1]
    family_p: torch.Tensor  # [N]: smallest adjusted p-value
    verdict: list[str]
    top: list[int | None]  # generator index of the one blamed, or None (nothing passes, or ambiguous)
    candidates: list[list[int]]  # of a fake: the generators within the margin of the strongest, strongest first


def evidence_units(p: torch.Tensor) -> torch.Tensor:
    """p-values back to one-sided N(0, 1) units, comparable across generators and shift windows."""
    return -torch.special.ndtri(p.double().clamp(1e-300, 1.0))


def decide(p: torch.Tensor, points: Sequence[OperatingPoint]) -> Decisions:
    """Decisions for ``p`` ``[N, G]`` with one operating point per image."""
    count, generators = p.shape
    if len(points) != count:
        raise ValueError(f"{count} images but {len(points)} operating points")
    rate = torch.tensor([pt.rate for pt in points], dtype=torch.float64)[:, None]
    loose = torch.tensor([pt.inconclusive_rate for pt in points], dtype=torch.float64)
    adjusted = (p.double() * max(generators, 1)).clamp(max=1.0)
    fake = adjusted <= rate
    # log(p_adj) / (2 log rate): both logs negative (or 0), so the ratio is >= 0. The clamps keep
    # score >= 0.5 and fake in step where rounding would split them (0.4999 survives float32).
    score = (torch.log(adjusted.clamp_min(1e-300)) / (2.0 * torch.log(rate))).abs().clamp(0.0, 1.0)  # no -0.0
    score = torch.where(fake, score.clamp_min(0.5), score.clamp_max(0.4999))
    family_p = adjusted.min(dim=1).values if generators else torch.ones(count, dtype=torch.float64)
    passed = family_p <= rate[:, 0]
    verdict = ["fake" if ok else "inconclusive" if fp <= lo else "real"
               for ok, fp, lo in zip(passed.tolist(), family_p.tolist(), loose.tolist(), strict=True)]
    units = evidence_units(p)
    candidates = [_candidates(row) if ok else [] for ok, row in zip(passed.tolist(), units, strict=True)]
    top = [c[0] if len(c) == 1 else None for c in candidates]
    return Decisions(p_value=p.double(), adjusted=adjusted, fake=fake, score=score.float(), family_p=family_p,
                     verdict=verdict, top=top, candidates=candidates)


def _candidates(units: torch.Tensor) -> list[int]:
    """Generators whose evidence is within the margin of the strongest one's, strongest first."""
    order = torch.argsort(units, descending=True, stable=True).tolist()
    best = float(units[order[0]])
    floor = min(best - AMBIGUITY_MARGIN, RELATIVE_MARGIN * best)
    return [g for g in order if g == order[0] or float(units[g]) > floor]


def detection_rate(p: torch.Tensor, rate: float, family_size: int) -> float:
    """Fraction of ``p`` that the service's rule calls fake at ``rate`` with ``family_size`` generators."""
    if p.numel() == 0:
        return float("nan")
    return float((p.double() * family_size <= rate).double().mean())

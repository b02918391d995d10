"""The lineage decision's settings and its empirical null: what unrelated pairs look like."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from dif.errors import ArtifactError
from dif.lineage.pairs import PairStats, fisher, inverse_upper_tail, upper_tail

STATISTIC = "peak_correlation_z"
MIN_POPULATION = 5  # 10 pairs: the fewest that give a usable median and MAD
MAD_TO_SIGMA = 1.4826  # the MAD of a Gaussian is 0.6745 sigma
MIN_SCALE = 1e-3  # keeps a degenerate population (identical pairs) from dividing by zero


class LineageError(ArtifactError):
    """The fingerprints cannot be compared (crop sizes differ, population too small)."""

    code = "lineage_unavailable"
    status = 422


@dataclass(frozen=True)
class LineageConfig:
    max_shift: int = 4  # shifts searched per axis by the shifted hypothesis
    alpha: float = 1e-3  # false-positive rate of the related decision, per pair
    components: int = 1  # principal directions removed besides the two means

    def __post_init__(self) -> None:
        if not 0 <= self.max_shift <= 64:
            raise ValueError("max_shift must be between 0 and 64")
        if not 0.0 < self.alpha < 0.5:
            raise ValueError("alpha must be in (0, 0.5)")
        if not 0 <= self.components <= 8:
            raise ValueError("components must be between 0 and 8")

    @property
    def threshold(self) -> float:
        """Similarity (a z-score) at or above which a pair is called related."""
        return inverse_upper_tail(self.alpha)

    def to_dict(self) -> dict[str, float | int]:
        return {"max_shift": self.max_shift, "alpha": self.alpha, "components": self.components,
                "threshold": round(self.threshold, 4)}


@dataclass(frozen=True)
class Null:
    """What unrelated pairs look like in this population.

    The correlation at any one shift is Gaussian (after Fisher's transform)
    with a robust centre and scale taken from every pair's zero-shift value.
    The best of a window of shifts is the maximum of ``shifts`` such values:
    ``shifts`` is the effective number of independent shifts (neighbouring
    shifts of a smooth or periodic surface are correlated), fitted so that the
    population's median window peak is the median of that maximum.
    """

    centre: float
    scale: float
    shifts: float
    pairs: int

    @classmethod
    def fit(cls, stats: Sequence[PairStats], window: int) -> Null:
        aligned = torch.tensor([fisher(s.aligned) for s in stats], dtype=torch.float64)
        centre = float(aligned.median())
        scale = max(MAD_TO_SIGMA * float((aligned - centre).abs().median()), MIN_SCALE)
        peaks = torch.tensor([fisher(s.peak) for s in stats], dtype=torch.float64)
        median_peak = (float(peaks.median()) - centre) / scale
        # P(max of K standard normals <= m) = Phi(m)^K = 1/2  =>  K = log(1/2) / log(Phi(m)).
        below = 1.0 - upper_tail(median_peak)
        shifts = math.log(0.5) / math.log(below) if 0.5 < below < 1.0 else 1.0
        return cls(centre, scale, min(max(shifts, 1.0), float(window)), len(stats))

    def z(self, r: float) -> float:
        return (fisher(r) - self.centre) / self.scale

    def p_aligned(self, r: float) -> float:
        return upper_tail(self.z(r))

    def p_peak(self, r: float) -> float:
        """Chance that the best of ``shifts`` unrelated shifts reaches ``r`` (Sidak)."""
        q = upper_tail(self.z(r))
        return 1.0 if q >= 1.0 else -math.expm1(self.shifts * math.log1p(-q))

    def to_dict(self) -> dict[str, float | int]:
        return {"centre": self.centre, "scale": self.scale, "effective_shifts": self.shifts, "pairs": self.pairs}

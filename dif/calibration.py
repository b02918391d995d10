"""Turning a correlation feature into a calibrated fake-probability in [0, 1].

Two Gaussian classes with a pooled spread (linear discriminant): the log-odds are
linear in the feature, so the score is a logistic curve whose midpoint is halfway
between the real and fake centres and whose slope grows as the classes separate.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch

# A floor on the spread keeps a perfectly separated training set from producing
# an infinitely steep, overconfident curve.
MIN_SPREAD = 1e-3


@dataclass(frozen=True)
class Calibration:
    real_centre: float
    fake_centre: float
    real_spread: float
    fake_spread: float
    method: str = "train"

    @property
    def threshold(self) -> float:
        return (self.real_centre + self.fake_centre) / 2.0

    @property
    def slope(self) -> float:
        pooled = max(math.sqrt((self.real_spread**2 + self.fake_spread**2) / 2.0), MIN_SPREAD)
        return (self.fake_centre - self.real_centre) / pooled**2

    def score(self, feature: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.slope * (feature.to(torch.float64) - self.threshold)).to(torch.float32)

    def to_dict(self) -> dict[str, float | str]:
        return {**asdict(self), "threshold": self.threshold, "slope": self.slope}

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> Calibration:
        return cls(
            real_centre=float(data["real_centre"]),  # type: ignore[arg-type]
            fake_centre=float(data["fake_centre"]),  # type: ignore[arg-type]
            real_spread=float(data["real_spread"]),  # type: ignore[arg-type]
            fake_spread=float(data["fake_spread"]),  # type: ignore[arg-type]
            method=str(data.get("method", "train")),
        )


def fit(real: torch.Tensor, fake: torch.Tensor, method: str) -> Calibration:
    """Fit centres and spreads from features of real and fake samples (any counts >= 1)."""
    if real.numel() == 0 or fake.numel() == 0:
        raise ValueError("calibration needs at least one real and one fake sample")

    def spread(x: torch.Tensor) -> float:
        return float(x.std(unbiased=True)) if x.numel() > 1 else 0.0

    return Calibration(
        real_centre=float(real.mean()), fake_centre=float(fake.mean()),
        real_spread=spread(real), fake_spread=spread(fake), method=method,
    )

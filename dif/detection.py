"""How residuals are matched against a fingerprint: the part of an artifact a parser needs without torch.

Command lines build their help from these defaults; ``dif.artifact`` stores them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dif.errors import ArtifactError

FEATURES = ("correlation", "peak", "z", "peak_z", "zbg")
# The residual extractor fingerprints are made with unless asked otherwise (dif.extractors' registry key).
DEFAULT_EXTRACTOR = "signlap@1"


@dataclass(frozen=True)
class Detection:
    """How residuals are matched against this fingerprint."""

    feature: str = "correlation"  # one of FEATURES (see dif.scoring)
    max_shift: int = 0  # shift window of the peak_z feature
    max_crops: int = 4
    align: int = 16

    # The one home of "which statistic and which shift window a fingerprint is decided on":
    # the detector, the trainer and the evaluation all ask here.
    @property
    def searches_shift(self) -> bool:
        return self.feature in ("peak", "peak_z")

    @property
    def statistic(self) -> str:
        """The ``Scores`` field decisions use: a correlation over its own noise level, zero-shift or best shift."""
        if self.feature == "zbg":
            return "zbg"
        return "peak_z" if self.searches_shift else "z"

    @property
    def window(self) -> int:
        """Shift window in pixels (0: zero shift only)."""
        return self.max_shift if self.searches_shift else 0

    @property
    def searched(self) -> int:
        """How many shifts the statistic is the best of (its null's Sidak count)."""
        return (2 * self.window + 1) ** 2

    def to_dict(self) -> dict[str, Any]:
        return {"feature": self.feature, "max_shift": self.max_shift,
                "max_crops": self.max_crops, "align": self.align}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Detection:
        feature = str(data.get("feature", "correlation"))
        if feature not in FEATURES:
            raise ArtifactError(f"detection.feature must be one of {', '.join(FEATURES)}, not {feature!r}")
        return cls(feature=feature, max_shift=int(data.get("max_shift", 0)),
                   max_crops=int(data.get("max_crops", 4)), align=int(data.get("align", 16)))

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
    # Shift-search backstop of a zero-shift statistic, pixels per axis (0: none); see ``backstop``.
    backstop_window: int = 0
    # Period of a lattice fingerprint (0: aperiodic), and the least cosine between an image's
    # residual folded on that lattice and the fingerprint, at the backstop's best shift, for the
    # search to count (0: no such gate); see ``gated``.
    lattice: int = 0
    min_cosine: float = 0.0
    # The least grid cosine for a gated lattice's *zero-shift* test to count (0: no floor); see ``floored``.
    floor_cosine: float = 0.0

    # The one home of "which statistic and which shift window a fingerprint is decided on":
    # the detector, the trainer and the evaluation all ask here.
    @property
    def searches_shift(self) -> bool:
        """The statistic itself is the best of a shift window (``peak``/``peak_z``)."""
        return self.feature in ("peak", "peak_z")

    @property
    def backstop(self) -> bool:
        """Decided on the zero-shift statistic *or* the window's best (``peak_zbg`` / ``peak_z``).

        A structured fingerprint is phase-locked to the generator's pixel grid, so a copy shifted
        by a few pixels or cropped at an odd offset scores nothing at zero shift. Searching every
        phase costs power on clean images (the best of many shifts needs a higher threshold), so
        the zero-shift test keeps most of the rate and the search gets the rest (weighted
        Bonferroni, ``dif.decision.backstopped``): a clean image loses a factor 1.25 in p, a
        shifted one is still caught.
        """
        return self.backstop_window > 0 and not self.searches_shift

    @property
    def gated(self) -> bool:
        """The shift search counts only for images whose periodic trace *is* this fingerprint's.

        Searching every phase of a lattice also finds another generator's periodic trace at some
        phase, stronger than any photo's: an unrelated generator's fakes, cropped or not, would be
        called this generator's. A match at a shift must therefore have the fingerprint's shape as
        well as its strength: the cosine between the image's residual folded on the lattice and
        the fingerprint's cell, at the window's best shift, reaches what its own held-out fakes
        reach (``min_cosine``, chosen at training by inner cross-validation). A gate can only turn
        a pass into a miss, so the null still holds. The zero-shift test has a lower gate of its
        own (``floored``): gating it at ``min_cosine`` too was measured (docs/accuracy.md) to cost
        each lattice about a tenth of its clean fakes.
        """
        return self.backstop and self.lattice > 0 and self.min_cosine > 0.0

    @property
    def floored(self) -> bool:
        """The zero-shift test counts only for images whose periodic pattern is shaped like the
        fingerprint's better than most photos' are.

        A photo that passes a lattice's zero-shift test does so by the sheer periodic energy that
        resampling or re-compression left in it, of which a small part projects on the fingerprint:
        its grid cosine is low. ``floor_cosine`` is what the null photos' cosines rarely reach
        (their 95th percentile at training, never above ``min_cosine``), so a generator's own fakes,
        whose cosines reach ``min_cosine``, keep their zero-shift test. Like the gate, it can only
        turn a pass into a miss.
        """
        return self.gated and self.floor_cosine > 0.0

    @property
    def backstop_statistic(self) -> str:
        return "peak_zbg" if self.feature == "zbg" else "peak_z"

    @property
    def decision_statistics(self) -> tuple[str, ...]:
        """The ``Scores`` fields a decision reads: the statistic, then the backstop's if there is one."""
        if not self.backstop:
            return (self.statistic,)
        return (self.statistic, self.backstop_statistic, *(("grid_cosine",) if self.gated else ()))

    @property
    def statistic(self) -> str:
        """The ``Scores`` field decisions use: a correlation over its own noise level, zero-shift or best shift."""
        if self.feature == "zbg":
            return "zbg"
        return "peak_z" if self.searches_shift else "z"

    @property
    def window(self) -> int:
        """Shift window in pixels (0: zero shift only)."""
        if self.searches_shift:
            return self.max_shift
        return self.backstop_window if self.backstop else 0

    @property
    def searched(self) -> int:
        """How many shifts the statistic is the best of (its null's Sidak count)."""
        return (2 * self.window + 1) ** 2 if self.searches_shift else 1

    @property
    def backstop_searched(self) -> int:
        """Sidak count of the backstop's shift search (1: no backstop)."""
        return (2 * self.backstop_window + 1) ** 2 if self.backstop else 1

    def to_dict(self) -> dict[str, Any]:
        return {"feature": self.feature, "max_shift": self.max_shift,
                "max_crops": self.max_crops, "align": self.align, "backstop_window": self.backstop_window,
                "lattice": self.lattice, "min_cosine": self.min_cosine, "floor_cosine": self.floor_cosine}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Detection:
        feature = str(data.get("feature", "correlation"))
        if feature not in FEATURES:
            raise ArtifactError(f"detection.feature must be one of {', '.join(FEATURES)}, not {feature!r}")
        lattice, min_cosine = int(data.get("lattice", 0)), float(data.get("min_cosine", 0.0))
        if lattice < 0 or not 0.0 <= min_cosine <= 1.0:
            raise ArtifactError(f"detection.lattice must be >= 0 and detection.min_cosine within [0, 1], "
                                f"not {lattice} and {min_cosine}")
        floor_cosine = float(data.get("floor_cosine", 0.0))
        if not 0.0 <= floor_cosine <= min_cosine:  # min_cosine >= 0 here, so 0 (no floor) always passes
            raise ArtifactError(f"detection.floor_cosine must be within [0, min_cosine = {min_cosine}], "
                                f"not {floor_cosine}")
        return cls(feature=feature, max_shift=int(data.get("max_shift", 0)),
                   max_crops=int(data.get("max_crops", 4)), align=int(data.get("align", 16)),
                   backstop_window=int(data.get("backstop_window", 0)), lattice=lattice, min_cosine=min_cosine,
                   floor_cosine=floor_cosine)

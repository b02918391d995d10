"""Calibrated comparisons: one pair against a population, and every pair of a set."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from dif.artifact import Fingerprint
from dif.lineage.null import STATISTIC, LineageConfig, LineageError, Null
from dif.lineage.pairs import Z_CAP, PairStats, inverse_upper_tail
from dif.lineage.population import Population


@dataclass(frozen=True)
class Comparison:
    a: str
    b: str
    similarity: float  # z-score of the combined p-value: related when >= threshold
    related: bool
    shift: tuple[int, int]  # (dy, dx): B's pattern is A's moved by this much
    hypothesis: str  # "aligned" or "shifted": which test gave the p-value
    correlation: float  # at that shift, after the shared subspace is removed
    pce: float  # peak-to-correlation energy at that shift (reported, not decided on)
    p_value: float
    threshold: float
    population: int
    statistic: str = STATISTIC
    warnings: tuple[str, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        return {
            "a": self.a, "b": self.b, "statistic": self.statistic, "similarity": round(self.similarity, 4),
            "related": self.related, "shift": list(self.shift), "hypothesis": self.hypothesis,
            "correlation": round(self.correlation, 6), "pce": round(self.pce, 4), "p_value": self.p_value,
            "threshold": round(self.threshold, 4), "population": self.population, "warnings": list(self.warnings),
        }


def calibrate(a: Fingerprint, b: Fingerprint, stats: PairStats, null: Null, config: LineageConfig,
              population: int) -> Comparison:
    p_aligned, p_peak = null.p_aligned(stats.aligned), null.p_peak(stats.peak)
    aligned = p_aligned <= p_peak or stats.shift == (0, 0)
    p = min(1.0, 2.0 * min(p_aligned, p_peak))  # Bonferroni over the two hypotheses
    # Below p's resolution the z-scores still rank pairs, so fall back to them.
    z = inverse_upper_tail(p) if 1e-300 < p < 1.0 else null.z(stats.aligned if aligned else stats.peak)
    warnings = []
    if a.extractor_key != b.extractor_key:
        warnings.append(f"extractors differ ({a.extractor_key} vs {b.extractor_key}): their residuals are "
                        "not the same signal, so the comparison is weaker")
    return Comparison(
        a=a.name, b=b.name, similarity=max(-Z_CAP, min(Z_CAP, z)), related=p <= config.alpha,
        shift=(0, 0) if aligned else stats.shift, hypothesis="aligned" if aligned else "shifted",
        correlation=stats.aligned if aligned else stats.peak,
        pce=stats.pce_aligned if aligned else stats.pce_peak, p_value=p, threshold=config.threshold,
        population=population, warnings=tuple(warnings),
    )


def compare(a: Fingerprint, b: Fingerprint, population: Population) -> Comparison:
    """Calibrated lineage of ``a`` and ``b`` against ``population`` (which may contain them)."""
    i, j = population.index(a), population.index(b)
    if i is not None and i == j:
        raise LineageError(f"{a.name} and {b.name} are the same fingerprint")
    stats = population.member_stats(i, j) if i is not None and j is not None else population.stats(a, b)
    return calibrate(a, b, stats, population.null, population.config, len(population.members))


@dataclass(frozen=True)
class LineageMatrix:
    names: list[str]
    comparisons: dict[tuple[int, int], Comparison]  # i < j

    def values(self, key: str = "similarity") -> list[list[Any]]:
        """A symmetric ``n x n`` table of one field of the comparisons, ``None`` on the diagonal."""
        n = len(self.names)
        out: list[list[Any]] = [[None] * n for _ in range(n)]
        for (i, j), c in self.comparisons.items():
            out[i][j] = out[j][i] = getattr(c, key)
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"names": self.names, "statistic": STATISTIC,
                "similarity": [[None if v is None else round(v, 4) for v in row] for row in self.values()],
                "related": self.values("related"), "pairs": [c.to_dict() for c in self.comparisons.values()]}


def matrix(fingerprints: Sequence[Fingerprint], population: Population) -> LineageMatrix:
    """Every pair of ``fingerprints``, calibrated against ``population``."""
    names = [fp.name for fp in fingerprints]
    if len(set(names)) != len(names):
        raise LineageError(f"fingerprint names must be unique in a matrix, got {names}")
    comparisons = {(i, j): compare(fingerprints[i], fingerprints[j], population)
                   for i, j in itertools.combinations(range(len(fingerprints)), 2)}
    return LineageMatrix(names, comparisons)

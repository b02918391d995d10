"""Model lineage: is generator B derived from generator A? Compare their fingerprints.

A naive Pearson correlation between two fingerprints fails (docs/lineage.md): every
fingerprint also holds what the whole population shares (the fingerprint
network's prior, the extractor's bias, the generic "fake versus real" direction),
a fingerprint's sign is arbitrary (only ``fake_centre - real_centre`` fixes it),
and a child's fingerprint may be a shifted copy of its parent's. So, per pair:

1. orient both fingerprints so that each points towards its generator's images;
2. project both off the population's shared subspace: the mean of the raw
   fingerprints (shared prior, whatever the sign) and the mean of the oriented
   ones (shared fake direction). The pair itself is left out of that
   population, otherwise each fingerprint's own share of the mean biases the pair;
3. correlate them at every circular shift by FFT (Pearson per shift);
4. test two hypotheses: *aligned* (zero shift: crops are cut on the generator's
   pixel grid, so a child's pattern usually sits where its parent's does) and
   *shifted* (the best correlation within ``±max_shift``);
5. calibrate each against an empirical null (Efron): the Fisher-transformed
   statistic of every pair of the population, summarised by its median and MAD.
   Most pairs of a population are unrelated, and the robust summary ignores the
   few that are not. Each hypothesis gets half the false-positive budget
   ``alpha`` (Bonferroni); the similarity is the combined p-value written as a
   z-score, so one threshold serves both.

The peak-to-correlation energy (PCE) of the retained peak is reported too, but
not used to decide: a generator's trace is periodic (its upsampling period), so
its correlation surface repeats the peak every period and the PCE's "energy
away from the peak" contains the signal itself (docs/lineage.md has the numbers).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from dif.artifact import Fingerprint, tensor_digest
from dif.errors import ArtifactError

STATISTIC = "peak_correlation_z"
MIN_POPULATION = 5  # 10 pairs: the fewest that give a usable median and MAD
MAD_TO_SIGMA = 1.4826  # MAD of a Gaussian is 0.6745 sigma
MIN_SCALE = 1e-3  # keeps a degenerate (identical) population from dividing by zero
PCE_EXCLUDE = 1  # the peak's own main lobe, left out of the PCE's energy
Z_CAP = 37.0  # |z| beyond this is a p-value below float precision


class LineageError(ArtifactError):
    """The fingerprints cannot be compared (sizes differ, population too small)."""

    code = "lineage_unavailable"
    http_status = 422


@dataclass(frozen=True)
class LineageConfig:
    max_shift: int = 4  # shifts searched per axis by the shifted hypothesis
    alpha: float = 1e-3  # false-positive rate of the related decision, per pair
    emphasis: float = 0.0  # cross-power weighting exponent (0: plain correlation)
    components: int = 0  # principal components of the population removed besides its two means

    def __post_init__(self) -> None:
        if not 0 <= self.max_shift <= 64:
            raise ValueError("max_shift must be between 0 and 64")
        if not 0.0 < self.alpha < 0.5:
            raise ValueError("alpha must be in (0, 0.5)")

    @property
    def threshold(self) -> float:
        """Similarity (a z-score) at or above which a pair is called related."""
        return inverse_upper_tail(self.alpha)


# --- Gaussian tails without scipy -------------------------------------------------------------

def upper_tail(z: float) -> float:
    """P(N(0,1) > z)."""
    return 0.5 * math.erfc(z / math.sqrt(2.0))


def inverse_upper_tail(p: float) -> float:
    """z with P(N(0,1) > z) = p, by bisection on the monotone tail."""
    if p <= 0.0:
        return Z_CAP
    if p >= 1.0:
        return -Z_CAP
    lo, hi = -Z_CAP, Z_CAP
    for _ in range(100):
        mid = (lo + hi) / 2
        if upper_tail(mid) > p:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


# --- one pair: raw statistics -----------------------------------------------------------------

def orientation(fp: Fingerprint) -> float:
    """+1 when the generator's residuals correlate positively with the fingerprint, else -1."""
    return 1.0 if fp.calibration.fake_centre > fp.calibration.real_centre else -1.0


def unit(x: torch.Tensor) -> torch.Tensor:
    """Per-channel zero mean, unit norm over each ``[C, H, W]`` tensor (float64)."""
    x = x.to(torch.float64)
    x = x - x.mean(dim=(-2, -1), keepdim=True)
    norm = x.flatten(-3).norm(dim=-1).clamp_min(1e-30)
    return x / norm[..., None, None, None]


def correlation_surface(a: torch.Tensor, b: torch.Tensor, emphasis: float = 0.0) -> torch.Tensor:
    """Correlation of unit tensors ``[C, H, W]`` at every circular shift: ``[H, W]`` in [-1, 1].

    Index ``(dy, dx)`` is ``sum a(p) b(p + (dy, dx))``: it peaks there when ``b``'s
    pattern is ``a``'s moved by ``(dy, dx)``. With ``emphasis`` > 0 both spectra
    are first weighted by the pair's cross-power to that power, which favours
    the line spectra of upsampling traces over broadband coincidences; the
    result is still a correlation (Cauchy-Schwarz keeps it within [-1, 1]).
    """
    h, w = a.shape[-2:]
    fa, fb = torch.fft.rfft2(a), torch.fft.rfft2(b)
    cross = (fa.conj() * fb).sum(dim=0)
    if emphasis == 0.0:
        return torch.fft.irfft2(cross, s=(h, w))
    mag = cross.abs()
    weight = (mag / mag.mean().clamp_min(1e-300)).pow(emphasis)
    # Parseval weights of the half spectrum: inner columns stand for two bins.
    half = torch.full((w // 2 + 1,), 2.0, dtype=mag.dtype)
    half[0] = 1.0
    if w % 2 == 0:
        half[-1] = 1.0
    energy_a = (fa.abs().square().sum(dim=0) * weight * half).sum()
    energy_b = (fb.abs().square().sum(dim=0) * weight * half).sum()
    return torch.fft.irfft2(cross * weight, s=(h, w)) * (h * w) / (energy_a * energy_b).sqrt().clamp_min(1e-300)


def _window(h: int, w: int, max_shift: int) -> torch.Tensor:
    dy, dx = torch.arange(h), torch.arange(w)
    dy, dx = torch.minimum(dy, h - dy), torch.minimum(dx, w - dx)
    return (dy[:, None] <= max_shift) & (dx[None, :] <= max_shift)


def _signed(index: int, size: int) -> int:
    return index - size if index > size // 2 else index


def peak_pce(surface: torch.Tensor, dy: int, dx: int) -> float:
    """Signed PCE: the value at ``(dy, dx)`` squared over the mean energy away from it."""
    h, w = surface.shape
    ddy = (torch.arange(h)[:, None] - dy).remainder(h)
    ddx = (torch.arange(w)[None, :] - dx).remainder(w)
    far = (torch.minimum(ddy, h - ddy) > PCE_EXCLUDE) | (torch.minimum(ddx, w - ddx) > PCE_EXCLUDE)
    peak = float(surface[dy, dx])
    return math.copysign(peak * peak / max(float(surface[far].square().mean()), 1e-300), peak)


@dataclass(frozen=True)
class PairStats:
    """Uncalibrated statistics of one pair."""

    aligned: float  # Pearson correlation at zero shift
    peak: float  # best Pearson correlation within the window
    shift: tuple[int, int]  # where ``peak`` was found, (dy, dx) signed
    pce_aligned: float
    pce_peak: float


def pair_stats(a: torch.Tensor, b: torch.Tensor, max_shift: int, emphasis: float = 0.0) -> PairStats:
    surface = correlation_surface(a, b, emphasis)
    h, w = surface.shape
    masked = surface.masked_fill(~_window(h, w, max_shift), float("-inf"))
    dy, dx = divmod(int(masked.argmax()), w)
    return PairStats(aligned=float(surface[0, 0]), peak=float(surface[dy, dx]),
                     shift=(_signed(dy, h), _signed(dx, w)),
                     pce_aligned=peak_pce(surface, 0, 0), pce_peak=peak_pce(surface, dy, dx))


def fisher(r: float) -> float:
    """atanh, clipped: makes correlations of different strengths comparable on one scale."""
    return math.atanh(max(-0.999999, min(0.999999, r)))


# --- the population: shared subspace and empirical null ---------------------------------------

@dataclass(frozen=True)
class Null:
    """Robust centre and scale of the Fisher-transformed statistics over a population's pairs."""

    aligned_centre: float
    aligned_scale: float
    peak_centre: float
    peak_scale: float
    pairs: int

    @classmethod
    def fit(cls, stats: Sequence[PairStats]) -> Null:
        def robust(values: list[float]) -> tuple[float, float]:
            t = torch.tensor(values, dtype=torch.float64)
            centre = float(t.median())
            return centre, max(MAD_TO_SIGMA * float((t - centre).abs().median()), MIN_SCALE)

        ac, asc = robust([fisher(s.aligned) for s in stats])
        pc, psc = robust([fisher(s.peak) for s in stats])
        return cls(ac, asc, pc, psc, len(stats))

    def to_dict(self) -> dict[str, float | int]:
        return {"aligned_centre": self.aligned_centre, "aligned_scale": self.aligned_scale,
                "peak_centre": self.peak_centre, "peak_scale": self.peak_scale, "pairs": self.pairs}


def _orthonormal_rows(coef: torch.Tensor, gram: torch.Tensor) -> torch.Tensor:
    """Coefficients of orthonormal vectors spanning ``coef @ members`` (members' Gram matrix ``gram``).

    Works in the population's coefficient space (``[k, m]``), never on pixels:
    the vectors ``coef @ U`` have Gram ``coef @ gram @ coef.T``; its eigenvectors
    rotate and rescale them to an orthonormal set; near-dependent ones are dropped.
    """
    values, vectors = torch.linalg.eigh(coef @ gram @ coef.T)
    keep = values > 1e-10 * max(float(values.max()), 1e-30)
    return (vectors[:, keep] / values[keep].sqrt()).T @ coef


class Population:
    """Fingerprints of one crop size: their shared subspace and the null of their pairs.

    Members are keyed by tensor digest, so a fingerprint compared with another
    is always left out of the background it is compared against. The shared
    subspace of any subset of members lies in the span of their unit vectors,
    so it is computed from their Gram matrix (``n x n``), not from pixels.
    """

    def __init__(self, fingerprints: Sequence[Fingerprint], config: LineageConfig = LineageConfig()):
        if len(fingerprints) < MIN_POPULATION:
            raise LineageError(
                f"lineage needs a population of at least {MIN_POPULATION} fingerprints of one crop size "
                f"(to learn what they all share and what unrelated pairs look like); got {len(fingerprints)}. "
                "Compare within a larger set, or pass --population DIR with more artifacts"
            )
        sizes = sorted({fp.crop_size for fp in fingerprints})
        if len(sizes) != 1:
            raise LineageError(f"population fingerprints must share one crop size, found {sizes}")
        self.size = sizes[0]
        self.config = config
        self.members = list(fingerprints)
        self.keys = [tensor_digest(fp.tensor) for fp in fingerprints]
        if len(set(self.keys)) != len(self.keys):
            raise LineageError("the population holds the same fingerprint twice; remove the duplicate")
        self.units = unit(torch.stack([fp.tensor for fp in fingerprints])).flatten(1)  # [n, D]
        self.signs = torch.tensor([orientation(fp) for fp in fingerprints], dtype=torch.float64)
        self.gram = self.units @ self.units.T
        self._null: Null | None = None
        self._member_stats: dict[tuple[int, int], PairStats] = {}

    def index(self, fp: Fingerprint) -> int | None:
        key = tensor_digest(fp.tensor)
        return self.keys.index(key) if key in self.keys else None

    def background(self, exclude: Sequence[Fingerprint]) -> tuple[list[int], torch.Tensor]:
        """Members left after ``exclude``, and orthonormal coefficients ``[k, m]`` of their shared subspace.

        The subspace is spanned by the mean raw fingerprint (shared prior), the
        mean oriented one (shared fake direction) and the first ``components``
        principal directions of what remains (priors shared by a subgroup, e.g.
        fingerprints trained from the same seed).
        """
        skip = {i for i in (self.index(fp) for fp in exclude) if i is not None}
        keep = [i for i in range(len(self.members)) if i not in skip]
        gram = self.gram[keep][:, keep]
        means = torch.stack([torch.ones(len(keep), dtype=torch.float64), self.signs[keep]])
        basis = _orthonormal_rows(means, gram)
        if self.config.components > 0:
            # Members with the means projected out, as coefficients; their principal directions.
            rest = torch.eye(len(keep), dtype=torch.float64) - (basis @ gram).T @ basis
            values, vectors = torch.linalg.eigh(rest @ gram @ rest.T)
            top = vectors[:, values.argsort(descending=True)[: self.config.components]]
            basis = _orthonormal_rows(torch.cat([basis, top.T @ rest]), gram)
        return keep, basis

    def prepare(self, fp: Fingerprint, keep: list[int], basis: torch.Tensor) -> torch.Tensor:
        """Oriented unit fingerprint ``[C, H, W]`` with the shared subspace projected out."""
        x = unit(fp.tensor).flatten()
        members = self.units[keep]
        along = basis @ (members @ x)  # coordinates of x on the orthonormal basis
        x = x - (basis.T @ along) @ members
        return unit(x.reshape(fp.tensor.shape)) * orientation(fp)

    def stats(self, a: Fingerprint, b: Fingerprint) -> PairStats:
        for fp in (a, b):
            if fp.crop_size != self.size:
                raise LineageError(
                    f"{fp.name} has crop size {fp.crop_size} but the population's is {self.size}; "
                    "fingerprints of different crop sizes cannot be compared"
                )
        keep, basis = self.background([a, b])
        return pair_stats(self.prepare(a, keep, basis), self.prepare(b, keep, basis), self.config.max_shift,
                          self.config.emphasis)

    def member_stats(self, i: int, j: int) -> PairStats:
        """Statistics of members ``i < j``, computed once."""
        if (i, j) not in self._member_stats:
            self._member_stats[(i, j)] = self.stats(self.members[i], self.members[j])
        return self._member_stats[(i, j)]

    @property
    def null(self) -> Null:
        if self._null is None:
            pairs = itertools.combinations(range(len(self.members)), 2)
            self._null = Null.fit([self.member_stats(i, j) for i, j in pairs])
        return self._null


# --- calibrated comparison --------------------------------------------------------------------

@dataclass(frozen=True)
class Comparison:
    a: str
    b: str
    similarity: float  # z-score of the combined p-value: related when >= threshold
    related: bool
    shift: tuple[int, int]  # (dy, dx) of the retained hypothesis; (0, 0) when aligned
    hypothesis: str  # "aligned" or "shifted"
    correlation: float  # Pearson correlation at that shift, after removing the shared subspace
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
    z_aligned = (fisher(stats.aligned) - null.aligned_centre) / null.aligned_scale
    z_peak = (fisher(stats.peak) - null.peak_centre) / null.peak_scale
    p_aligned, p_peak = upper_tail(z_aligned), upper_tail(z_peak)
    aligned = p_aligned <= p_peak
    p = min(1.0, 2.0 * min(p_aligned, p_peak))  # Bonferroni over the two hypotheses
    similarity = max(-Z_CAP, min(Z_CAP, inverse_upper_tail(p) if p < 1.0 else min(z_aligned, z_peak)))
    warnings = []
    if a.extractor_key != b.extractor_key:
        warnings.append(f"extractors differ ({a.extractor_key} vs {b.extractor_key}): their residuals are "
                        "not the same signal, so the comparison is weaker")
    return Comparison(
        a=a.name, b=b.name, similarity=similarity, related=p <= config.alpha,
        shift=(0, 0) if aligned else stats.shift, hypothesis="aligned" if aligned else "shifted",
        correlation=stats.aligned if aligned else stats.peak,
        pce=stats.pce_aligned if aligned else stats.pce_peak, p_value=p, threshold=config.threshold,
        population=population, warnings=tuple(warnings),
    )


def compare(a: Fingerprint, b: Fingerprint, population: Population) -> Comparison:
    """Calibrated lineage of ``a`` and ``b`` against ``population`` (which may contain them)."""
    i, j = population.index(a), population.index(b)
    if i is not None and j is not None and i != j:
        stats = population.member_stats(min(i, j), max(i, j))
        if i > j:  # the stored pair was measured the other way round
            stats = PairStats(stats.aligned, stats.peak, (-stats.shift[0], -stats.shift[1]),
                              stats.pce_aligned, stats.pce_peak)
    else:
        stats = population.stats(a, b)
    return calibrate(a, b, stats, population.null, population.config, len(population.members))


@dataclass(frozen=True)
class LineageMatrix:
    names: list[str]
    comparisons: dict[tuple[int, int], Comparison]  # i < j

    def values(self, key: str = "similarity") -> list[list[float | None]]:
        n = len(self.names)
        out: list[list[float | None]] = [[None] * n for _ in range(n)]
        for (i, j), c in self.comparisons.items():
            out[i][j] = out[j][i] = float(getattr(c, key))
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "names": self.names, "statistic": STATISTIC,
            "similarity": self.values("similarity"), "related": [
                [None if v is None else bool(v) for v in row] for row in self.values("related")],
            "pairs": [c.to_dict() for c in self.comparisons.values()],
        }


def matrix(fingerprints: Sequence[Fingerprint], population: Population) -> LineageMatrix:
    """Every pair of ``fingerprints``, calibrated against ``population``."""
    names = [fp.name for fp in fingerprints]
    if len(set(names)) != len(names):
        raise LineageError(f"fingerprint names must be unique in a matrix, got {names}")
    comparisons = {(i, j): compare(fingerprints[i], fingerprints[j], population)
                   for i, j in itertools.combinations(range(len(fingerprints)), 2)}
    return LineageMatrix(names, comparisons)

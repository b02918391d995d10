"""Model lineage: is generator B derived from generator A? Compare their fingerprints.

A naive Pearson correlation between two fingerprints fails (docs/lineage.md):
every fingerprint also holds what the whole population shares (the fingerprint
network's prior, the extractor's bias, the generic "fake versus real"
direction), a fingerprint's sign is arbitrary (only ``fake_centre -
real_centre`` fixes it), and a child's fingerprint may be a shifted copy of its
parent's. So, for a pair A, B and a population of fingerprints:

1. orient both so that each points towards its own generator's images;
2. project both off the shared subspace of the population *without A and B*
   (a member's own share of a mean would bias its pair): the mean raw
   fingerprint (shared prior, whatever the sign), the mean oriented one (shared
   fake direction) and the ``components`` leading principal directions of what
   remains (a prior shared by a subgroup, e.g. fingerprints trained from one seed);
3. correlate them at every circular shift at once by FFT (a Pearson
   correlation per shift);
4. test two hypotheses: *aligned* (zero shift: crops sit on the generator's
   pixel grid, so a child's pattern usually lies where its parent's does) and
   *shifted* (the best correlation within ``±max_shift``);
5. calibrate both against an empirical null (Efron, 2004) fitted on every
   pair of the population: the Fisher-transformed zero-shift correlation,
   summarised by median and MAD, and for the shifted hypothesis the maximum of
   an effective number of such values (Sidak), fitted to the pairs' window
   peaks. Most pairs of a population are unrelated and the robust summaries
   ignore the few that are not. Each hypothesis gets half the false-positive
   budget ``alpha`` (Bonferroni); the similarity is the combined p-value
   written as a z-score, so one threshold serves both.

The peak-to-correlation energy (PCE) at the retained shift is reported but not
decided on: a generator's trace is periodic (its upsampling period), so the
correlation surface repeats the peak every period and the PCE's "energy away
from the peak" holds the signal itself (docs/lineage.md has the numbers).

Everything about the population is computed once: its members' spectra and
Gram matrix; the shared subspace of any subset of members lies in the span of
their unit vectors, so leaving a pair out costs an ``n x n`` eigenproblem and
one combination of spectra, never a pass over pixels.
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
MAD_TO_SIGMA = 1.4826  # the MAD of a Gaussian is 0.6745 sigma
MIN_SCALE = 1e-3  # keeps a degenerate population (identical pairs) from dividing by zero
PCE_EXCLUDE = 1  # the peak's own main lobe, left out of the PCE's energy
Z_CAP = 37.0  # beyond this a p-value underflows


class LineageError(ArtifactError):
    """The fingerprints cannot be compared (crop sizes differ, population too small)."""

    code = "lineage_unavailable"
    http_status = 422


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


# --- Gaussian tails (no scipy) ------------------------------------------------------------------

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


def fisher(r: float) -> float:
    """atanh, clipped: puts correlations of different strengths on one scale."""
    return math.atanh(max(-0.999999, min(0.999999, r)))


# --- one pair's statistics ----------------------------------------------------------------------

def orientation(fp: Fingerprint) -> float:
    """+1 when the generator's residuals correlate positively with the fingerprint, else -1."""
    return 1.0 if fp.calibration.fake_centre > fp.calibration.real_centre else -1.0


def unit(x: torch.Tensor) -> torch.Tensor:
    """Per-channel zero mean, unit norm over each ``[C, H, W]`` tensor (float64)."""
    x = x.to(torch.float64)
    x = x - x.mean(dim=(-2, -1), keepdim=True)
    norm = x.flatten(-3).norm(dim=-1).clamp_min(1e-30)
    return x / norm[..., None, None, None]


def correlation_surface(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Correlation of unit tensors ``[C, H, W]`` at every circular shift: ``[H, W]``.

    Index ``(dy, dx)`` is ``sum_p a(p) b(p + (dy, dx))``: it peaks there when
    ``b``'s pattern is ``a``'s moved by ``(dy, dx)``.
    """
    cross = (torch.fft.rfft2(a).conj() * torch.fft.rfft2(b)).sum(dim=0)
    return torch.fft.irfft2(cross, s=tuple(a.shape[-2:]))


def _window_indices(size: int, max_shift: int) -> torch.Tensor:
    """Circular indices of shifts ``-max_shift..max_shift`` along one axis (each once)."""
    reach = min(max_shift, (size - 1) // 2)
    return torch.arange(-reach, reach + 1).remainder(size)


def _signed(index: int, size: int) -> int:
    return index - size if index > size // 2 else index


@dataclass(frozen=True)
class PairStats:
    """Uncalibrated statistics of one pair."""

    aligned: float  # correlation at zero shift
    peak: float  # best correlation within the window
    shift: tuple[int, int]  # where ``peak`` is, (dy, dx) signed
    pce_aligned: float
    pce_peak: float

    def swapped(self) -> PairStats:
        """The same pair measured the other way round (B against A)."""
        return PairStats(self.aligned, self.peak, (-self.shift[0], -self.shift[1]), self.pce_aligned,
                         self.pce_peak)


def _pce(surfaces: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor, energy: torch.Tensor) -> torch.Tensor:
    """Signed PCE of each surface at ``(dy, dx)``: the value squared over the mean energy away from it.

    The energy away from the peak is the total minus the peak's ``(2 PCE_EXCLUDE + 1)^2`` neighbourhood.
    """
    count, h, w = surfaces.shape
    offsets = torch.arange(-PCE_EXCLUDE, PCE_EXCLUDE + 1)
    rows = (dy[:, None] + offsets).remainder(h)[:, :, None]
    cols = (dx[:, None] + offsets).remainder(w)[:, None, :]
    near = surfaces[torch.arange(count)[:, None, None], rows, cols]
    far = (energy - near.square().sum(dim=(1, 2))) / (h * w - near[0].numel())
    peak = surfaces[torch.arange(count), dy, dx]
    return torch.sign(peak) * peak.square() / far.clamp_min(1e-30)


def surface_stats(surfaces: torch.Tensor, max_shift: int) -> list[PairStats]:
    """Aligned value, window peak, its shift and both PCEs of each surface ``[P, H, W]``."""
    count, h, w = surfaces.shape
    rows, cols = _window_indices(h, max_shift), _window_indices(w, max_shift)
    window = surfaces[:, rows][:, :, cols].reshape(count, -1)
    best = window.argmax(dim=1)
    dy, dx = rows[best // len(cols)], cols[best % len(cols)]
    energy = surfaces.square().sum(dim=(1, 2))
    zeros = torch.zeros(count, dtype=torch.long)
    pce_aligned, pce_peak = _pce(surfaces, zeros, zeros, energy), _pce(surfaces, dy, dx, energy)
    peak = surfaces[torch.arange(count), dy, dx]
    return [PairStats(aligned=float(surfaces[k, 0, 0]), peak=float(peak[k]),
                      shift=(_signed(int(dy[k]), h), _signed(int(dx[k]), w)),
                      pce_aligned=float(pce_aligned[k]), pce_peak=float(pce_peak[k])) for k in range(count)]


# --- the population: shared subspace and empirical null -----------------------------------------

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


def _orthonormal_rows(coef: torch.Tensor, gram: torch.Tensor) -> torch.Tensor:
    """Coefficients of orthonormal vectors spanning those of ``coef`` over members with Gram ``gram``.

    The vectors ``coef @ U`` have Gram ``coef @ gram @ coef.T``; its eigenvectors
    rotate and rescale them into an orthonormal set; near-dependent ones are dropped.
    """
    values, vectors = torch.linalg.eigh(coef @ gram @ coef.T)
    keep = values > 1e-10 * max(float(values.max()), 1e-30)
    return (vectors[:, keep] / values[keep].sqrt()).T @ coef


@dataclass(frozen=True)
class Side:
    """One fingerprint of a pair, as the population sees it: what to correlate is
    ``scale * (spectrum - weights @ population spectra)`` (its part off the shared subspace)."""

    spectrum: torch.Tensor  # [C, H, W/2+1] of its unit tensor
    weights: torch.Tensor  # [n] float64: the shared subspace's part, as a combination of members
    scale: float  # orientation over the norm of what remains


class Population:
    """Fingerprints of one crop size: their shared subspace and the null of their pairs.

    Members are keyed by tensor digest: a fingerprint compared with another is
    always left out of the background it is compared against.
    """

    def __init__(self, fingerprints: Sequence[Fingerprint], config: LineageConfig = LineageConfig()):
        if len(fingerprints) < MIN_POPULATION:
            raise LineageError(
                f"lineage needs a population of at least {MIN_POPULATION} fingerprints of one crop size, to "
                f"learn what they all share and what unrelated pairs look like; got {len(fingerprints)}. "
                "Compare within a larger set (e.g. pass --population DIR with more artifacts)"
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
        units = unit(torch.stack([fp.tensor for fp in fingerprints]))
        self.units = units.flatten(1)  # [n, D]
        # Spectra in single precision: correlations need 4 digits, and this halves time and memory.
        self.spectra = torch.fft.rfft2(units.to(torch.float32))  # [n, C, H, W/2+1]
        self.signs = torch.tensor([orientation(fp) for fp in fingerprints], dtype=torch.float64)
        self.gram = self.units @ self.units.T
        self._null: Null | None = None
        self._member_stats: dict[tuple[int, int], PairStats] = {}

    def index(self, fp: Fingerprint) -> int | None:
        key = tensor_digest(fp.tensor)
        return self.keys.index(key) if key in self.keys else None

    def background(self, exclude: Sequence[int]) -> tuple[list[int], torch.Tensor]:
        """Members other than ``exclude`` and orthonormal coefficients ``[k, m]`` of their shared subspace."""
        keep = [i for i in range(len(self.members)) if i not in set(exclude)]
        gram = self.gram[keep][:, keep]
        means = torch.stack([torch.ones(len(keep), dtype=torch.float64), self.signs[keep]])
        basis = _orthonormal_rows(means, gram)
        if self.config.components > 0:
            # What remains of each member once the means are projected out (as coefficients).
            rest = torch.eye(len(keep), dtype=torch.float64) - (basis @ gram).T @ basis
            values, vectors = torch.linalg.eigh(rest @ gram @ rest.T)
            top = vectors[:, values.argsort(descending=True)[: self.config.components]]
            basis = _orthonormal_rows(torch.cat([basis, top.T @ rest]), gram)
        return keep, basis

    def _side(self, fp: Fingerprint, keep: list[int], basis: torch.Tensor) -> Side:
        """One side of a pair, projected off the shared subspace spanned by ``basis`` over ``keep``."""
        i = self.index(fp)
        if i is not None:
            dots, spectrum = self.gram[i, keep], self.spectra[i]
        else:
            x = unit(fp.tensor)
            dots, spectrum = self.units[keep] @ x.flatten(), torch.fft.rfft2(x.to(torch.float32))
        along = basis @ dots  # coordinates on the orthonormal basis
        weights = torch.zeros(len(self.members), dtype=torch.float64)
        weights[keep] = basis.T @ along  # the same projection as a combination of members
        # x is unit and the basis orthonormal, so what remains has norm sqrt(1 - |along|^2).
        scale = orientation(fp) / math.sqrt(max(1.0 - float(along @ along), 1e-12))
        return Side(spectrum, weights, scale)

    def _projected(self, sides: Sequence[Side]) -> torch.Tensor:
        """The spectra of ``sides`` off their shared subspaces, oriented and rescaled to unit norm."""
        own = torch.stack([side.spectrum for side in sides])
        weights = torch.stack([side.weights for side in sides]).to(own.dtype)
        scale = torch.tensor([side.scale for side in sides], dtype=torch.float32)
        projected = own - torch.einsum("pn,nchw->pchw", weights, self.spectra)
        return projected * scale[:, None, None, None]

    def stats_many(self, pairs: Sequence[tuple[Fingerprint, Fingerprint]], chunk: int = 16) -> list[PairStats]:
        """Statistics of many pairs, a chunk at a time: few large tensor operations, not many small ones."""
        out: list[PairStats] = []
        for start in range(0, len(pairs), chunk):
            firsts: list[Side] = []
            seconds: list[Side] = []
            for a, b in pairs[start : start + chunk]:
                for fp in (a, b):
                    if fp.crop_size != self.size:
                        raise LineageError(
                            f"{fp.name} has crop size {fp.crop_size} but the population's is {self.size}; "
                            "fingerprints of different crop sizes cannot be compared"
                        )
                keep, basis = self.background([i for i in (self.index(a), self.index(b)) if i is not None])
                firsts.append(self._side(a, keep, basis))
                seconds.append(self._side(b, keep, basis))
            first, second = self._projected(firsts), self._projected(seconds)
            cross = (first.conj() * second).sum(dim=1)
            surfaces = torch.fft.irfft2(cross, s=(self.size, self.size))
            out += surface_stats(surfaces, self.config.max_shift)
        return out

    def stats(self, a: Fingerprint, b: Fingerprint) -> PairStats:
        return self.stats_many([(a, b)])[0]

    def member_stats(self, i: int, j: int) -> PairStats:
        """Statistics of members ``i`` and ``j`` (all member pairs are computed together, once)."""
        if i > j:
            return self.member_stats(j, i).swapped()
        if not self._member_stats:
            pairs = list(itertools.combinations(range(len(self.members)), 2))
            stats = self.stats_many([(self.members[p], self.members[q]) for p, q in pairs])
            self._member_stats = dict(zip(pairs, stats, strict=True))
        return self._member_stats[(i, j)]

    @property
    def null(self) -> Null:
        if self._null is None:
            pairs = itertools.combinations(range(len(self.members)), 2)
            reach = min(self.config.max_shift, (self.size - 1) // 2)
            self._null = Null.fit([self.member_stats(i, j) for i, j in pairs], (2 * reach + 1) ** 2)
        return self._null


# --- calibrated comparison ----------------------------------------------------------------------

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

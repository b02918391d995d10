"""A population of fingerprints: its shared subspace, and the statistics of any pair against it."""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from dif.artifact import Fingerprint, tensor_digest
from dif.lineage.null import MIN_POPULATION, LineageConfig, LineageError, Null
from dif.lineage.pairs import PairStats, orientation, surface_stats, unit


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

    def __init__(self, fingerprints: Sequence[Fingerprint], config: LineageConfig | None = None):
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
        self.config = config or LineageConfig()
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

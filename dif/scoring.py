"""Correlation scorer: residuals against every fingerprint at once.

For each image (its crops averaged coherently in the Fourier domain, since they
share the generator's pixel grid) and each generator we compute:

- ``correlation``: zero-shift Pearson correlation (what the reference uses);
- ``z``: that correlation divided by the RMS of the whole circular correlation
  surface. The RMS is the correlation's noise level for this very image, so
  ``z`` means the same thing for a 1-crop and a 4-crop image; it needs no
  inverse FFT (Parseval);
- ``z_bg``: the same correlation over a noise level read from the spectral
  *background* around each frequency (its 8 neighbouring bins) rather than from the
  frequency itself. A generator's trace concentrates on a lattice of frequencies (a
  VAE's 8-pixel grid); in ``z`` that trace inflates its own noise estimate, so a
  purely P-periodic fingerprint can never exceed ``z = P``. The background does not
  contain the trace, so ``z_bg`` keeps growing with the evidence. Computed only when
  a loaded fingerprint is decided on it;
- ``peak``, ``peak_z``, ``shift``, ``pce`` (only when a shift window is asked
  for): the best correlation within ``±max_shift`` pixels, raw and in z units,
  and its peak-to-correlation energy. It tolerates misaligned images at a price in
  clean accuracy (the maximum of many noisy values is biased upwards);
- ``grid_cosine`` (only for a lattice fingerprint with a window): that best
  correlation over the norm of the image's residual folded on the lattice, i.e. the
  cosine between the image's periodic pattern and the fingerprint's at the best shift.
  A strong periodic trace of *another* generator reaches a high ``peak`` at some
  phase, but not a high cosine (``dif.detection.Detection.gated``).

Each of these is computed the cheapest exact way for its fingerprint: an exactly periodic
(lattice) fingerprint on its lattice's few frequencies and the images' folds, a searched one
from the cross-spectra its search needs anyway, the rest by one matrix product for all. The
numbers are the same whichever way (``tests/core/test_scoring.py``); the cost of 13 fingerprints
against one is what ``bench/service_bench.py`` measures.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.nn import functional as F


def standardize(x: torch.Tensor) -> torch.Tensor:
    """Flatten each sample, remove its mean and scale to unit norm (for Pearson by dot product)."""
    flat = x.reshape(x.shape[0], -1).to(torch.float32)
    flat = flat - flat.mean(dim=1, keepdim=True)
    return flat / flat.norm(dim=1, keepdim=True).clamp_min(1e-12)


def pearson(residuals: torch.Tensor, fingerprints: torch.Tensor) -> torch.Tensor:
    """Pearson correlation of each residual with each fingerprint: ``[N, G]``."""
    return standardize(residuals) @ standardize(fingerprints).T


@dataclass(frozen=True)
class Scores:
    """Per (image, generator), all ``[N, G]`` (``shift`` is ``[N, G, 2]``)."""

    correlation: torch.Tensor
    z: torch.Tensor
    peak: torch.Tensor  # best correlation within the shift window (= correlation when none)
    peak_z: torch.Tensor
    shift: torch.Tensor
    pce: torch.Tensor
    z_bg: torch.Tensor  # NaN unless asked for
    peak_zbg: torch.Tensor  # the window's best correlation over the background level (= z_bg without a window)
    grid_cosine: torch.Tensor  # NaN unless the fingerprint is a lattice with a window

    def feature(self, name: str) -> torch.Tensor:
        return {"z": self.z, "peak": self.peak, "peak_z": self.peak_z, "correlation": self.correlation,
                "zbg": self.z_bg, "peak_zbg": self.peak_zbg, "grid_cosine": self.grid_cosine}[name]

    def columns(self) -> tuple[torch.Tensor, ...]:
        """Every field, in the constructor's order."""
        return (self.correlation, self.z, self.peak, self.peak_z, self.shift, self.pce, self.z_bg, self.peak_zbg,
                self.grid_cosine)

    def cpu(self) -> Scores:
        return Scores(*(t.cpu() for t in self.columns()))

    @staticmethod
    def cat(parts: list[Scores]) -> Scores:
        """Scores of consecutive image chunks as one batch's."""
        return Scores(*(torch.cat(column) for column in zip(*(p.columns() for p in parts), strict=True)))

    def pick(self, names: list[str]) -> torch.Tensor:
        """``[N, G]``: column g is statistic ``names[g]`` (each generator decided on its own one)."""
        if len(set(names)) == 1:
            return self.feature(names[0])
        return torch.stack([self.feature(name)[:, g] for g, name in enumerate(names)], dim=1)


def fold(x: torch.Tensor, period: int) -> torch.Tensor:
    """``[..., C, H, W]`` (H, W multiples of ``period``) -> the mean of its P x P cells, ``[..., C, P, P]``."""
    *lead, channels, height, width = x.shape
    return x.reshape(*lead, channels, height // period, period, width // period, period).mean(dim=(-4, -2))


def lattice_cell(x: torch.Tensor, period: int) -> torch.Tensor:
    """``[..., C, H, W]`` (H, W multiples of ``period``) -> the mean of its P x P cells less their
    separable part (a row plus a column profile), ``[..., C, P, P]``.

    What a deblocked P-periodic fingerprint can correlate with: a block codec's grid fills the
    separable part, which every fingerprint is projected off (``training.trainer.deblocked``).
    """
    return inseparable(fold(x, period))


def inseparable(cell: torch.Tensor) -> torch.Tensor:
    """``[..., P, P]`` cells less their separable part (a row plus a column profile)."""
    rows, cols = cell.mean(-1, keepdim=True), cell.mean(-2, keepdim=True)
    return cell - (rows + cols - cell.mean(dim=(-2, -1), keepdim=True))


def _half_spectrum_weights(width: int, device: torch.device) -> torch.Tensor:
    """Parseval weights for an rfft's last axis: inner columns stand for two conjugate bins."""
    weights = torch.full((width // 2 + 1,), 2.0, device=device)
    weights[0] = 1.0
    if width % 2 == 0:
        weights[-1] = 1.0
    return weights


def _neighbour_mean(planes: torch.Tensor) -> torch.Tensor:
    """``[K, H, W/2+1]`` half-plane spectra -> each bin's mean over its 8 neighbours, not the bin itself:
    the spectral background.

    Circular along the full frequency axis; mirrored at the half-plane's edges (a real
    image's spectrum is conjugate-symmetric, so the bins beyond them hold the same power).
    A 3x3 box sum by shifted slices, less the centre: a one-channel conv2d did the same sum
    ten times slower on a CPU and was 80 % of z_bg's scoring (25 of 30 ms per image).
    """
    padded = F.pad(planes[:, None], (1, 1, 0, 0), mode="reflect")[:, 0]
    padded = torch.cat([padded[:, -1:], padded, padded[:, :1]], dim=1)
    rows = padded[:, :-2] + padded[:, 1:-1] + padded[:, 2:]  # [K, H, W/2+3]
    box = rows[:, :, :-2] + rows[:, :, 1:-1] + rows[:, :, 2:]
    return (box - planes) / 8.0


# Images scored at a time on a CPU. A batch's per-image spectra, channel outer products and
# shift-search cross-spectra must stay in cache: for 13 generators, one thread, ms per image at
# 2 / 16 images (measured when the search still read whole surfaces): z 3.8 / 4.7, z_bg 5.8 /
# 18.2, the shift search 4.9 / 13.7 (16 images' cross-spectra alone are 55 MB). A GPU wants the
# whole batch.
CPU_SCORE_CHUNK = 2


@dataclass(frozen=True)
class _WindowBasis:
    """The inverse DFT for a window of offsets, split so that its big product is real.

    ``rows`` ``[2R+1, H]``: cos(2 pi r k / H) for r = 0..R, then sin for r = 1..R (R the largest
    |dy|). ``real`` / ``imag`` ``[2(W/2+1), Sx]``: the column transform (Parseval weights, 1/HW
    included) laid out against a spectrum viewed as interleaved reals, giving the real and the
    imaginary part of the product. Per window row: ``magnitude`` |dy|, ``sine`` the row of sin |dy|
    among the sines (any row for dy = 0, which ``sign`` = 0 cancels) and ``sign`` sign(dy).
    """

    rows: torch.Tensor
    real: torch.Tensor
    imag: torch.Tensor
    magnitude: torch.Tensor
    sine: torch.Tensor
    sign: torch.Tensor  # [Sy, 1]
    reach: int

    @staticmethod
    def build(dy: torch.Tensor, dx: torch.Tensor, height: int, width: int, weights: torch.Tensor) -> _WindowBasis:
        reach = int(dy.abs().max())
        angles = 2 * torch.pi * torch.arange(reach + 1, device=dy.device).double()[:, None] \
            * torch.arange(height, device=dy.device) / height
        rows = torch.cat([angles.cos(), angles[1:].sin()])
        cols = torch.arange(width // 2 + 1, device=dx.device).double()[:, None]
        # Half-plane columns stand for a conjugate pair (the real part of the sum doubles them).
        cols = weights[:, None].double() * torch.exp(2j * torch.pi * cols * dx / width) / (height * width)
        real = torch.stack([cols.real, -cols.imag], dim=1).flatten(0, 1)
        imag = torch.stack([cols.imag, cols.real], dim=1).flatten(0, 1)
        return _WindowBasis(rows.float(), real.float(), imag.float(), dy.abs(), (dy.abs() - 1).clamp_min(0),
                            dy.sign().float()[:, None], reach)


@dataclass(frozen=True)
class _Search:
    """One shift search of a scorer, all fixed at construction: its fingerprints (``columns``),
    ``(period, cell spectra)`` when it runs on folds, else the inverse DFT of its window
    (``basis``), the window's offsets and where their zero is, and each fingerprint's window."""

    columns: torch.Tensor
    lattice: tuple[int, torch.Tensor] | None
    basis: _WindowBasis | None
    dy: torch.Tensor
    dx: torch.Tensor
    max_shift: torch.Tensor
    zero: tuple[int, int]  # a Python pair: reading it off dy, dx per batch would wait on a GPU


class CorrelationScorer:
    """Standardized fingerprints and their spectra, kept on one device for repeated scoring."""

    def __init__(self, fingerprints: torch.Tensor, max_shift: torch.Tensor | int = 0, pce_exclude: int = 2,
                 background: torch.Tensor | bool = False, lattice: torch.Tensor | int = 0):
        if fingerprints.ndim != 4:
            raise ValueError("fingerprints must be [G, C, H, W]")
        self.shape = tuple(fingerprints.shape[1:])
        count = fingerprints.shape[0]
        self.max_shift = torch.as_tensor(max_shift, device=fingerprints.device).expand(count).clone()
        self.pce_exclude = pce_exclude
        self.matrix = standardize(fingerprints)  # [G, D]
        self.spectra = torch.fft.rfft2(self.matrix.reshape(-1, *self.shape)).conj()
        self.weights = _half_spectrum_weights(self.shape[-1], fingerprints.device)
        # The same per (row, column, real/imaginary part) of a spectrum viewed as reals: one product.
        self._flat_weights = self.weights.repeat_interleave(2).repeat(self.shape[-2])
        self._dense_pairs: torch.Tensor | None = None  # built on first use, reused for every batch
        self._pair_index = torch.triu_indices(self.shape[0], self.shape[0], device=fingerprints.device)  # c <= c'
        # Fingerprints decided on z_bg: only they need the spectral background.
        self.background = torch.as_tensor(background).expand(count).cpu().bool()
        periods = torch.as_tensor(lattice).expand(count).cpu()
        searched = self.max_shift.cpu() > 0
        # An exactly P-periodic fingerprint (every lattice estimator's is) lives on P x (P/2+1)
        # frequencies and meets an image only through the image's fold on the lattice, so both its
        # noise level and its whole shift search take a few hundred values per image instead of a
        # full-size spectrum: 13 lattice fingerprints cost ~1.0x one that way, against 1.3-1.7x
        # (bench.service_bench). A fingerprint that only claims a lattice is scored in full.
        periodic = torch.tensor([bool(p) and self._periodic(g, int(p)) for g, p in enumerate(periods.tolist())],
                                dtype=torch.bool)
        # Fingerprints whose grid_cosine is computed (a lattice with a window), by lattice period:
        # fixed per scorer, so no batch recomputes it.
        self.grid_columns = {int(p): torch.nonzero((periods == p) & searched).flatten().to(fingerprints.device)
                             for p in periods[searched].unique().tolist() if p > 0}
        self._plan_searches(periods, periodic, searched)
        self._plan_noise_levels(periods, periodic, searched)

    def _plan_searches(self, periods: torch.Tensor, periodic: torch.Tensor, searched: torch.Tensor) -> None:
        """``searches`` (``_Search``): one per lattice period run on folds, and one full surface
        window that the aperiodic fingerprints search together."""
        device = self.matrix.device
        self.fold_search: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}  # period -> (columns, cell spectra)
        for period in self.grid_columns:
            columns = torch.nonzero((periods == period) & searched & periodic).flatten().to(device)
            if columns.numel():
                cells = self.matrix[columns].reshape(-1, *self.shape)[..., :period, :period]
                self.fold_search[period] = (columns, torch.fft.rfft2(cells).conj())
        self.surface_columns = torch.nonzero(searched & ~periodic).flatten().to(device)
        self.surface_spectra = self.spectra[self.surface_columns]  # a gather copies: once, not per batch
        groups: list[tuple[torch.Tensor, tuple[int, torch.Tensor] | None]] = (
            [(self.surface_columns, None)] if self.surface_columns.numel() else [])
        groups += [(columns, (period, spectra)) for period, (columns, spectra) in self.fold_search.items()]
        self.searches: list[_Search] = []
        for columns, lattice in groups:
            dy, dx = self._offsets(int(self.max_shift[columns].max()) + self.pce_exclude)
            height, width = self.shape[-2:]
            basis = _WindowBasis.build(dy, dx, height, width, self.weights) if lattice is None else None
            self.searches.append(_Search(columns, lattice, basis, dy, dx, self.max_shift[columns],
                                         (-int(dy[0]), -int(dx[0]))))
        # A search's window holds the zero-shift correlation too: only the other fingerprints need
        # the residuals' product with the fingerprints (a memory-bound read of them all).
        direct = torch.ones(self.count, dtype=torch.bool, device=device)
        for columns, _ in groups:
            direct[columns] = False
        self.direct_columns = torch.nonzero(direct).flatten()
        self.direct_matrix = self.matrix if bool(direct.all()) else self.matrix[self.direct_columns]  # no copy

    def _plan_noise_levels(self, periods: torch.Tensor, periodic: torch.Tensor, searched: torch.Tensor) -> None:
        """Which way each fingerprint's z (and z_bg) level is computed (``_energy``)."""
        device = self.matrix.device
        self.lattice_bins = {int(p): self._lattice_bins(torch.nonzero(periodic & (periods == p)).flatten(), int(p))
                             for p in periods[periodic].unique().tolist()}
        # A searched aperiodic fingerprint's noise level is its cross-spectra's mean square
        # (Parseval), which its search computes anyway: 0.6 ms per image for 13 of them, against
        # 2.5 ms in the outer-product GEMM. z_bg's background cannot be read off them.
        by_cross = searched & ~periodic & ~self.background
        self.cross_energy = (torch.nonzero(by_cross[searched & ~periodic]).flatten().to(device),
                             torch.nonzero(by_cross).flatten().to(device))  # (positions in the search, columns)
        self.dense_columns = torch.nonzero(~periodic & ~by_cross).flatten().to(device)
        self.dense_background = bool(self.background[~periodic & ~by_cross].any())
        self._unasked = (~self.background).to(device)  # whose z_bg is NaN

    def _periodic(self, column: int, period: int) -> bool:
        """Fingerprint ``column`` repeats every ``period`` pixels (to float rounding)."""
        pattern = self.matrix[column].reshape(self.shape)
        if self.shape[-2] % period or self.shape[-1] % period:
            return False
        tolerance = 1e-6 * float(pattern.abs().max())
        return all(bool(((pattern - pattern.roll(period, dims=axis)).abs() <= tolerance).all()) for axis in (-2, -1))

    def _lattice_bins(self, columns: torch.Tensor, period: int
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(columns, rows, cols, the fingerprints' weighted channel outer products there) for the
        P x (P/2+1) half-plane frequencies where P-periodic fingerprints have all their energy.
        ``rows`` and ``cols`` index each such bin's 3 x 3 neighbourhood (``[P, 3]``, ``[P/2+1, 3]``):
        circular along the full axis, mirrored at the half plane's edges, as in ``_neighbour_mean``."""
        height, width = self.shape[-2:]
        device = self.matrix.device
        steps = torch.tensor([-1, 0, 1], device=device)
        rows = (torch.arange(period, device=device)[:, None] * (height // period) + steps).remainder(height)
        last = width // 2
        cols = (torch.arange(period // 2 + 1, device=device)[:, None] * (width // period) + steps).abs()
        cols = torch.where(cols > last, 2 * last - cols, cols)
        columns = columns.to(device)
        spectra = self.spectra.conj()[columns][:, :, rows[:, 1]][:, :, :, cols[:, 1]]
        return columns, rows, cols, self._gen_pairs(spectra, self.weights[cols[:, 1]])

    @property
    def count(self) -> int:
        return self.matrix.shape[0]

    def crop_mean(self, residuals: torch.Tensor, groups: torch.Tensor, count: int) -> torch.Tensor:
        """``[N, D]``: each image's crops standardized and averaged, so they add coherently."""
        unit = standardize(residuals)
        sums = torch.zeros((count, unit.shape[1]), dtype=unit.dtype, device=unit.device).index_add_(0, groups, unit)
        return sums / torch.bincount(groups, minlength=count).clamp_min(1).to(unit.dtype)[:, None]

    def cross_spectra(self, image_spec: torch.Tensor, spectra: torch.Tensor | None = None) -> torch.Tensor:
        """``[N, G, H, W/2+1]`` cross-power spectra with ``spectra`` (default: every fingerprint's), for
        the shift search only: it grows with N x G.

        Summed channel by channel, in place: einsum made it a batch of one tiny product per
        frequency bin, 1.3-1.5x slower on a CPU (2.8 vs 3.7 ms for one image and 13 generators),
        and a product then an add wrote a temporary as large as the result (addcmul: 1.4 -> 0.6 ms).
        """
        spectra = self.spectra if spectra is None else spectra
        out = image_spec[:, None, 0] * spectra[None, :, 0]
        for c in range(1, image_spec.shape[1]):
            out.addcmul_(image_spec[:, None, c], spectra[None, :, c])
        return out

    def _energy(self, image_spec: torch.Tensor, cross: torch.Tensor | None
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Mean squared correlation over all shifts, ``[N, G]``, and the same over the spectral
        background (``z_bg``'s level; None when no fingerprint is decided on it, NaN where none asked).

        |sum_c R_c conj(F_c)|^2 expands into sum_{c,c'} (R_c conj R_c') conj(F_c conj F_c'):
        an inner product between a per-image and a per-generator channel-outer-product
        spectrum (``_pairs``). So the cost is one GEMM against all generators instead of a
        cross-spectrum per (image, generator) pair; for periodic fingerprints, one over their
        lattice's bins only; for searched ones, their search's ``cross`` spectra.
        """
        n, scale = image_spec.shape[0], float(self.shape[-2] * self.shape[-1]) ** 2
        energy = image_spec.real.new_empty((n, self.count))
        ring = image_spec.real.new_full((n, self.count), float("nan")) if bool(self.background.any()) else None
        if self.dense_columns.numel():
            if self._dense_pairs is None:
                self._dense_pairs = self._gen_pairs(self.spectra.conj()[self.dense_columns], self.weights)
            outer = self._pairs(image_spec).flatten(1)
            if ring is None or not self.dense_background:
                energy[:, self.dense_columns] = (outer @ self._dense_pairs.T) / scale
            else:
                # The background variant (z_bg) shares the image's outer product and rides in the same GEMM.
                near = _neighbour_mean(outer.reshape(-1, *image_spec.shape[-2:])).reshape(outer.shape)
                both = (torch.cat([outer, near]) @ self._dense_pairs.T) / scale
                energy[:, self.dense_columns], ring[:, self.dense_columns] = both[:n], both[n:]
        for columns, rows, cols, gen_pairs in self.lattice_bins.values():
            around = image_spec[:, :, rows.flatten()][:, :, :, cols.flatten()]  # [N, C, 3P, 3Q]
            around = around.reshape(*around.shape[:2], rows.shape[0], 3, cols.shape[0], 3)
            outer = self._pairs(around)  # [N, C^2, P, 3, Q, 3]
            centre = outer[..., 1, :, 1]
            energy[:, columns] = centre.flatten(1) @ gen_pairs.T / scale
            if ring is not None:
                near = (outer.sum(dim=(-3, -1)) - centre) / 8.0
                ring[:, columns] = near.flatten(1) @ gen_pairs.T / scale
        positions, columns = self.cross_energy
        if columns.numel():
            assert cross is not None
            every = positions.numel() == cross.shape[1]  # then no gather: it copies the spectra
            energy[:, columns] = self._mean_square(cross if every else cross[:, positions])
        if ring is not None:  # a group's GEMM may have computed it for its other members too
            ring = ring.masked_fill(self._unasked, float("nan"))
        return energy, ring

    def _pairs(self, spec: torch.Tensor) -> torch.Tensor:
        """``[K, C, ...]`` complex spectra -> ``[K, C^2, ...]`` real: the distinct parts of their
        channel outer product ``R_c conj(R_c')``. The product is Hermitian in (c, c'), so c <= c'
        holds all of it: every real part, and the imaginary parts off the diagonal (zero on it).
        Half the values of the full product, and the energy GEMM that reads them is memory-bound."""
        i, j = self._pair_index
        product = spec[:, i] * spec[:, j].conj()
        return torch.cat([product.real, product.imag[:, i != j]], dim=1)

    def _gen_pairs(self, spec: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """The fingerprints' side of the energy's inner product, ``[G, C^2 x bins]``: ``_pairs``
        with each off-diagonal pair counted for both of its orders, and the half plane's Parseval
        ``weights``."""
        i, j = self._pair_index
        twice = torch.where(i == j, 1.0, 2.0)
        factor = torch.cat([twice, twice[i != j]]).to(weights.dtype)
        pairs = self._pairs(spec)
        return (pairs * factor.reshape(-1, *[1] * (pairs.ndim - 2)) * weights).flatten(1)

    def score(self, residuals: torch.Tensor, groups: torch.Tensor, count: int, with_z: bool = True) -> Scores:
        """All statistics for ``count`` images whose crops are ``residuals`` (image index in ``groups``).

        ``with_z=False`` skips the noise-level estimates (``z``, ``peak_z`` and ``z_bg`` are then NaN).
        On a CPU, ``CPU_SCORE_CHUNK`` images at a time (why: there).
        """
        step = CPU_SCORE_CHUNK if residuals.device.type == "cpu" else count
        if count <= step:
            return self._score(self.crop_mean(residuals, groups, count), with_z)
        # Each step standardizes only its own images' crops: all of a big batch's at once
        # overflow the cache (one thread, 16 images of 4 crops: 58 ms against 10 ms image by image).
        if not bool((groups[1:] >= groups[:-1]).all()):
            groups, order = groups.sort(stable=True)
            residuals = residuals[order]
        bounds = torch.searchsorted(groups, torch.arange(0, count + step, step, device=groups.device)).tolist()
        return Scores.cat([self._score(self.crop_mean(residuals[bounds[k] : bounds[k + 1]],
                                                      groups[bounds[k] : bounds[k + 1]] - start,
                                                      min(step, count - start)), with_z)
                           for k, start in enumerate(range(0, count, step))])

    def _score(self, mean_unit: torch.Tensor, with_z: bool) -> Scores:
        """``score`` for images already reduced to their crop-averaged unit residuals ``[N, D]``."""
        n = mean_unit.shape[0]
        correlation = mean_unit.new_empty((n, self.count))
        if self.direct_columns.numel():
            correlation[:, self.direct_columns] = mean_unit @ self.direct_matrix.T
        images = mean_unit.reshape(-1, *self.shape)
        full_search = self.surface_columns.numel() > 0
        image_spec = torch.fft.rfft2(images) if with_z or full_search else None
        cross = self.cross_spectra(image_spec, self.surface_spectra) if image_spec is not None and full_search else None
        energy, background = self._energy(image_spec, cross) if with_z and image_spec is not None else (None, None)
        peak = correlation.clone()
        shift = torch.zeros((n, self.count, 2), dtype=torch.long, device=mean_unit.device)
        pce = torch.zeros_like(correlation)
        folds = {period: fold(images, period) for period in self.grid_columns}
        for search in self.searches:
            columns, dy, dx = search.columns, search.dy, search.dx
            if search.basis is not None:
                assert cross is not None
                window = self._surface_window(cross, search.basis)
                total = energy[:, columns] if energy is not None else self._mean_square(cross)
            else:
                # One period of a periodic surface: every offset is read modulo the period.
                assert search.lattice is not None
                period, spectra = search.lattice
                surf = self._folded_surface(folds[period], period, spectra)
                window = surf[:, :, dy.remainder(period)][:, :, :, dx.remainder(period)]
                total = energy[:, columns] if energy is not None else surf.square().mean(dim=(2, 3))
            correlation[:, columns] = window[:, :, search.zero[0], search.zero[1]]
            peak[:, columns], shift[:, columns], pce[:, columns] = self._peaks(window, dy, dx, search.max_shift, total)
        nan = torch.full_like(correlation, float("nan"))
        rms = energy.clamp_min(1e-24).sqrt() if energy is not None else nan
        # A shift only turns each frequency's phase, so the background level holds for every shift.
        bg_rms = background.clamp_min(1e-24).sqrt() if background is not None else nan
        z = correlation / rms
        return Scores(correlation, z, peak, peak / rms, shift, pce, correlation / bg_rms, peak / bg_rms,
                      self._grid_cosine(folds, peak))

    def _folded_surface(self, folded: torch.Tensor, period: int, spectra: torch.Tensor) -> torch.Tensor:
        """``[N, g, P, P]``: one period of the correlation surface of images folded on the lattice
        (``folded``, ``[N, C, P, P]``) with P-periodic fingerprints (``spectra``: their cells' conjugate
        spectra). Every cell adds the same sum, hence the factor."""
        image_spec = torch.fft.rfft2(folded)
        cross = (image_spec[:, None] * spectra[None]).sum(dim=2)
        return torch.fft.irfft2(cross, s=(period, period)) * (self.shape[-2] * self.shape[-1] / period**2)

    def _grid_cosine(self, folds: dict[int, torch.Tensor], peak: torch.Tensor) -> torch.Tensor:
        """``[N, G]``: the window's best correlation over the norm of the image's residual folded on
        the fingerprint's lattice (NaN elsewhere). A unit-norm P-periodic fingerprint correlates with
        an image only through that folded part, so the quotient is a cosine in [-1, 1]."""
        cosine = torch.full_like(peak, float("nan"))
        for period, columns in self.grid_columns.items():
            cells = self.shape[-2] * self.shape[-1] / period**2
            norm = inseparable(folds[period]).flatten(1).norm(dim=1) * cells**0.5
            cosine[:, columns] = peak[:, columns] / norm.clamp_min(1e-12)[:, None]
        return cosine

    def _offsets(self, reach: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Signed offsets around zero shift, each surface cell at most once (a window wider than the
        surface is the whole surface)."""
        h, w = self.shape[-2:]
        device = self.matrix.device
        return (torch.arange(-min(reach, (h - 1) // 2), min(reach, h // 2) + 1, device=device),
                torch.arange(-min(reach, (w - 1) // 2), min(reach, w // 2) + 1, device=device))

    @staticmethod
    def _surface_window(cross: torch.Tensor, basis: _WindowBasis) -> torch.Tensor:
        """``[N, g, Sy, Sx]``: the correlation surfaces at the window's offsets only, from the
        cross-power spectra ``[N, g, H, W/2+1]``, as matrix products with the inverse DFT's rows for
        those offsets. The search reads a window of ~21 x 21 of the 256 x 256 values, and this
        costs an eighth of a full inverse FFT on a CPU (13 generators: 1.0 vs 8.4 ms per image).

        The product over the frequency rows dominates. Its rows for +d and -d are conjugate
        (cos +/- i sin), so it is taken as one *real* product with the cosines and sines of |d|,
        half a complex product's work (13 generators: 1.0 -> 0.7 ms per image); the sign comes
        back in the small product over columns (``_WindowBasis``).
        """
        n, g, h = cross.shape[:3]
        both = basis.rows @ torch.view_as_real(cross).reshape(n, g, h, -1)  # [N, g, 2R+1, 2(W/2+1)]
        cosine, sine = both[:, :, : basis.reach + 1] @ basis.real, both[:, :, basis.reach + 1 :] @ basis.imag
        # Row d: Re(C_|d| cols) - sign(d) Im(S_|d| cols).
        return cosine[:, :, basis.magnitude] - basis.sign * sine[:, :, basis.sine]

    def _mean_square(self, cross: torch.Tensor) -> torch.Tensor:
        """Each correlation surface's mean square from its spectrum (Parseval), as one product with
        the weights (squaring real and imaginary parts apart wrote three temporaries: 0.49 vs 0.17 ms
        for 13 surfaces)."""
        h, w = self.shape[-2:]
        flat = torch.view_as_real(cross).reshape(*cross.shape[:2], -1)
        return (flat * flat) @ self._flat_weights / (h * w) ** 2

    def _peaks(self, window: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor, max_shift: torch.Tensor,
               total: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Best correlation within each generator's window, its signed shift and its PCE.

        Only the window (and the PCE's exclusion ring around it) is ever computed: the search's cost
        is per image *and* generator (docs/service.md). ``total``: each surface's mean square, which
        the caller has by Parseval (``_energy``), so the PCE's far-field energy is the total less
        the few values near the peak.
        """
        n, g = window.shape[:2]
        h, w = self.shape[-2:]
        inside = ((dy.abs()[None, :, None] <= max_shift[:, None, None])
                  & (dx.abs()[None, None, :] <= max_shift[:, None, None]))  # [g, Sy, Sx]
        peak, index = window.masked_fill(~inside, float("-inf")).reshape(n, g, -1).max(dim=2)
        iy, ix = index // dx.numel(), index % dx.numel()
        shift = torch.stack([dy[iy], dx[ix]], dim=-1)
        return peak, shift, self._pce(window, iy, ix, peak, total * (h * w), h * w)

    def _pce(self, window: torch.Tensor, iy: torch.Tensor, ix: torch.Tensor, peak: torch.Tensor,
             total: torch.Tensor, cells: int) -> torch.Tensor:
        """Signed peak² over the mean energy of the surface away from the peak (beyond ``pce_exclude``
        in either axis): ``total``, the whole surface's sum of squares, less the square around it."""
        rows = torch.arange(window.shape[-2], device=window.device)
        cols = torch.arange(window.shape[-1], device=window.device)
        near = (((rows - iy[..., None]).abs() <= self.pce_exclude)[..., :, None]
                & ((cols - ix[..., None]).abs() <= self.pce_exclude)[..., None, :])  # [n, g, Sy, Sx]
        near_energy = (window.square() * near).sum(dim=(2, 3))
        far = (total - near_energy).clamp_min(0.0) / (cells - near.sum(dim=(2, 3))).clamp_min(1)
        return torch.sign(peak) * peak.square() / far.clamp_min(1e-20)

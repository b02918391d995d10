"""Structured fingerprint estimators (issue 13): the lattice projection, the background-normalised z_bg,
and the choice between estimators by inner cross-validation."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch

from dif.decision import OperatingPoint
from dif.detection import Detection
from dif.detector import Detector, Prepared
from dif.extractors import create
from dif.scoring import CorrelationScorer
from testkit.synthetic import ToyGenerator, photo_crops, write_dataset
from training.build import train_artifact
from training.pipeline import FitConfig
from training.trainer import deblocked, lattice


def test_lattice_keeps_a_periodic_pattern_and_drops_the_rest() -> None:
    gen = torch.Generator().manual_seed(0)
    cell = torch.randn((3, 8, 8), generator=gen)
    periodic = cell.repeat(1, 32, 32)
    assert torch.allclose(lattice(periodic, 8), periodic)
    assert torch.allclose(lattice(periodic, 16), periodic)  # period 8 is also 16-periodic
    noise = torch.randn((3, 256, 256), generator=gen)
    folded = lattice(noise, 8)
    assert torch.allclose(folded, folded.roll(8, dims=1)) and torch.allclose(folded, folded.roll(8, dims=2))
    assert folded.std() < 0.1 * noise.std()  # 1,024 cells averaged: the aperiodic part is gone
    with pytest.raises(ValueError, match="divisible"):
        lattice(torch.zeros(3, 250, 250), 8)


def block_grid(phase: tuple[int, int], size: int = 256) -> torch.Tensor:
    """What a JPEG block grid leaves in a residual, on average: steps along block rows and columns."""
    grid = torch.zeros(3, size, size)
    grid[:, phase[0] :: 8, :] += 1.0
    grid[:, :, phase[1] :: 8] -= 0.7
    return grid


def test_deblocking_makes_a_fingerprint_deaf_to_block_grids_at_every_phase() -> None:
    gen = torch.Generator().manual_seed(4)
    fingerprint = deblocked(torch.randn((3, 256, 256), generator=gen) + 0.5 * block_grid((0, 0)), 8)
    for phase in [(0, 0), (1, 3), (5, 7), (4, 4)]:
        grid = block_grid(phase)
        # The fingerprint ignores the grid wherever a crop puts it ...
        assert abs(float((fingerprint * grid).sum())) < 1e-3 * float(grid.norm() * fingerprint.norm())
        # ... and a grid is all it removes: it is a projection, and a periodic checkerboard survives it.
        assert float(deblocked(grid, 8).abs().max()) < 1e-5
    assert torch.allclose(deblocked(fingerprint, 8), fingerprint, atol=1e-6)
    checker = torch.tensor([[1.0, -1.0], [-1.0, 1.0]]).repeat(3, 128, 128)
    assert torch.allclose(deblocked(checker, 8), checker, atol=1e-6)
    with pytest.raises(ValueError, match="divisible"):
        deblocked(torch.zeros(3, 250, 250), 8)


def test_z_bg_grows_past_the_period_where_z_is_capped() -> None:
    """For a P-periodic fingerprint z <= P (its noise level contains the trace); z_bg has no such cap."""
    gen = torch.Generator().manual_seed(1)
    fingerprint = torch.randn((3, 4, 4), generator=gen).repeat(1, 64, 64)  # period 4
    noise = torch.randn((6, 3, 256, 256), generator=gen)
    strong = noise + 1.0 * fingerprint
    scorer = CorrelationScorer(fingerprint[None], background=True)
    scores = scorer.score(strong, torch.arange(6), 6)
    assert bool((scores.z[:, 0] <= 4.0 + 1e-4).all())
    assert bool((scores.z_bg[:, 0] > 20).all())
    null = scorer.score(noise, torch.arange(6), 6)  # no trace: both stay in N(0, 1) territory
    assert float(null.z_bg.abs().max()) < 4 and float(null.z.abs().max()) < 4
    plain = CorrelationScorer(fingerprint[None]).score(strong, torch.arange(6), 6)
    # Only computed when asked, and z the same either way (to rounding: the two ride in GEMMs of other shapes).
    assert bool(plain.z_bg.isnan().all()) and torch.allclose(plain.z, scores.z, rtol=1e-5, atol=0.0)


def test_the_shift_backstop_finds_a_trace_moved_off_the_grid() -> None:
    """A periodic trace in the wrong phase: z_bg at zero shift sees nothing, the window's best does."""
    gen = torch.Generator().manual_seed(2)
    fingerprint = torch.randn((3, 8, 8), generator=gen).repeat(1, 32, 32)
    noise = torch.randn((6, 3, 256, 256), generator=gen)
    moved = noise + 0.5 * fingerprint.roll((3, 2), dims=(1, 2))
    scores = CorrelationScorer(fingerprint[None], max_shift=4, background=True).score(moved, torch.arange(6), 6)
    # At zero shift only the cell's chance resemblance to its rolled self remains.
    assert bool((scores.peak_zbg[:, 0] > 5 * scores.z_bg[:, 0].abs()).all()), (scores.peak_zbg, scores.z_bg)
    assert scores.shift[:, 0].abs().tolist() == [[3, 2]] * 6
    null = CorrelationScorer(fingerprint[None], max_shift=4, background=True).score(noise, torch.arange(6), 6)
    assert float(null.peak_zbg.max()) < 5  # the best of 81 noise shifts


@pytest.fixture(scope="module")
def photos(ltim: Path) -> list[torch.Tensor]:
    crops = photo_crops(sorted(ltim.glob("*/0_real/*.png")), size=256)
    assert len(crops) >= 40
    return crops


class AperiodicGenerator:
    """Adds one fixed, non-periodic pattern to every image (a GAN-like spatial fingerprint)."""

    def __init__(self, seed: int, strength: float = 0.03):
        self.pattern = torch.randn((3, 256, 256), generator=torch.Generator().manual_seed(seed)) * strength

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        return (image + self.pattern).clamp(0, 1)


@pytest.mark.parametrize("kind", ["periodic", "aperiodic"])
def test_estimator_is_chosen_by_inner_cross_validation(kind: str, photos: list[torch.Tensor],
                                                       tmp_path: Path) -> None:
    """8 + 8 training images; held-out fakes of the same generator and unseen photos decide.

    A 2-periodic generator (undetectable with z: its z cannot exceed 2) must be caught at >= 95 %
    TPR at 1 % FPR; a generator with a fixed aperiodic pattern must keep an estimator that
    does not throw its pattern away (no lattice), and be caught too.
    """
    make = ToyGenerator(seed=1, stride=2) if kind == "periodic" else AperiodicGenerator(seed=3)
    train = write_dataset(tmp_path / "train", photos[:8], photos[8:16], make)
    test_fakes = [make(im) for im in photos[16:28]]
    unseen = photos[28:]
    fp = train_artifact(train, "toy", FitConfig(), create("signlap@1"), torch.device("cpu"), progress=False)
    chosen = fp.metadata["estimator"]["name"]
    assert set(fp.metadata["estimator"]["candidates"]) == {"mean/z", "mean/zbg", "lattice8/zbg", "lattice16/zbg"}
    candidates = fp.metadata["estimator"]["candidates"]
    if kind == "periodic":
        # z of a 2-periodic trace is at most 2: the plain estimator misses it, z_bg does not.
        assert candidates["mean/z"]["tpr"] == 0.0 and chosen.endswith("/zbg"), fp.metadata["estimator"]
    else:
        # The lattice would average the aperiodic pattern away: it must not win.
        assert chosen.startswith("mean"), fp.metadata["estimator"]
        assert candidates["lattice8/zbg"]["median_fake"] < candidates[chosen]["median_fake"]
    detector = Detector([fp], create("signlap@1"), "cpu")
    point = OperatingPoint(0.01)
    fakes = detector.predict([detector.prepare(im) for im in test_fakes], point).images
    reals = detector.predict([detector.prepare(im) for im in unseen], point).images
    assert sum(v.fake for v in fakes) / len(fakes) >= 0.95, [v.p_value for v in fakes]
    assert sum(v.fake for v in reals) <= 1, [v.p_value for v in reals]

    # Moved off the generator's pixel grid (a crop at an odd offset): still caught, and the photos
    # moved the same way stay real. An aperiodic pattern moved by a few pixels is invisible at
    # zero shift, so there the shift-search backstop is the whole catch.
    def moved(images: list[torch.Tensor]) -> list[Prepared]:
        return [detector.prepare(torch.roll(im, (3, 5), dims=(1, 2))) for im in images]

    shifted = detector.predict(moved(test_fakes), point).images
    assert sum(v.fake for v in shifted) / len(shifted) >= 0.9, [v.p_value for v in shifted]
    assert sum(v.fake for v in detector.predict(moved(unseen), point).images) <= 1
    if kind == "aperiodic":
        assert fp.detection.backstop, fp.detection
        blind = Detector([replace(fp, detection=replace(fp.detection, backstop_window=0))], create("signlap@1"), "cpu")
        missed = blind.predict(moved(test_fakes), point).images
        assert sum(v.fake for v in missed) / len(missed) <= 0.5, [v.p_value for v in missed]



def test_grid_cosine_tells_the_fingerprint_s_pattern_from_another_periodic_one() -> None:
    gen = torch.Generator().manual_seed(5)
    cell = deblocked(torch.randn((3, 8, 8), generator=gen), 8)
    other = deblocked(torch.randn((3, 8, 8), generator=gen), 8)
    fingerprint = cell.repeat(1, 32, 32)
    noise = torch.randn((4, 3, 256, 256), generator=gen)
    own = noise + 0.3 * fingerprint.roll((3, 2), dims=(1, 2))
    foreign = noise + 0.3 * other.repeat(1, 32, 32)
    scorer = CorrelationScorer(fingerprint[None], max_shift=4, background=True, lattice=8)
    mine, theirs = (scorer.score(x, torch.arange(4), 4) for x in (own, foreign))
    # Both traces are far stronger than noise at their best phase; only one has the fingerprint's shape.
    assert bool((theirs.peak_zbg[:, 0] > 5).all()), theirs.peak_zbg
    assert bool((mine.grid_cosine[:, 0] > 0.9).all()), mine.grid_cosine
    assert bool((theirs.grid_cosine[:, 0] < 0.6).all()), theirs.grid_cosine
    plain = CorrelationScorer(fingerprint[None], max_shift=4, background=True).score(own, torch.arange(4), 4)
    assert bool(plain.grid_cosine.isnan().all())  # not declared a lattice: no cosine


def test_a_lattice_catches_its_fakes_off_the_grid_and_not_another_generator_s(photos: list[torch.Tensor],
                                                                             tmp_path: Path) -> None:
    """A lattice fingerprint is gated by the grid cosine: its own fakes moved off the grid are
    caught by its phase search, an unrelated periodic generator's fakes are not, though its trace
    matches at some phase."""
    make, unrelated = ToyGenerator(seed=1, stride=8), ToyGenerator(seed=2, stride=4)
    train = write_dataset(tmp_path / "train", photos[:8], photos[8:16], make)
    fp = train_artifact(train, "toy", FitConfig(estimator="lattice8/zbg"), create("signlap@1"), torch.device("cpu"),
                        progress=False)
    assert fp.detection.gated and 0.0 < fp.detection.min_cosine < 1.0, fp.detection
    assert fp.detection.floored and 0.0 < fp.detection.floor_cosine <= fp.detection.min_cosine, fp.detection
    point = OperatingPoint(0.01)

    def caught(detection: Detection, images: list[torch.Tensor], move: tuple[int, int]) -> float:
        detector = Detector([replace(fp, detection=detection)], create("signlap@1"), "cpu")
        moved = [detector.prepare(torch.roll(im, move, dims=(1, 2))) for im in images]
        return sum(v.fake for v in detector.predict(moved, point).images) / len(images)

    own = [make(im) for im in photos[16:28]]
    theirs = [unrelated(im) for im in photos[16:28]]
    # Moved by 2, 6 px: this toy's trace is so strong that zero shift alone catches it at most
    # other moves, so this one shows what the search adds.
    assert caught(fp.detection, own, (2, 6)) >= 0.9
    assert caught(replace(fp.detection, backstop_window=0, min_cosine=0.0), own, (2, 6)) <= 0.5
    # Ungated, the search takes the other toy's fakes; gated, it does not.
    assert caught(replace(fp.detection, min_cosine=0.0, floor_cosine=0.0), theirs, (3, 5)) >= 0.5
    assert caught(fp.detection, theirs, (3, 5)) <= 0.1
    # Moved to some other phases they match at zero shift, by strength and not by shape: without the
    # floor the zero-shift test takes them, with it not, while this toy's own fakes keep it.
    assert caught(replace(fp.detection, floor_cosine=0.0), theirs, (2, 6)) >= 0.5
    assert caught(fp.detection, theirs, (2, 6)) <= 0.1
    assert caught(replace(fp.detection, backstop_window=0), own, (0, 0)) >= 0.95
    assert caught(fp.detection, photos[28:], (2, 6)) <= 1 / len(photos[28:])

"""``dif.lineage`` on constructed fingerprints: shifts, signs, shared components, calibration, errors."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from dif.artifact import Fingerprint, save_fingerprint
from dif.calibration import Calibration
from dif.extractors import create
from dif.lineage import (
    LineageConfig,
    LineageError,
    Population,
    compare,
    correlation_surface,
    inverse_upper_tail,
    matrix,
    unit,
    upper_tail,
)
from dif_cli import main

SIZE = 32


def periodic(seed: int, period: int = 8) -> torch.Tensor:
    """A generator-like trace: a random tile repeated over the crop."""
    tile = torch.randn(3, period, period, generator=torch.Generator().manual_seed(seed))
    return tile.repeat(1, SIZE // period, SIZE // period)


def noise(seed: int, scale: float = 1.0) -> torch.Tensor:
    return scale * torch.randn(3, SIZE, SIZE, generator=torch.Generator().manual_seed(10_000 + seed))


def make(name: str, tensor: torch.Tensor, sign: float = 1.0) -> Fingerprint:
    centres = (0.0, 0.1) if sign > 0 else (0.1, 0.0)
    return Fingerprint(name=name, tensor=(sign * tensor).float().contiguous(),
                       calibration=Calibration(*centres, 0.01, 0.01), extractor=create("signlap@1").describe())


SHARED = 3.0 * noise(999)  # what every fingerprint of the population carries (the trainer's prior)


def population(count: int = 12, extra: list[Fingerprint] | None = None) -> list[Fingerprint]:
    fps = [make(f"g{k}", SHARED + periodic(k) + noise(k)) for k in range(count)]
    return fps + (extra or [])


def test_surface_is_a_correlation_per_shift() -> None:
    a, b = unit(torch.randn(3, SIZE, SIZE)), unit(torch.randn(3, SIZE, SIZE))
    surface = correlation_surface(a, b)
    assert surface[0, 0].item() == pytest.approx(float((a * b).sum()), abs=1e-6)
    moved = b.roll((3, -5), dims=(-2, -1))
    assert float(correlation_surface(a, moved)[3, -5 % SIZE]) == pytest.approx(float(surface[0, 0]), abs=1e-6)
    assert float(correlation_surface(a, a).max()) == pytest.approx(1.0)


def test_gaussian_tail_round_trip() -> None:
    for z in (-3.0, 0.0, 1.5, 3.09, 8.0):
        assert inverse_upper_tail(upper_tail(z)) == pytest.approx(z, abs=1e-6)
    assert LineageConfig(alpha=1e-3).threshold == pytest.approx(3.0902, abs=1e-3)


def test_a_shifted_child_is_related_at_its_shift() -> None:
    parent = make("parent", SHARED + periodic(0) + noise(100))
    child = make("child", SHARED + (periodic(0) + noise(101, 0.5)).roll((2, -3), dims=(-2, -1)))
    pop = Population(population(extra=[parent, child]))
    result = compare(parent, child, pop)
    assert result.related and result.hypothesis == "shifted" and result.shift == (2, -3)
    assert compare(child, parent, pop).shift == (-2, 3)


def test_an_aligned_child_is_related_without_a_shift() -> None:
    parent = make("parent", SHARED + periodic(0) + noise(100))
    child = make("child", SHARED + periodic(0) + noise(101, 0.8))
    result = compare(parent, child, Population(population(extra=[parent, child])))
    assert result.related and result.shift == (0, 0) and result.similarity > 5


def test_the_sign_of_a_fingerprint_does_not_matter() -> None:
    """A fingerprint and its negation (with swapped centres) are the same detector."""
    parent = make("parent", SHARED + periodic(0) + noise(100))
    child = make("child", SHARED + periodic(0) + noise(101, 0.8))
    flipped = make("child", SHARED + periodic(0) + noise(101, 0.8), sign=-1.0)
    plain = compare(parent, child, Population(population(extra=[parent, child])))
    mirrored = compare(parent, flipped, Population(population(extra=[parent, flipped])))
    assert mirrored.related and mirrored.correlation == pytest.approx(plain.correlation, abs=0.1)


def test_what_everyone_shares_is_not_lineage() -> None:
    fps = population()
    naive = torch.corrcoef(torch.stack([fp.tensor.flatten() for fp in fps]))
    assert float(naive[0, 1]) > 0.5  # the shared prior dominates a naive comparison
    result = matrix(fps, Population(fps))
    assert not any(c.related for c in result.comparisons.values())


def test_unrelated_pairs_are_rarely_called_related() -> None:
    fps = population(count=30)
    result = matrix(fps, Population(fps, LineageConfig(alpha=0.01)))
    called = sum(c.related for c in result.comparisons.values())
    assert called <= 0.03 * len(result.comparisons)
    assert all(math.isfinite(c.similarity) and 0 <= c.p_value <= 1 for c in result.comparisons.values())


def test_outsiders_are_compared_against_the_population() -> None:
    """Neither fingerprint needs to be a member: an upload against a loaded set."""
    parent = make("parent", SHARED + periodic(0) + noise(100))
    child = make("child", SHARED + periodic(0) + noise(101, 0.8))
    pop = Population(population())
    assert compare(parent, child, pop).related
    assert not compare(parent, make("stranger", SHARED + periodic(77) + noise(77)), pop).related


def test_errors_say_what_to_do() -> None:
    fps = population(count=4)
    with pytest.raises(LineageError, match="at least 5 fingerprints"):
        Population(fps)
    pop = Population(population())
    other_size = make("big", torch.randn(3, 64, 64))
    with pytest.raises(LineageError, match="crop size 64"):
        compare(pop.members[0], other_size, pop)
    with pytest.raises(LineageError, match="same fingerprint"):
        compare(pop.members[0], pop.members[0], pop)
    with pytest.raises(LineageError, match="twice"):
        Population([*population(), population()[0]])
    with pytest.raises(LineageError, match="one crop size"):
        Population([*population(), other_size])


def test_cli_json_png_and_errors(tmp_path: Path, capsys) -> None:
    parent = make("parent", SHARED + periodic(0) + noise(100))
    child = make("child", SHARED + (periodic(0) + noise(101, 0.5)).roll((1, 1), dims=(-2, -1)))
    for fp in population(extra=[parent, child]):
        save_fingerprint(fp, tmp_path / "set" / fp.name)
    assert main(["lineage", str(tmp_path / "set" / "parent"), str(tmp_path / "set" / "child"), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["related"] and result["shift"] == [1, 1] and result["population"] == 14

    png = tmp_path / "m.png"
    assert main(["lineage-matrix", str(tmp_path / "set"), "--png", str(png), "--max-shift", "2"]) == 0
    out = capsys.readouterr().out
    assert "related: child ~ parent" in out or "related: parent ~ child" in out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    for fp in population(count=2):
        save_fingerprint(fp, tmp_path / "small" / fp.name)
    assert main(["lineage", str(tmp_path / "small" / "g0"), str(tmp_path / "small" / "g1")]) == 2
    assert "--population" in capsys.readouterr().err
    assert main(["lineage-matrix", str(tmp_path / "nowhere")]) == 2
    assert "does not exist" in capsys.readouterr().err

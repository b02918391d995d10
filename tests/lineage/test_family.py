"""The synthetic family: related generators must score above unrelated ones, whatever the seed."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dif.artifact import Detection, save_fingerprint
from dif.lineage import LineageConfig, Population, matrix
from dif_cli import main
from training.lineage_family import FamilyConfig, Member, is_related, lineage_auc
from training.metrics import roc_auc

from .conftest import FAMILY_SEEDS


def scored_pairs(members: list[Member]) -> list[tuple[Member, Member, float, bool, tuple[int, int], bool]]:
    fps = [m.fingerprint for m in members]
    result = matrix(fps, Population(fps, LineageConfig()))
    return [(members[i], members[j], c.similarity, c.related, c.shift, is_related(members[i], members[j]))
            for (i, j), c in result.comparisons.items()]


def test_related_pairs_score_above_unrelated_ones(family: list[Member]) -> None:
    pairs = scored_pairs(family)
    truth = [p[5] for p in pairs]
    assert sum(truth) == 3 * len(FAMILY_SEEDS)  # parent-child0, parent-child1, child0-child1 per seed
    auc = lineage_auc([p[2] for p in pairs], truth)
    assert auc >= 0.95, f"lineage AUC {auc:.3f} over seeds {FAMILY_SEEDS}"
    # Each seed on its own: its related pairs against every unrelated pair.
    for seed in FAMILY_SEEDS:
        own = [p for p in pairs if not p[5] or p[0].family == seed]
        assert lineage_auc([p[2] for p in own], [p[5] for p in own]) >= 0.9, f"seed {seed}"


def test_decision_keeps_false_positives_rare(family: list[Member]) -> None:
    """One family has seven unrelated pairs, too few for a rate: the bound of 3 % of unrelated pairs is
    checked over three families to a population by `python -m bench.lineage_report` (its `checks`)."""
    pairs = scored_pairs(family)
    unrelated = [p for p in pairs if not p[5]]
    related = [p for p in pairs if p[5]]
    false_positives = sum(p[3] for p in unrelated)
    assert false_positives <= 1, [(p[0].name, p[1].name) for p in unrelated if p[3]]
    assert sum(p[3] for p in related) >= len(related) // 2


def test_the_shifted_child_is_found_at_its_shift(family: list[Member]) -> None:
    """child1 renders its images (1, 2) pixels into its grid: its pattern is child0's moved by (-1, -2)."""
    dy, dx = FamilyConfig().child_shift
    found = [p[4] for p in scored_pairs(family)
             if p[0].role == "child" and p[1].role == "child" and p[0].family == p[1].family and p[3]]
    assert found, "no sibling pair was called related"
    assert all(shift == (-dy, -dx) for shift in found), found


def test_naive_correlation_is_a_weaker_ranking(family: list[Member]) -> None:
    """Zero-shift Pearson misses the shifted child; the lineage statistic does not."""
    pairs = scored_pairs(family)
    units = {m.name: m.fingerprint.tensor.flatten() for m in family}
    naive = [float(torch.corrcoef(torch.stack([units[a.name], units[b.name]]))[0, 1]) for a, b, *_ in pairs]
    truth = torch.tensor([p[5] for p in pairs], dtype=torch.long)
    assert roc_auc(torch.tensor(naive), truth) < lineage_auc([p[2] for p in pairs], [p[5] for p in pairs])


def _write_images(images: torch.Tensor, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for k, image in enumerate(images):
        array = (image.permute(1, 2, 0).clamp(0, 1).numpy() * 255).round().astype(np.uint8)
        Image.fromarray(array).save(folder / f"{k:03d}.png")


def test_cross_detection_matrix(family: list[Member], ltim: Path, tmp_path: Path, capsys) -> None:
    """A parent's fingerprint responds to its child's images much as to its own, less to an unrelated one's."""
    chosen = {m.name: m for m in family if m.family == 0 and m.name in ("f0-parent", "f0-child0", "f0-other0")}
    reals = sorted((ltim / "glide" / "0_real").iterdir())
    real_crops = []
    for path in reals[:4]:
        with Image.open(path) as im:
            arr = torch.from_numpy(np.asarray(im.convert("RGB"), dtype=np.float32) / 255).permute(2, 0, 1)
        real_crops += [arr[:, 64 * k : 64 * k + 64, 0:64] for k in range(3)]
    for name, member in chosen.items():
        assert member.images is not None
        _write_images(member.images[:24], tmp_path / "data" / name / "1_fake")
        _write_images(torch.stack(real_crops), tmp_path / "data" / name / "0_real")
        fp = member.fingerprint
        fp.detection = Detection(max_crops=1)
        save_fingerprint(fp, tmp_path / "fps" / name)
    png = tmp_path / "cross.png"
    code = main(["cross-detect", str(tmp_path / "fps"), "--data", str(tmp_path / "data"), "--metric",
                 "fake_feature", "--json", "--png", str(png), "--device", "cpu"])
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    rows = {row["fingerprint"]: {r["data"]: r for r in row["results"]} for row in report["rows"]}
    parent = rows["f0-parent"]
    assert parent["f0-parent"]["fake_detected"] >= 0.9 and parent["f0-child0"]["fake_detected"] >= 0.9
    own, child, other = (parent[n]["fake_feature"] for n in ("f0-parent", "f0-child0", "f0-other0"))
    assert child > 0.7 * own and other < 0.7 * own, (own, child, other)
    with Image.open(png) as im:
        assert im.size[0] > 100 and im.format == "PNG"


@pytest.mark.parametrize("metric", ["accuracy", "auc"])
def test_cross_detect_refuses_folders_without_data(tmp_path: Path, family: list[Member], metric: str,
                                                   capsys) -> None:
    save_fingerprint(family[0].fingerprint, tmp_path / "fps" / family[0].name)
    (tmp_path / "empty").mkdir()
    assert main(["cross-detect", str(tmp_path / "fps"), "--data", str(tmp_path / "empty"),
                 "--metric", metric]) == 2
    assert "0_real/ and 1_fake/" in capsys.readouterr().err

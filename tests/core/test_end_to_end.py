"""Train on a synthetic generator's images, detect held-out ones, and stay quiet on another generator."""

import json

import pytest

from dif_cli import main
from testkit.synthetic import ToyGenerator, photo_crops, write_dataset


@pytest.fixture(scope="module")
def photos(ltim):
    paths = sorted(ltim.glob("*/0_real/*.png"))
    crops = photo_crops(paths)
    assert len(crops) >= 40, "the shared sample data should hold at least 40 real photos >= 320 px"
    return crops


def run_json(capsys, argv):
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_synthetic_generator_detected_and_unrelated_one_not(tmp_path, photos, capsys):
    # Stride 8, like Stable Diffusion's VAE. (A purely 2-periodic pattern cannot pass 1 %: the z
    # statistic of a P-periodic fingerprint is at most P, docs/accuracy.md.)
    g1, g2 = ToyGenerator(seed=1, stride=8), ToyGenerator(seed=2, stride=4)
    half = len(photos) // 2
    train_real, test_real = photos[:half][:12], photos[:half][12:]
    train_fake, test_fake = photos[half:][:12], photos[half:][12:]
    train = write_dataset(tmp_path / "train", train_real, train_fake, g1)
    test = write_dataset(tmp_path / "test", test_real, test_fake, g1)
    other = write_dataset(tmp_path / "other", test_real, test_fake, g2)

    # lattice8/zbg: what inner cross-validation chooses for this set (test_estimators tests the choice),
    # given so that each inner fold trains one candidate instead of all of them.
    assert main(["train", str(train), "--out", str(tmp_path / "fp"), "--name", "toy", "--quiet",
                 "--device", "cpu", "--estimator", "lattice8/zbg"]) == 0
    capsys.readouterr()
    held_out = run_json(capsys, ["eval", str(tmp_path / "fp"), str(test), "--json", "--device", "cpu"])
    assert held_out["n_fake"] >= 8 and held_out["n_real"] >= 8
    # At a whole-set false-positive rate of 1 %, on fakes and photos it never saw.
    assert held_out["tpr_at_fpr"]["0.01"] >= 0.95 and held_out["fpr_at"]["0.01"] == 0.0, held_out
    unrelated = run_json(capsys, ["eval", str(tmp_path / "fp"), str(other), "--json", "--device", "cpu"])
    # The second generator's images must not be taken for the first one's.
    assert unrelated["tpr_at_fpr"]["0.05"] <= 0.1, unrelated

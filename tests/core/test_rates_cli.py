"""`dif crossval` / `dif eval` / `dif train` report TPR at stated false-positive rates, on photos never trained on."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dif.cli import main
from testkit.paths import CBSD68


def run_json(capsys: pytest.CaptureFixture[str], argv: list[str]) -> dict:
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def one_line_error(capsys: pytest.CaptureFixture[str], argv: list[str], needle: str) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and len(err.splitlines()) == 1, err


def test_crossval_reports_tpr_at_fpr_on_unseen_reals(ltim: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # The estimator inner cross-validation picks for the whole MidJourney set, given: one training per inner fold, not
    # one per candidate (the choice itself is tested in test_estimators.py).
    report = run_json(capsys, ["crossval", str(ltim / "mj"), "--json", "--reals", str(CBSD68), "--device", "cpu",
                               "--estimator", "lattice8/zbg"])
    assert report["n_real"] == 10 and report["n_fake"] == 10 and len(report["folds"]) == 5
    assert report["n_unseen_reals"] == 68 and report["family_size"] == 5
    for key in ("tpr_at_fpr", "fpr_at", "tpr_interval", "fpr_interval", "fpr_heldout_reals"):
        assert set(report[key]) == {"0.01", "0.05"}, key
    for rate in ("0.01", "0.05"):
        assert 0.0 <= report["tpr_at_fpr"][rate] <= 1.0
        low, high = report["tpr_interval"][rate]
        assert low <= report["tpr_at_fpr"][rate] <= high
    # 68 photos x 5 fold fingerprints: a rule that holds 5 % (1 % per generator) flags very few.
    assert report["fpr_at"]["0.05"] <= 0.03 and report["fpr_at"]["0.01"] <= 0.02
    assert report["tpr_at_fpr"]["0.05"] >= report["tpr_at_fpr"]["0.01"]
    assert report["auc_unseen_reals"] >= 0.95 and report["auc"] >= 0.95  # MidJourney separates well
    assert len(report["heldout_fake_p"]) == 10


def test_a_real_pool_that_trains_the_fingerprint_is_refused(ltim: Path, capsys: pytest.CaptureFixture[str]) -> None:
    one_line_error(capsys, ["crossval", str(ltim / "mj"), "--reals", str(ltim / "mj" / "0_real"), "--device", "cpu"],
                   "never saw")
    one_line_error(capsys, ["crossval", str(ltim / "mj"), "--extra-real", str(ltim / "sd14" / "0_real"),
                            "--reals", str(ltim / "sd14" / "0_real"), "--device", "cpu"], "never saw")


@pytest.mark.parametrize("folds", ["0", "1", "11"])
def test_impossible_fold_counts_are_refused(ltim: Path, capsys: pytest.CaptureFixture[str], folds: str) -> None:
    one_line_error(capsys, ["crossval", str(ltim / "mj"), "--folds", folds, "--json", "--device", "cpu"], "--folds")


def test_train_refuses_an_impossible_crossval_and_writes_nothing(ltim: Path, tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    one_line_error(capsys, ["train", str(ltim / "mj"), "--out", str(tmp_path / "fp"), "--crossval", "50",
                            "--quiet", "--device", "cpu"], "--folds")
    assert not (tmp_path / "fp").exists()


def test_train_records_tpr_and_eval_measures_fpr(ltim: Path, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", str(ltim / "mj"), "--out", str(tmp_path / "mj"), "--crossval", "5", "--quiet",
                 "--device", "cpu", "--calibration", "train"]) == 0
    assert "cross-validated TPR at 1 %" in capsys.readouterr().out
    meta = json.loads((tmp_path / "mj" / "metadata.json").read_text())
    assert meta["schema_version"] == 2 and set(meta["metrics"]["crossval"]["tpr_at_fpr"]) == {"0.01", "0.05"}
    report = run_json(capsys, ["eval", str(tmp_path / "mj"), str(ltim / "sd14"), "--json", "--quiet",
                               "--reals", str(CBSD68), "--device", "cpu"])
    assert report["n_unseen_reals"] == 68 and report["fpr_at"]["0.01"] <= 3 / 68
    assert set(report["tpr_at_fpr"]) == {"0.01", "0.05"} and report["family_size"] == 5

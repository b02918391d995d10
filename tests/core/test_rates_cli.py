"""`dif crossval` / `dif eval` / `dif train` report TPR at stated false-positive rates, on photos never trained on."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from dif_cli import main
from testkit.paths import CBSD68, REPO
from training.data import scan


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
    assert meta["schema_version"] == 3 and set(meta["metrics"]["crossval"]["tpr_at_fpr"]) == {"0.01", "0.05"}
    report = run_json(capsys, ["eval", str(tmp_path / "mj"), str(ltim / "sd14"), "--json", "--quiet",
                               "--reals", str(CBSD68), "--device", "cpu"])
    assert report["n_unseen_reals"] == 68 and report["fpr_at"]["0.01"] <= 3 / 68
    assert set(report["tpr_at_fpr"]) == {"0.01", "0.05"} and report["family_size"] == 5


EMBEDDED_SD14 = REPO / "fingerprints" / "sd14"


def labelled_folder(root: Path, reals: list[Path], fakes: list[Path]) -> Path:
    """Copies under new names: the overlap check must go by content, not by path or file name."""
    for sub, paths in (("0_real", reals), ("1_fake", fakes)):
        (root / sub).mkdir(parents=True)
        for i, path in enumerate(paths):
            shutil.copy(path, root / sub / f"copy{i}{path.suffix}")
    return root


def eval_warning(capsys: pytest.CaptureFixture[str], fp_dir: Path, data_dir: Path) -> tuple[str | None, str]:
    assert main(["eval", str(fp_dir), str(data_dir), "--json", "--quiet", "--device", "cpu"]) == 0
    captured = capsys.readouterr()
    report = json.loads(captured.out.strip().splitlines()[-1])
    assert report["n_fake"] >= 1  # a full report, the warning comes beside it
    return report.get("warning"), captured.err.strip()


def test_eval_warns_when_the_images_trained_the_fingerprint(ltim: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(REPO)  # the embedded artifacts record their training folders relative to the repository
    # Odd photos by name: the even ones fitted the embedded nulls, a warning of its own (below).
    mixed = labelled_folder(tmp_path / "mixed", sorted(CBSD68.glob("*.png"))[1::2][:2],
                            sorted((ltim / "sd14" / "1_fake").iterdir())[:2])
    warning, err = eval_warning(capsys, EMBEDDED_SD14, mixed)
    assert warning is not None and warning.startswith("2 of the 4 evaluated images trained 'sd14'"), warning
    assert err == f"dif eval: warning: {warning}"
    fresh = labelled_folder(tmp_path / "fresh", sorted(CBSD68.glob("*.png"))[1::2][:2],
                            sorted((ltim / "mj" / "1_fake").iterdir())[:2])
    assert eval_warning(capsys, EMBEDDED_SD14, fresh) == (None, "")


def test_eval_falls_back_to_the_data_digest_when_the_training_folders_are_gone(
        ltim: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = labelled_folder(tmp_path / "data", sorted((ltim / "sd14" / "0_real").iterdir())[:2],
                           sorted((ltim / "sd14" / "1_fake").iterdir())[:2])
    artifact = tmp_path / "sd14"
    shutil.copytree(EMBEDDED_SD14, artifact)
    meta = json.loads((artifact / "metadata.json").read_text())
    # As `dif train` records an artifact trained on `data` alone, from a folder since deleted.
    meta["data_digest"] = scan(data).digest()
    meta["provenance"].update(data=str(tmp_path / "deleted"), extra_real=[])
    (artifact / "metadata.json").write_text(json.dumps(meta))
    warning, err = eval_warning(capsys, artifact, data)
    assert warning is not None and "the very images 'sd14' trained on" in warning and err.endswith(warning)


def test_eval_warns_when_its_reals_fitted_the_null(ltim: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """Half of CBSD68 widened the embedded nulls (--null-reals): an FPR measured on it is flattered,
    whether the photos come as --reals or in the evaluated folder's own 0_real."""
    photos = sorted(CBSD68.glob("*.png"))
    fresh = labelled_folder(tmp_path / "fresh", photos[1:2], sorted((ltim / "mj" / "1_fake").iterdir())[:1])
    assert main(["eval", str(EMBEDDED_SD14), str(fresh), "--json", "--quiet", "--device", "cpu",
                 "--reals", str(CBSD68)]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["warning"].startswith("34 of the 70 evaluated images fitted 'sd14''s null"), report["warning"]
    in_folder = labelled_folder(tmp_path / "in-folder", photos[:2], sorted((ltim / "mj" / "1_fake").iterdir())[:1])
    warning, _ = eval_warning(capsys, EMBEDDED_SD14, in_folder)
    assert warning is not None and warning.startswith("1 of the 3 evaluated images fitted 'sd14''s null"), warning

import json

import pytest
import torch

from dif.cli import main


def test_crossval_on_midjourney_reaches_90_percent(ltim, capsys):
    assert main(["crossval", str(ltim / "mj"), "--folds", "5", "--json", "--device", "cpu"]) == 0
    report = json.loads(capsys.readouterr().out)
    for key in ("accuracy", "accuracy_real", "accuracy_fake", "auc", "n_real", "n_fake", "folds"):
        assert key in report
    assert report["n_real"] == 10 and report["n_fake"] == 10 and len(report["folds"]) == 5
    assert report["accuracy"] >= 0.90, report


def test_missing_class_folder_is_a_one_line_error(tmp_path, capsys):
    (tmp_path / "1_fake").mkdir()
    assert main(["crossval", str(tmp_path), "--json", "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip()
    assert "0_real" in err and len(err.splitlines()) == 1


def test_eval_of_missing_artifact_is_a_one_line_error(tmp_path, ltim, capsys):
    assert main(["eval", str(tmp_path / "none"), str(ltim / "mj"), "--json"]) == 2
    assert "not a folder" in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here: test_cuda_device_is_used runs")
def test_unavailable_cuda_is_refused(ltim, capsys):
    assert main(["crossval", str(ltim / "mj"), "--device", "cuda"]) == 2
    assert "--device cpu" in capsys.readouterr().err


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device: test_unavailable_cuda_is_refused runs")
def test_cuda_device_is_used(ltim, capsys):
    """On a CUDA machine the same command trains and scores on the GPU (mj separates cleanly)."""
    assert main(["crossval", str(ltim / "mj"), "--device", "cuda", "--folds", "5", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["n_fake"] == 10 and len(report["folds"]) == 5
    assert report["auc"] >= 0.90, report


def test_blank_experiment_writes_pngs(tmp_path, capsys):
    assert main(["blank", "--out", str(tmp_path), "--steps", "3", "--width", "4", "--device", "cpu"]) == 0
    for name in ("blank_image.png", "blank_spectrum.png", "blank_output.safetensors"):
        assert (tmp_path / name).stat().st_size > 0


def test_train_denoiser_then_use_it(tmp_path, ltim, capsys):
    assert main(["train-denoiser", str(ltim / "mj" / "0_real"), "--out", str(tmp_path / "den"),
                 "--steps", "3", "--depth", "3", "--width", "4", "--quiet", "--device", "cpu"]) == 0
    assert main(["crossval", str(ltim / "mj"), "--extractor", "dncnn@1", "--extractor-dir", str(tmp_path / "den"),
                 "--folds", "2", "--json", "--device", "cpu", "--crops", "1"]) == 0
    assert "accuracy" in json.loads(capsys.readouterr().out.strip().splitlines()[-1])

"""``dif import-reference``: real reference checkpoints round-trip, hostile or broken ones are refused."""

from __future__ import annotations

import hashlib
import pickle
import shutil
from pathlib import Path

import pytest
import torch

from dif.artifact import load_all, load_fingerprint
from dif.errors import ArtifactError
from dif.extractors import DEFAULT_EXTRACTOR, create
from dif_cli import main
from tests.abuse.bombs import OpensFile, RunsShell, global_opcode_pickle
from training.importer import (
    CENTRE_STEPS,
    SPREAD_FLOOR,
    UnsafePickle,
    import_reference,
    read_hypers,
    restricted_loads,
)


def write_checkpoint(folder: Path, fingerprint: object = None, real: object = None, fake: object = None,
                     hypers: bytes | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    data = {
        "Fingerprint": torch.randn(1, 3, 32, 32) if fingerprint is None else fingerprint,
        "Train Real": [0.001 * i for i in range(30)] if real is None else real,
        "Train Fake": [0.05 + 0.001 * i for i in range(30)] if fake is None else fake,
        "Loss": [1.0 / (i + 1) for i in range(30)],
    }
    torch.save(data, folder / "chk_0.pt")
    hypers = hypers if hypers is not None else pickle.dumps({"LR": 5e-4, "Device": torch.device("cpu"),
                                                             "Crop Size": (32, 32)})
    (folder / "train_hypers.pt").write_bytes(hypers)
    return folder


# --- the real reference files -------------------------------------------------------------------

def test_round_trip_of_a_reference_generator(reference_dir: Path, tmp_path: Path, capsys) -> None:
    source = reference_dir / "mj"
    out = tmp_path / "mj"
    assert main(["import-reference", str(source), "--out", str(out)]) == 0
    assert "wrote" in capsys.readouterr().out

    fp = load_fingerprint(out)
    original = torch.load(source / "chk_0.pt", weights_only=True, map_location="cpu")
    assert torch.equal(fp.tensor, original["Fingerprint"][0].float())
    real = torch.tensor(original["Train Real"][-CENTRE_STEPS:], dtype=torch.float64)
    fake = torch.tensor(original["Train Fake"][-CENTRE_STEPS:], dtype=torch.float64)
    assert fp.calibration.real_centre == pytest.approx(float(real.mean()))
    assert fp.calibration.fake_centre == pytest.approx(float(fake.mean()))
    assert fp.calibration.real_spread == pytest.approx(max(float(real.std()), SPREAD_FLOOR))
    assert fp.calibration.fake_centre < fp.calibration.real_centre  # MidJourney's reference points away
    assert fp.detection.feature == "correlation"

    assert fp.extractor["mismatch"] is True
    assert fp.extractor["trained_with"] == "reference DnCNN (weights unpublished)"
    assert fp.extractor_key == DEFAULT_EXTRACTOR
    assert fp.extractor["digest"] == create(DEFAULT_EXTRACTOR).digest()

    provenance = fp.metadata["provenance"]
    for name in ("chk_0.pt", "train_hypers.pt"):
        assert provenance["files_sha256"][name] == hashlib.sha256((source / name).read_bytes()).hexdigest()
    hypers = fp.metadata["reference_hyperparameters"]
    assert hypers["Device"] == "cuda" and hypers["Crop Size"] == [256, 256] and hypers["LR"] == 5e-4
    assert (out / "fingerprint.png").is_file() and (out / "spectrum.png").is_file()


def test_import_all_writes_one_artifact_per_generator(reference_dir: Path, tmp_path: Path) -> None:
    assert main(["import-reference", str(reference_dir), "--out", str(tmp_path), "--all"]) == 0
    loaded = load_all(tmp_path)
    expected = sorted(p.name for p in reference_dir.iterdir() if (p / "chk_0.pt").is_file())
    assert [fp.name for fp in loaded] == expected
    assert len(loaded) == 12
    assert all(fp.crop_size == 256 and fp.extractor["mismatch"] for fp in loaded)


def test_all_refuses_a_single_name(reference_dir: Path, tmp_path: Path, capsys) -> None:
    assert main(["import-reference", str(reference_dir), "--out", str(tmp_path), "--all", "--name", "x"]) == 2
    assert "--name" in capsys.readouterr().err


def test_hyper_parameters_need_no_trust(reference_dir: Path) -> None:
    hypers = read_hypers(reference_dir / "sd14" / "train_hypers.pt")
    assert hypers["Device"] == "cuda" and hypers["Epochs"] == 100


# --- hostile pickles ----------------------------------------------------------------------------

@pytest.mark.parametrize("payload", ["shell", "open", "eval", "global-opcode"])
def test_malicious_hyper_parameters_are_refused_without_running(tmp_path: Path, payload: str) -> None:
    marker = tmp_path / "pwned"
    if payload == "shell":
        blob = pickle.dumps({"LR": 1e-3, "Device": RunsShell(f"touch {marker}")})
    elif payload == "open":
        blob = pickle.dumps({"LR": OpensFile(str(marker))})
    elif payload == "eval":
        blob = b"cbuiltins\neval\n(S'open(" + repr(str(marker)).encode() + b", \"w\")'\ntR."
    else:  # protocol-0 GLOBAL naming posix.system directly
        blob = global_opcode_pickle(str(marker))
    folder = write_checkpoint(tmp_path / "gen", hypers=blob)
    with pytest.raises(UnsafePickle, match="refusing to unpickle"):
        import_reference(folder)
    assert not marker.exists()
    assert main(["import-reference", str(folder), "--out", str(tmp_path / "out")]) == 2
    assert not marker.exists() and not (tmp_path / "out").exists()


def test_malicious_checkpoint_is_refused_without_running(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    folder = write_checkpoint(tmp_path / "gen")
    (folder / "chk_0.pt").write_bytes(pickle.dumps({"Fingerprint": RunsShell(f"touch {marker}")}))
    with pytest.raises(ArtifactError, match="weights_only"):
        import_reference(folder)
    assert not marker.exists()


def test_restricted_unpickler_builds_plain_values_and_devices() -> None:
    value = restricted_loads(pickle.dumps({"a": (1, 2.5), "b": {1, 2}, "c": torch.device("cuda"), "d": None}))
    assert value == {"a": (1, 2.5), "b": {1, 2}, "c": torch.device("cuda"), "d": None}
    with pytest.raises(UnsafePickle):
        restricted_loads(pickle.dumps(torch.zeros(2)))  # tensors are not hyper-parameters
    with pytest.raises(ArtifactError, match="not a readable pickle"):
        restricted_loads(b"\x80\x04garbage")


def test_hyper_parameters_inside_a_torch_save_zip(tmp_path: Path) -> None:
    torch.save({"LR": 1e-3, "Device": torch.device("cpu")}, tmp_path / "h.pt")
    assert read_hypers(tmp_path / "h.pt") == {"LR": 1e-3, "Device": "cpu"}


# --- broken checkpoints -------------------------------------------------------------------------

@pytest.mark.parametrize(("fingerprint", "message"), [
    (torch.randn(1, 3, 32, 16), r"shape \[1, 3, S, S\]"),
    (torch.randn(3, 32), r"shape \[1, 3, S, S\]"),
    (torch.randn(1, 4, 32, 32), r"shape \[1, 3, S, S\]"),
    (torch.full((1, 3, 32, 32), float("nan")), "NaN or infinite"),
    (torch.ones(1, 3, 32, 32), "constant"),
    (torch.zeros(1, 3, 32, 32, dtype=torch.int64), "floating point"),
    ([1.0, 2.0], "must be a tensor"),
])
def test_bad_fingerprints_are_refused_clearly(tmp_path: Path, fingerprint: object, message: str) -> None:
    folder = write_checkpoint(tmp_path / "gen", fingerprint=fingerprint)
    with pytest.raises(ArtifactError, match=message):
        import_reference(folder)


@pytest.mark.parametrize(("real", "message"), [
    ([], "non-empty list"),
    ([0.1, float("nan")], "NaN or infinite"),
    (["x"], "must hold numbers"),
])
def test_bad_training_curves_are_refused(tmp_path: Path, real: object, message: str) -> None:
    folder = write_checkpoint(tmp_path / "gen", real=real)
    with pytest.raises(ArtifactError, match=message):
        import_reference(folder)


def test_equal_centres_are_refused(tmp_path: Path) -> None:
    folder = write_checkpoint(tmp_path / "gen", real=[0.01] * 25, fake=[0.01] * 25)
    with pytest.raises(ArtifactError, match="centres are equal"):
        import_reference(folder)


def test_missing_checkpoint_and_missing_folder(tmp_path: Path, capsys) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(ArtifactError, match="no chk_<k>.pt"):
        import_reference(tmp_path / "empty")
    assert main(["import-reference", str(tmp_path / "nowhere"), "--out", str(tmp_path / "o")]) == 2
    assert "not a folder" in capsys.readouterr().err


def test_small_checkpoint_round_trip_and_latest_checkpoint_wins(tmp_path: Path) -> None:
    folder = write_checkpoint(tmp_path / "My Gen")
    later = torch.randn(1, 3, 32, 32)
    data = torch.load(folder / "chk_0.pt", weights_only=True)
    torch.save({**data, "Fingerprint": later}, folder / "chk_3.pt")
    fp = import_reference(folder)
    assert fp.name == "my-gen"
    assert torch.equal(fp.tensor, later[0])
    assert "chk_3.pt" in fp.metadata["provenance"]["files_sha256"]
    assert fp.metadata["reference_hyperparameters"] == {"LR": 5e-4, "Device": "cpu", "Crop Size": [32, 32]}


def test_hyper_parameters_are_optional(tmp_path: Path) -> None:
    folder = write_checkpoint(tmp_path / "gen")
    (folder / "train_hypers.pt").unlink()
    fp = import_reference(folder)
    assert fp.metadata["reference_hyperparameters"] is None


def test_reference_folder_is_not_modified(reference_dir: Path, tmp_path: Path) -> None:
    copy = tmp_path / "glide"
    shutil.copytree(reference_dir / "glide", copy)
    before = {p.name: p.read_bytes() for p in copy.iterdir()}
    import_reference(copy)
    assert {p.name: p.read_bytes() for p in copy.iterdir()} == before

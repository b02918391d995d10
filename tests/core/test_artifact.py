import json
import pickle

import pytest
import torch
from safetensors.torch import save

from dif.artifact import (
    METADATA_FILE,
    WEIGHTS_FILE,
    Detection,
    Fingerprint,
    load_all,
    load_fingerprint,
    save_fingerprint,
)
from dif.calibration import Calibration
from dif.errors import ArtifactError
from dif.extractors import create


def make(name="gen-a", size=32, seed=0) -> Fingerprint:
    torch.manual_seed(seed)
    return Fingerprint(
        name=name, tensor=torch.randn(3, size, size),
        calibration=Calibration(real_centre=0.0, fake_centre=3.0, real_spread=1.0, fake_spread=1.5, method="test"),
        extractor=create("signlap@1").describe(), detection=Detection(max_crops=2),
        metadata={"samples": {"real": 4, "fake": 5}},
    )


def test_round_trip_keeps_everything(tmp_path):
    fp = make()
    out = save_fingerprint(fp, tmp_path / "gen-a")
    for f in (WEIGHTS_FILE, METADATA_FILE, "fingerprint.png", "spectrum.png"):
        assert (out / f).is_file()
    back = load_fingerprint(out)
    assert torch.equal(back.tensor, fp.tensor)
    assert back.calibration == fp.calibration
    assert back.detection == fp.detection
    assert back.extractor_key == "signlap@1"
    meta = json.loads((out / METADATA_FILE).read_text())
    for key in ("schema_version", "created_at", "code_version", "fingerprint_sha256", "samples", "crop_size"):
        assert key in meta


def test_load_all_sorted_and_rejects_duplicate_names(tmp_path):
    save_fingerprint(make("b"), tmp_path / "b")
    save_fingerprint(make("a"), tmp_path / "a")
    assert [f.name for f in load_all(tmp_path)] == ["a", "b"]
    save_fingerprint(make("a", seed=1), tmp_path / "c")
    with pytest.raises(ArtifactError, match="share a name"):
        load_all(tmp_path)


def edit_meta(folder, **changes):
    path = folder / METADATA_FILE
    meta = json.loads(path.read_text())
    for key, value in changes.items():
        if value is None:
            meta.pop(key)
        else:
            meta[key] = value
    path.write_text(json.dumps(meta))


@pytest.fixture
def saved(tmp_path):
    return save_fingerprint(make(), tmp_path / "gen-a")


def test_missing_folder(tmp_path):
    with pytest.raises(ArtifactError, match="not a folder"):
        load_fingerprint(tmp_path / "nope")


def test_missing_weights_says_what_to_do(saved):
    (saved / WEIGHTS_FILE).unlink()
    with pytest.raises(ArtifactError, match="dif train"):
        load_fingerprint(saved)


def test_bad_json(saved):
    (saved / METADATA_FILE).write_text("{not json")
    with pytest.raises(ArtifactError, match="not valid JSON"):
        load_fingerprint(saved)


def test_missing_key(saved):
    edit_meta(saved, calibration=None)
    with pytest.raises(ArtifactError, match="lacks calibration"):
        load_fingerprint(saved)


def test_unknown_schema(saved):
    edit_meta(saved, schema_version=99)
    with pytest.raises(ArtifactError, match="schema_version"):
        load_fingerprint(saved)


def test_bad_name(saved):
    edit_meta(saved, name="../etc")
    with pytest.raises(ArtifactError, match="name"):
        load_fingerprint(saved)


def test_bad_feature(saved):
    edit_meta(saved, detection={"feature": "magic"})
    with pytest.raises(ArtifactError, match="feature"):
        load_fingerprint(saved)


def test_non_finite_calibration(saved):
    meta = json.loads((saved / METADATA_FILE).read_text())
    meta["calibration"]["fake_centre"] = float("nan")
    (saved / METADATA_FILE).write_text(json.dumps(meta))
    with pytest.raises(ArtifactError, match="finite"):
        load_fingerprint(saved)


def test_equal_centres(saved):
    meta = json.loads((saved / METADATA_FILE).read_text())
    meta["calibration"]["fake_centre"] = meta["calibration"]["real_centre"]
    (saved / METADATA_FILE).write_text(json.dumps(meta))
    with pytest.raises(ArtifactError, match="equal"):
        load_fingerprint(saved)


@pytest.mark.parametrize(
    ("tensors", "message"),
    [
        ({"fingerprint": torch.randn(3, 16, 16)}, "shape"),
        ({"fingerprint": torch.randn(3, 32, 32, dtype=torch.float64)}, "float32"),
        ({"fingerprint": torch.full((3, 32, 32), float("nan"))}, "NaN"),
        ({"fingerprint": torch.ones(3, 32, 32)}, "constant"),
        ({"other": torch.randn(3, 32, 32)}, "exactly one tensor"),
    ],
)
def test_bad_tensors(saved, tensors, message):
    (saved / WEIGHTS_FILE).write_bytes(save(tensors))
    with pytest.raises(ArtifactError, match=message):
        load_fingerprint(saved)


class Boom:
    def __reduce__(self):
        return (print, ("pickle executed",))


def test_pickle_is_never_unpickled(saved, capsys):
    (saved / WEIGHTS_FILE).write_bytes(pickle.dumps({"fingerprint": Boom()}))
    with pytest.raises(ArtifactError, match="safetensors"):
        load_fingerprint(saved)
    assert "pickle executed" not in capsys.readouterr().out

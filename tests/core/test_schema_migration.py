"""Artifacts written before the decision rule changed (schema 1) still load, with a derived null.

``data/schema1-metadata.json`` is the embedded MidJourney artifact's metadata exactly as it was
committed under schema 1; its weights are unchanged in today's ``fingerprints/mj``.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest
import torch

from dif.artifact import METADATA_FILE, SCHEMA_VERSION, WEIGHTS_FILE, load_fingerprint, save_fingerprint
from dif.decision import OperatingPoint
from dif.detector import Detector
from dif.errors import ArtifactError
from dif.extractors import create
from testkit.paths import REPO

SCHEMA1 = Path(__file__).parent / "data" / "schema1-metadata.json"


def old_artifact(root: Path, **changes: object) -> Path:
    folder = root / "mj"
    folder.mkdir(parents=True)
    shutil.copy(REPO / "fingerprints" / "mj" / WEIGHTS_FILE, folder / WEIGHTS_FILE)
    meta = json.loads(SCHEMA1.read_text())
    meta.update(changes)
    (folder / METADATA_FILE).write_text(json.dumps(meta))
    return folder


def test_a_schema_1_artifact_loads_with_a_derived_null_and_says_so(tmp_path: Path,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    assert json.loads(SCHEMA1.read_text())["schema_version"] == 1 and "null" not in json.loads(SCHEMA1.read_text())
    with caplog.at_level(logging.WARNING, logger="dif.artifact"):
        fp = load_fingerprint(old_artifact(tmp_path))
    assert "schema 1" in caplog.text and "re-derived" in caplog.text
    null = fp.null_model
    assert (null.scale, null.sign) == (1.0, 1.0) and "derived" in null.method
    # It is served with today's rule: p-values, a verdict, nothing from the old midpoint rule.
    detector = Detector([fp], create(fp.extractor_key), "cpu")
    image = torch.rand((3, 300, 300), generator=torch.Generator().manual_seed(0))
    verdict = detector.predict([detector.prepare(image)], OperatingPoint()).images[0]
    assert 0.0 <= verdict.generators[0].p_value <= 1.0 and verdict.verdict in ("real", "inconclusive")


def test_orientation_comes_from_the_old_centres(tmp_path: Path) -> None:
    meta = json.loads(SCHEMA1.read_text())
    flipped = {**meta["calibration"], "real_centre": 0.02, "fake_centre": -0.01}
    assert load_fingerprint(old_artifact(tmp_path, calibration=flipped)).null_model.sign == -1.0


def test_saving_a_migrated_artifact_writes_the_current_schema(tmp_path: Path) -> None:
    fp = load_fingerprint(old_artifact(tmp_path / "old"))
    out = save_fingerprint(fp, tmp_path / "new" / "mj")
    meta = json.loads((out / METADATA_FILE).read_text())
    assert meta["schema_version"] == SCHEMA_VERSION == 3 and meta["null"]["scale"] == 1.0
    assert load_fingerprint(out).null_model == fp.null_model


@pytest.mark.parametrize("null", [None, "wide", {"scale": 0.5}, {"scale": 1.2, "sign": 3}, {"scale": "nan"}])
def test_a_schema_2_artifact_needs_a_valid_null(tmp_path: Path, null: object) -> None:
    folder = old_artifact(tmp_path, schema_version=2)
    meta = json.loads((folder / METADATA_FILE).read_text())
    if null is None:
        meta.pop("null", None)
    else:
        meta["null"] = null
    (folder / METADATA_FILE).write_text(json.dumps(meta))
    with pytest.raises(ArtifactError, match="null"):
        load_fingerprint(folder)


def test_the_embedded_set_is_current_and_records_what_it_catches() -> None:
    for folder in sorted((REPO / "fingerprints").iterdir()):
        meta = json.loads((folder / METADATA_FILE).read_text())
        assert meta["schema_version"] == 3, folder
        crossval = meta["metrics"]["crossval"]
        assert set(crossval["tpr_at_fpr"]) == {"0.01", "0.05"}
        # Half of CBSD68 widens the null, the other half measures its FPR: never the same photo.
        null_photos = meta["samples"]["null_only_real"]
        assert crossval["n_unseen_reals"] >= 30 and crossval["n_unseen_reals"] + null_photos == 68
        assert len(set(meta["provenance"]["null_real_sha256"])) == null_photos
        assert len(crossval["heldout_fake_p"]) == crossval["n_fake"]


def test_a_schema_2_artifact_loads_without_a_grid_cosine_gate(tmp_path: Path) -> None:
    # Schema 3 added detection.lattice / min_cosine; a schema 2 artifact never had a gated search.
    folder = old_artifact(tmp_path, schema_version=2, null={"scale": 1.3, "sign": 1.0},
                          detection={"feature": "zbg", "backstop_window": 0})
    fp = load_fingerprint(folder)
    assert fp.schema_version == 2 and fp.detection.lattice == 0 and not fp.detection.gated


def test_a_lattice_without_a_floor_loads_with_its_zero_shift_test_unfloored(tmp_path: Path) -> None:
    # floor_cosine came after schema 3's gate: an artifact without it keeps the zero-shift test as it was.
    detection = {"feature": "zbg", "backstop_window": 4, "lattice": 8, "min_cosine": 0.4}
    fp = load_fingerprint(old_artifact(tmp_path / "a", schema_version=3, null={"scale": 1.3}, detection=detection))
    assert fp.detection.gated and not fp.detection.floored and fp.detection.floor_cosine == 0.0
    with pytest.raises(ArtifactError, match="floor_cosine"):
        load_fingerprint(old_artifact(tmp_path / "b", schema_version=3, null={"scale": 1.3},
                                      detection={**detection, "floor_cosine": 0.5}))


def test_a_newer_schema_is_refused_with_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match="re-export"):
        load_fingerprint(old_artifact(tmp_path, schema_version=SCHEMA_VERSION + 1, null={"scale": 1.0}))

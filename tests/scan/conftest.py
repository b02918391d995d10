"""Fixtures for dif detect / dif scan: a collection built at test time, one local Ray, one service.

The collection holds real photos (JPEG) and real generator outputs (PNG) from ../shared, a real
photo signed at test time with a C2PA manifest that declares it AI-generated, and three files
no scanner can score: a PNG cut in half, a text file and an image smaller than a crop. Ray is
started once per session (its start-up is most of a small scan's time) with the 2 CPUs of the
development machine, and only by the tests that ask for it.
"""

from __future__ import annotations

import contextlib
import io
import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from dif.fingerprint_set import EMBEDDED_FINGERPRINTS
from dif_cli import main
from testkit.c2pa import AI, make_ca, manifest, sign
from testkit.paths import LTIM
from testkit.servers import ThreadServer, make_settings

# name in the collection -> source under ../shared/data/ltim (real photos are JPEGs named .png)
IMAGES = {
    "photos/street.png": "mj/0_real/img_415579.png",
    "photos/portrait.png": "sd14/0_real/img_202957.png",
    "fakes/mj.png": "mj/1_fake/img_img_990849408058933258.png",
    "fakes/sd14.png": "sd14/1_fake/img_1134171.png",
    "fakes/more/dalle_2.png": "dalle_2/1_fake/img_205082.png",
}
SIGNED = "photos/signed-ai.jpg"  # a real photo whose C2PA manifest says trainedAlgorithmicMedia
SIGNED_SOURCE = "glide/0_real/img_3233.png"
BROKEN = {"bad/truncated.png": "corrupt_image", "bad/notes.txt": "unsupported_media_type",
          "bad/tiny.png": "image_too_small"}


@dataclass(frozen=True)
class Collection:
    root: Path
    anchors: Path  # PEM of the CA that signed SIGNED

    def path(self, name: str) -> str:
        return str(self.root / name)

    @property
    def scorable(self) -> list[str]:
        return [*IMAGES, SIGNED]


@pytest.fixture(scope="session")
def collection(tmp_path_factory: pytest.TempPathFactory) -> Collection:
    root = tmp_path_factory.mktemp("collection")
    for name, source in IMAGES.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(LTIM / source, root / name)
    ca = make_ca("DIF Scan")
    (root / SIGNED).write_bytes(sign(ca, (LTIM / SIGNED_SOURCE).read_bytes(), "image/jpeg",
                                     manifest(AI, agent="Example Diffusion 3")))
    (root / "bad").mkdir()
    whole = (LTIM / IMAGES["fakes/sd14.png"]).read_bytes()
    (root / "bad/truncated.png").write_bytes(whole[: len(whole) // 2])
    (root / "bad/notes.txt").write_text("captions for the archive, not an image\n")
    small = io.BytesIO()
    Image.open(LTIM / IMAGES["fakes/mj.png"]).crop((0, 0, 64, 64)).save(small, "PNG")
    (root / "bad/tiny.png").write_bytes(small.getvalue())
    anchors = tmp_path_factory.mktemp("anchors") / "anchors.pem"
    anchors.write_text(ca.ca_pem)
    return Collection(root, anchors)


@pytest.fixture(scope="session")
def ray_session() -> Iterator[None]:
    """One local Ray for every scan test: `dif scan` joins a Ray this process already holds."""
    import ray  # imported here, not skipped: without the `scan` extra these tests fail, they never skip

    # "local": a fresh instance even if another engineer's `ray start` runs on this machine.
    ray.init(address="local", num_cpus=2, include_dashboard=False, object_store_memory=256 * 1024 * 1024,
             logging_level="warning")
    ray.data.DataContext.get_current().enable_progress_bars = False
    yield
    ray.shutdown()


@pytest.fixture(scope="session")
def service_results(collection: Collection) -> dict[str, dict[str, Any]]:
    """POST /detect's answer for every scorable file of the collection, by name (embedded set, default rate)."""
    server = ThreadServer(make_settings(EMBEDDED_FINGERPRINTS, c2pa_trust_anchors=collection.anchors))
    server.start()
    try:
        files = [("files", (name, (collection.root / name).read_bytes())) for name in collection.scorable]
        response = httpx.post(f"{server.url}/detect", files=files, timeout=120)
    finally:
        server.stop()
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    return {r["filename"]: r for r in results}


def run_captured(argv: list[str]) -> tuple[int, str, str]:
    """``dif ARGV`` in this process, for fixtures wider than a test (capsys is per test)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """``dif ARGV`` in this process (so `dif scan` uses the session's Ray): exit code, stdout, stderr."""
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def detect_rows(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, list[dict[str, Any]], str]:
    code, out, err = run_cli(["detect", "--json", "--no-progress", *argv], capsys)
    return code, [json.loads(line) for line in out.splitlines()], err


def relative(rows: list[dict[str, Any]], root: Path) -> dict[str, dict[str, Any]]:
    """Rows by their path relative to ``root`` (each path exactly once)."""
    named = {str(Path(r["path"]).relative_to(root)): r for r in rows}
    assert len(named) == len(rows), "a file has more than one row"
    return named


def assert_same_as_service(row: dict[str, Any], answer: dict[str, Any], tolerance: float = 1e-5) -> None:
    """The row of a scanner against POST /detect's answer for the same file."""
    service = {s["generator"]: s for s in answer["scores"]}
    for name, scored in service.items():
        assert abs(row[f"p_value_{name}"] - scored["p_value"]) <= tolerance, (name, row["path"])
        assert abs(row[f"score_{name}"] - scored["score"]) <= tolerance, (name, row["path"])
    assert abs(row["p_value"] - answer["p_value"]) <= tolerance
    assert row["rate"] == answer["false_positive_rate"]
    assert (row["width"], row["height"], row["crops"]) == (answer["width"], answer["height"], answer["crops"])
    provenance = answer["provenance"]
    assert (row["c2pa_state"], row["c2pa_trust"]) == (provenance["c2pa"]["state"], provenance["c2pa"]["trust"])
    assert (row["declared_ai"], row["declared_generator"], row["declared_by"]) == (
        provenance["declared_ai"], provenance["declared_generator"], provenance["declared_by"])
    assert (row["provenance_validated"], row["provenance_decisive"]) == (provenance["validated"],
                                                                         provenance["decisive"])
    # One rule (dif.verdict): a trusted C2PA AI declaration makes the row fake as it makes the answer fake.
    assert (row["verdict"], row["evidence"], row["top"], row["candidates"]) == (
        answer["verdict"], answer["evidence"], answer["top"], answer["candidates"])

"""``POST /lineage`` and ``GET /lineage/matrix`` against a real uvicorn server serving the reference set."""

from __future__ import annotations

import io
import json
import os
import pickle
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import torch
from PIL import Image
from safetensors.torch import save

from dif.artifact import METADATA_FILE, WEIGHTS_FILE, Fingerprint, load_fingerprint, save_fingerprint
from dif.calibration import Calibration
from dif.extractors import create
from dif_cli import main
from testkit.archives import tar_of, zip_of
from testkit.servers import ThreadServer, make_settings

from .render_checks import colour_scale_length


@pytest.fixture(scope="module")
def server(reference_artifacts: Path) -> Iterator[ThreadServer]:
    srv = ThreadServer(make_settings(reference_artifacts, max_upload_bytes=4 * 1024 * 1024))
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def files(reference_artifacts: Path) -> dict[str, dict[str, bytes]]:
    """Each reference artifact's two files."""
    return {p.name: {n: (p / n).read_bytes() for n in (WEIGHTS_FILE, METADATA_FILE)}
            for p in reference_artifacts.iterdir()}


def artifact_bytes(fp: Fingerprint, tmp: Path) -> dict[str, bytes]:
    folder = save_fingerprint(fp, tmp / fp.name)
    return {n: (folder / n).read_bytes() for n in (WEIGHTS_FILE, METADATA_FILE)}


def post(server: ThreadServer, **kwargs) -> httpx.Response:
    return httpx.post(f"{server.url}/lineage", timeout=60, **kwargs)


def assert_error(response: httpx.Response, status: int, code: str | None = None, text: str = "") -> None:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["message"] and (code is None or error["code"] == code), error
    assert text.lower() in error["message"].lower(), error


# --- loaded generators by name -------------------------------------------------------------------

def test_two_loaded_generators_by_name(server: ThreadServer) -> None:
    response = post(server, json={"a": "mj", "b": "sd14"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["related"] is True and body["statistic"] == "peak_correlation_z"
    assert body["similarity"] >= body["threshold"] and body["shift"] == [0, 0]
    assert body["population"] == 12 and body["null"]["pairs"] == 66
    assert post(server, json={"a": "biggan", "b": "glide"}).json()["related"] is False


def test_same_answer_as_the_cli(server: ThreadServer, reference_artifacts: Path, capsys) -> None:
    assert main(["lineage", str(reference_artifacts / "mj"), str(reference_artifacts / "sd14"), "--json"]) == 0
    cli = json.loads(capsys.readouterr().out)
    api = post(server, json={"a": "mj", "b": "sd14"}).json()
    for key in ("similarity", "p_value", "correlation"):
        assert api[key] == pytest.approx(cli[key], rel=1e-3), key
    for key in ("related", "shift", "statistic", "hypothesis"):
        assert api[key] == cli[key], key


def test_bad_json_requests(server: ThreadServer) -> None:
    assert_error(post(server, json={"a": "mj", "b": "nobody"}), 404, "generator_not_found", "nobody")
    assert_error(post(server, json={"a": "mj"}), 422, "missing_file", '"b"')
    assert_error(post(server, content=b"{not json", headers={"content-type": "application/json"}), 400)
    assert_error(post(server, content=b"a=mj", headers={"content-type": "text/plain"}), 415,
                 "unsupported_media_type")


# --- uploads -------------------------------------------------------------------------------------

def test_uploaded_zip_against_a_loaded_generator(server: ThreadServer, files: dict[str, dict[str, bytes]]) -> None:
    archive = zip_of({f"mj/{n}": d for n, d in files["mj"].items()})
    response = post(server, files={"a": ("mj.zip", archive, "application/zip")}, data={"b": "sd14"})
    assert response.status_code == 200, response.text
    assert response.json()["related"] is True


def test_uploaded_shifted_child_against_its_loaded_parent(server: ThreadServer, reference_artifacts: Path,
                                                          tmp_path: Path) -> None:
    """A child whose pattern is SD1.4's moved by (2, -1) pixels, plus its own noise, sent as a tar.gz."""
    parent = load_fingerprint(reference_artifacts / "sd14")
    noise = torch.randn(parent.tensor.shape, generator=torch.Generator().manual_seed(0)) * parent.tensor.std()
    child = Fingerprint(name="sd14-child", tensor=(parent.tensor.roll((2, -1), dims=(-2, -1)) + noise).contiguous(),
                        calibration=parent.calibration, extractor=parent.extractor)
    archive = tar_of({f"sd14-child/{n}": d for n, d in artifact_bytes(child, tmp_path).items()}, "w:gz")
    response = post(server, data={"a": "sd14"}, files={"b": ("child.tar.gz", archive, "application/gzip")})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["related"] is True and body["shift"] == [2, -1] and body["hypothesis"] == "shifted"
    assert body["b"] == "sd14-child"


@pytest.mark.parametrize("command", [["tar", "czf", "{out}.tar.gz", "."], ["zip", "-qr", "{out}.zip", "."]])
def test_archive_made_from_inside_the_artifact_folder(server: ThreadServer, reference_artifacts: Path,
                                                      tmp_path: Path, command: list[str]) -> None:
    """README's `cd mj && tar czf ../mj.tar.gz .` (members ``./``, ``./metadata.json``...) and its zip twin."""
    if shutil.which(command[0]) is None:
        pytest.skip(f"`{command[0]}` is not installed")
    out = Path(command[2].format(out=tmp_path / "mj"))
    subprocess.run([command[0], command[1], str(out), *command[3:]], cwd=reference_artifacts / "mj", check=True)
    response = post(server, files={"a": (out.name, out.read_bytes())}, data={"b": "sd14"})
    assert response.status_code == 200, response.text
    assert response.json()["a"] == "mj" and response.json()["related"] is True


def test_two_uploads_compared_with_each_other(server: ThreadServer, files: dict[str, dict[str, bytes]]) -> None:
    response = post(server, files={
        "a_weights": ("fingerprint.safetensors", files["sd14"][WEIGHTS_FILE]),
        "a_metadata": ("metadata.json", files["sd14"][METADATA_FILE]),
        "b": ("mj.tar.gz", tar_of(files["mj"], "w:gz")),
    })
    assert response.status_code == 200, response.text
    assert response.json()["a"] == "sd14" and response.json()["related"] is True


def _metadata(files: dict[str, dict[str, bytes]], **changes) -> bytes:
    meta = json.loads(files["glide"][METADATA_FILE])
    meta.update(changes)
    return json.dumps(meta).encode()


class Payload:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malformed_uploads_are_4xx_never_500(server: ThreadServer, files: dict[str, dict[str, bytes]],
                                             tmp_path: Path) -> None:
    good_w, good_m = files["glide"][WEIGHTS_FILE], files["glide"][METADATA_FILE]
    marker = tmp_path / "pwned"
    small = Fingerprint(name="small", tensor=torch.randn(3, 32, 32), calibration=Calibration(0, 1, 0.1, 0.1),
                        extractor=create("signlap@1").describe())
    cases: list[tuple[str, dict, int, str]] = [
        ("wrong shape", {"a_weights": save({"fingerprint": torch.randn(3, 32, 32)}), "a_metadata": good_m},
         422, "shape"),
        ("NaN", {"a_weights": save({"fingerprint": torch.full((3, 256, 256), float("nan"))}),
                 "a_metadata": good_m}, 422, "NaN"),
        ("metadata not JSON", {"a_weights": good_w, "a_metadata": b"{oops"}, 422, "not valid JSON"),
        ("metadata lacks keys", {"a_weights": good_w, "a_metadata": b'{"name": "x"}'}, 422, "lacks"),
        ("metadata wrong type", {"a_weights": good_w,
                                 "a_metadata": _metadata(files, detection={"max_shift": "abc"})}, 422, "wrong type"),
        ("a pickle", {"a_weights": pickle.dumps({"fingerprint": Payload(marker)}), "a_metadata": good_m},
         422, "safetensors"),
        ("metadata missing", {"a_weights": good_w}, 422, "missing"),
        ("path traversal", {"a": zip_of({f"../{WEIGHTS_FILE}": good_w, METADATA_FILE: good_m})}, 422, "traversal"),
        ("absolute path", {"a": tar_of({f"/tmp/{WEIGHTS_FILE}": good_w, f"/tmp/{METADATA_FILE}": good_m}, "w:gz")},
         422, "absolute"),
        ("extra file", {"a": zip_of({WEIGHTS_FILE: good_w, METADATA_FILE: good_m, "run.sh": b"rm -rf /"})},
         422, "unexpected file"),
        ("zip bomb", {"a": zip_of({WEIGHTS_FILE: good_w, METADATA_FILE: b" " * 60_000_000})}, 413, "bomb"),
        ("not an archive", {"a": b"hello, I am a text file"}, 422, "neither a zip nor a tar"),
        ("other crop size", {"a": zip_of(artifact_bytes(small, tmp_path))}, 422, "crop size 32"),
    ]
    for label, fields, status, text in cases:
        multipart = {k: (k, v) for k, v in fields.items()}
        response = post(server, files=multipart, data={"b": "mj"})
        assert response.status_code == status, (label, response.text)
        assert text.lower() in response.json()["error"]["message"].lower(), (label, response.json())
    assert not marker.exists()
    assert_error(post(server, data={"a": "nobody"}, files={"b": ("x", b"x")}), 404, "generator_not_found")


def test_upload_over_the_body_limit(server: ThreadServer) -> None:
    response = post(server, files={"a": ("big.zip", b"\0" * (5 * 1024 * 1024))}, data={"b": "mj"})
    assert_error(response, 413)


# --- the matrix ----------------------------------------------------------------------------------

def test_matrix_as_json_and_png(server: ThreadServer) -> None:
    response = httpx.get(f"{server.url}/lineage/matrix", timeout=60)
    assert response.status_code == 200 and response.headers["content-type"].startswith("application/json")
    body = response.json()
    names = body["names"]
    assert len(names) == 12 and len(body["pairs"]) == 66
    row = body["similarity"][names.index("mj")]
    best = max((v, n) for v, n in zip(row, names, strict=True) if v is not None)[1]
    assert best == "sd14"

    png = httpx.get(f"{server.url}/lineage/matrix", headers={"Accept": "image/png"}, timeout=60)
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    assert png.content[:8] == b"\x89PNG\r\n\x1a\n"
    assert colour_scale_length(Image.open(io.BytesIO(png.content)), "RdBu_r") >= 150
    prefers_json = httpx.get(f"{server.url}/lineage/matrix",
                             headers={"Accept": "application/json, image/png;q=0.5"}, timeout=60)
    assert prefers_json.headers["content-type"].startswith("application/json")


def test_matrix_png_is_the_cli_one(server: ThreadServer, reference_artifacts: Path, tmp_path: Path, capsys) -> None:
    """One drawing for both: `dif lineage-matrix --png` of the served set gives the same picture."""
    png = httpx.get(f"{server.url}/lineage/matrix", headers={"Accept": "image/png"}, timeout=60).content
    assert main(["lineage-matrix", str(reference_artifacts), "--png", str(tmp_path / "m.png")]) == 0
    capsys.readouterr()
    with Image.open(io.BytesIO(png)) as served, Image.open(tmp_path / "m.png") as written:
        assert served.size == written.size and served.tobytes() == written.tobytes()


@pytest.mark.parametrize(("kind", "cmap"), [("fingerprint", "RdBu_r"), ("spectrum", "magma")])
def test_generator_pngs_have_a_colour_scale(server: ThreadServer, kind: str, cmap: str) -> None:
    response = httpx.get(f"{server.url}/generators/mj/{kind}.png", timeout=60)
    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    assert colour_scale_length(Image.open(io.BytesIO(response.content)), cmap) >= 150


# --- small sets and authentication ---------------------------------------------------------------

def _small_set(root: Path, count: int) -> Path:
    for k in range(count):
        tensor = torch.randn(3, 32, 32, generator=torch.Generator().manual_seed(k))
        fp = Fingerprint(name=f"g{k}", tensor=tensor, calibration=Calibration(0, 1, 0.1, 0.1),
                         extractor=create("signlap@1").describe())
        save_fingerprint(fp, root / fp.name)
    return root


def test_too_few_loaded_generators_is_a_clear_422(tmp_path: Path) -> None:
    srv = ThreadServer(make_settings(_small_set(tmp_path / "four", 4))).start()
    try:
        assert_error(post(srv, json={"a": "g0", "b": "g1"}), 422, "lineage_unavailable", "at least 5")
        assert_error(httpx.get(f"{srv.url}/lineage/matrix", timeout=60), 422, "lineage_unavailable")
    finally:
        srv.stop()


def test_api_key_is_required_when_set(tmp_path: Path) -> None:
    srv = ThreadServer(make_settings(_small_set(tmp_path / "five", 5), api_key="secret")).start()
    try:
        assert_error(post(srv, json={"a": "g0", "b": "g1"}), 401, "unauthorized")
        ok = post(srv, json={"a": "g0", "b": "g1"}, headers={"X-API-Key": "secret"})
        assert ok.status_code == 200 and ok.json()["population"] == 5
    finally:
        srv.stop()

"""Hostile artifacts end to end: uploads to ``POST /lineage`` of a real ``python -m app``, and the
``dif import-reference`` command run as a user would.

The unit tests of ``dif.archive`` (tests/lineage/test_archive.py) and of the importer
(tests/importer) prove each refusal in-process; these prove the deployed paths: the
server answers a clear 4xx JSON, never runs a pickle (a marker file it would create
never appears), never writes a file (its cwd, TMPDIR and fingerprint folder are
unchanged), stays ready, and does not inflate a bomb (peak RSS and time stay small).
"""

from __future__ import annotations

import subprocess
import sys
import tarfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import torch

from dif.artifact import METADATA_FILE, WEIGHTS_FILE, save_fingerprint
from testkit.archives import tar_of, zip_of
from testkit.fingerprints import make_fingerprint
from testkit.paths import REPO
from tests.service.support import error_of

from .bombs import (
    GIB,
    MIB,
    evil_pickle,
    evil_torch_save,
    global_opcode_pickle,
    safetensors_claiming,
    tar_gz_bomb,
    zip_bomb,
)
from .conftest import SandboxedServer, snapshot

# A request may legitimately hold one artifact file (at most 64 MiB) in memory, and zipfile
# holds up to ~2.5 copies while assembling it: the lying-headers bomb (60 MiB declared) peaks
# at +124..+158 MiB. Inflating any of these bombs would cost 1-2 GiB. 300 MiB separates the two.
PEAK_RSS_LIMIT = 300 * MIB
# Refusals happen on headers, in milliseconds; a loaded CI runner gets generous slack, still far
# below the 7-11 s it takes this machine to inflate one GiB.
SECONDS_LIMIT = 3.0


@dataclass(frozen=True)
class Upload:
    name: str
    files: list[tuple[str, tuple[str, bytes]]]
    status: int
    code: str


@pytest.fixture
def server(abuse_server: SandboxedServer) -> SandboxedServer:
    return abuse_server


@pytest.fixture(scope="module")
def artifact(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    folder = save_fingerprint(make_fingerprint("upload", 42), tmp_path_factory.mktemp("upload") / "upload")
    return {WEIGHTS_FILE: (folder / WEIGHTS_FILE).read_bytes(), METADATA_FILE: (folder / METADATA_FILE).read_bytes()}


@pytest.fixture(scope="module")
def marker(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The file a pickle payload would create: it must never exist."""
    return tmp_path_factory.mktemp("marker") / "pwned"


def side_a(filename: str, data: bytes) -> list[tuple[str, tuple[str, bytes]]]:
    return [("a", (filename, data)), ("b", ("", b"g1"))]


def uploads(artifact: dict[str, bytes], marker: Path) -> list[Upload]:
    weights, meta = artifact[WEIGHTS_FILE], artifact[METADATA_FILE]
    m = str(marker)
    bad, big = "invalid_archive", "archive_too_large"
    return [
        # pickles, however they arrive
        Upload("pickle-as-pt", side_a("evil.pt", evil_pickle(m)), 422, bad),
        Upload("torch-save-zip", side_a("chk_0.pt", evil_torch_save(m)), 422, bad),
        Upload("pickle-as-weights-in-zip", side_a("a.zip", zip_of({WEIGHTS_FILE: evil_pickle(m),
                                                                   METADATA_FILE: meta})), 422, "invalid_artifact"),
        Upload("pickle-as-weights-field", [("a_weights", ("w.safetensors", global_opcode_pickle(m))),
                                           ("a_metadata", ("metadata.json", meta)), ("b", ("", b"g1"))],
               422, "invalid_artifact"),
        # members that would land outside the folder, or be links
        Upload("zip-symlink", side_a("a.zip", zip_of({WEIGHTS_FILE: weights},
                                                     symlinks={METADATA_FILE: "/etc/passwd"})), 422, bad),
        Upload("tar-symlink", side_a("a.tar", tar_of({WEIGHTS_FILE: weights},
                                                     links={METADATA_FILE: (tarfile.SYMTYPE, "/etc/passwd")})),
               422, bad),
        Upload("tar-hardlink", side_a("a.tar", tar_of({WEIGHTS_FILE: weights},
                                                      links={METADATA_FILE: (tarfile.LNKTYPE, "/etc/passwd")})),
               422, bad),
        Upload("zip-traversal", side_a("a.zip", zip_of({f"../{WEIGHTS_FILE}": weights, METADATA_FILE: meta})),
               422, bad),
        Upload("tar-traversal", side_a("a.tgz", tar_of({WEIGHTS_FILE: weights,
                                                        f"up/../../{METADATA_FILE}": meta}, "w:gz")), 422, bad),
        Upload("zip-absolute", side_a("a.zip", zip_of({f"/tmp/x/{WEIGHTS_FILE}": weights,
                                                       f"/tmp/x/{METADATA_FILE}": meta})), 422, bad),
        Upload("tar-absolute", side_a("a.tar", tar_of({f"/etc/{WEIGHTS_FILE}": weights,
                                                       f"/etc/{METADATA_FILE}": meta})), 422, bad),
        # bombs: a gigabyte (or two) of zeros in about a megabyte
        Upload("zip-bomb-1gib", side_a("a.zip", zip_bomb(WEIGHTS_FILE, GIB, others={METADATA_FILE: meta})),
               413, big),
        Upload("zip-bomb-1gib-lying-headers", side_a("a.zip", zip_bomb(WEIGHTS_FILE, GIB, declared=60 * MIB,
                                                                       others={METADATA_FILE: meta})), 422, bad),
        Upload("tar-gz-bomb-1gib", side_a("a.tgz", tar_gz_bomb(METADATA_FILE, GIB)), 413, big),
        Upload("tar-gz-bomb-2gib-junk", side_a("a.tgz", tar_gz_bomb("junk.bin", 2 * GIB)), 422, bad),
        # safetensors that lie about their tensor
        Upload("safetensors-claims-48gib", [("a_weights", ("w", safetensors_claiming([3, 65536, 65536]))),
                                            ("a_metadata", ("m", meta)), ("b", ("", b"g1"))],
               422, "invalid_artifact"),
        Upload("safetensors-huge-header", [("a_weights", ("w", b"\xff" * 8 + b"{}")),
                                           ("a_metadata", ("m", meta)), ("b", ("", b"g1"))],
               422, "invalid_artifact"),
    ]


class PeakRss:
    """Samples a process's RSS every few milliseconds while a request runs."""

    def __init__(self, server: SandboxedServer):
        self.server = server
        self.peak = server.rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, self.server.rss())

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


def test_a_good_upload_is_accepted(server: SandboxedServer, artifact: dict[str, bytes]) -> None:
    """The control: the same route takes a sound archive, so the refusals below are about the hostility."""
    for filename, data in (("a.zip", zip_of(artifact)), ("a.tgz", tar_of(artifact, "w:gz"))):
        response = httpx.post(f"{server.url}/lineage", files=side_a(filename, data), timeout=60)
        assert response.status_code == 200, response.text
        assert response.json()["a"] == "upload"


def test_hostile_uploads_are_refused_safely(server: SandboxedServer, abuse_fingerprints: Path,
                                            artifact: dict[str, bytes], marker: Path) -> None:
    assert server.cwd is not None and server.tmpdir is not None
    watched = (server.cwd, server.tmpdir, abuse_fingerprints, marker.parent)
    for upload in uploads(artifact, marker):
        before = snapshot(*watched)
        baseline = server.rss()
        started = time.monotonic()
        with PeakRss(server) as rss:
            response = httpx.post(f"{server.url}/lineage", files=upload.files, timeout=120)
        seconds = time.monotonic() - started
        assert (response.status_code, error_of(response)["code"]) == (upload.status, upload.code), \
            f"{upload.name}: {response.status_code} {response.text[:400]}"
        assert not marker.exists(), f"{upload.name}: the pickle ran"
        assert snapshot(*watched) == before, f"{upload.name}: a file was written"
        assert rss.peak - baseline < PEAK_RSS_LIMIT, f"{upload.name}: RSS +{(rss.peak - baseline) / MIB:.0f} MiB"
        assert seconds < SECONDS_LIMIT, f"{upload.name}: took {seconds:.1f}s"
        print(f"\n{upload.name}: {response.status_code} {upload.code} in {seconds * 1000:.0f} ms, "
              f"peak RSS +{(rss.peak - baseline) / MIB:.1f} MiB")
        server.assert_healthy(after=upload.name)


# -- the importer, run as the command a user types ----------------------------------------------------


def reference_folder(root: Path, checkpoint: bytes | None = None, hypers: bytes | None = None) -> Path:
    """A reference generator folder: a sound checkpoint and hyper-parameters unless replaced."""
    root.mkdir(parents=True)
    if checkpoint is None:
        torch.save({"Fingerprint": torch.randn(1, 3, 32, 32), "Train Real": [0.001 * i for i in range(30)],
                    "Train Fake": [0.05 + 0.001 * i for i in range(30)]}, root / "chk_0.pt")
    else:
        (root / "chk_0.pt").write_bytes(checkpoint)
    if hypers is not None:
        (root / "train_hypers.pt").write_bytes(hypers)
    return root


def import_reference(folder: Path, out: Path) -> subprocess.Popen[str]:
    """``dif import-reference`` in a fresh process (started, not waited for: torch's import is slow)."""
    return subprocess.Popen([sys.executable, "-m", "dif_cli", "import-reference", str(folder), "--out", str(out)],
                            cwd=folder.parent, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_import_reference_never_runs_a_pickle(tmp_path: Path) -> None:
    """A sound folder's import is tested in tests/importer; here the hostile ones, as separate processes."""
    marker = tmp_path / "pwned"
    folders = {
        "checkpoint": reference_folder(tmp_path / "evil-checkpoint", checkpoint=evil_torch_save(str(marker))),
        "hypers": reference_folder(tmp_path / "evil-hypers", hypers=global_opcode_pickle(str(marker))),
    }
    before = snapshot(*folders.values())
    runs = {kind: import_reference(folder, tmp_path / f"out-{kind}") for kind, folder in folders.items()}
    output = {kind: run.communicate(timeout=120)[0] for kind, run in runs.items()}
    assert runs["checkpoint"].returncode == 2 and "weights_only" in output["checkpoint"], output["checkpoint"]
    assert runs["hypers"].returncode == 2 and "refusing to unpickle posix.system" in output["hypers"], output["hypers"]
    assert not marker.exists()
    assert not (tmp_path / "out-checkpoint").exists() and not (tmp_path / "out-hypers").exists()
    assert snapshot(*folders.values()) == before

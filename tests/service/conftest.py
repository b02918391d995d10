"""Fixtures for the service tests (helpers live in ``support.py``)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from testkit.fingerprints import write_artifacts
from testkit.images import sample_paths
from testkit.servers import AppProcess, ScorerProbe, ThreadServer, make_settings

from .support import GENERATORS


@pytest.fixture(scope="session")
def fingerprints_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_artifacts(tmp_path_factory.mktemp("fingerprints"), GENERATORS)


@pytest.fixture(scope="session")
def sample_images() -> list[Path]:
    """Real generator outputs and real photos from the shared data (PNG and JPEG, several sizes)."""
    paths = sample_paths()
    assert len(paths) >= 20, f"expected sample images, found {len(paths)}"
    return paths


@pytest.fixture(scope="session")
def png_512(sample_images: list[Path]) -> bytes:
    for path in sample_images:
        with Image.open(path) as im:
            if im.format == "PNG" and im.size == (512, 512):
                return path.read_bytes()
    pytest.fail("no 512x512 PNG in the shared data")


@pytest.fixture(scope="session")
def image_blobs(sample_images: list[Path]) -> list[tuple[str, bytes]]:
    return [(p.name, p.read_bytes()) for p in sample_images]


@pytest.fixture(autouse=True)
def _no_dif_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings come from each test, never from the developer's or CI's DIF_* variables."""
    for key in list(os.environ):
        if key.startswith("DIF_"):
            monkeypatch.delenv(key)


@pytest.fixture
def serve(fingerprints_dir: Path) -> Iterator[Callable[..., ThreadServer]]:
    """Factory: ``serve(max_batch_size=1, ...)`` starts a server with those settings; all stop after the test."""
    started: list[ThreadServer] = []

    def start(fingerprints: Path | None = None, wait_ready: bool = True,
              before_start: Callable[[ThreadServer], None] | None = None, **overrides: Any) -> ThreadServer:
        server = ThreadServer(make_settings(fingerprints or fingerprints_dir, **overrides))
        started.append(server)
        if before_start is not None:
            before_start(server)
        return server.start(wait_ready=wait_ready)

    yield start
    for server in started:
        server.stop()


@pytest.fixture(scope="module")
def shared_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThreadServer]:
    """One server for the read-only tests of a module (3 generators, small limits)."""
    root = write_artifacts(tmp_path_factory.mktemp("shared-fingerprints"), GENERATORS)
    server = ThreadServer(make_settings(root, max_upload_bytes=2 * 1024 * 1024, max_files_per_request=4))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def probe_into() -> Iterator[Callable[[ThreadServer], ScorerProbe]]:
    """``probe_into(server)`` swaps a ScorerProbe into the live set; the gate is reopened at teardown."""
    probes: list[ScorerProbe] = []

    def install(server: ThreadServer) -> ScorerProbe:
        probe = ScorerProbe.install(server)
        probes.append(probe)
        return probe

    yield install
    for probe in probes:
        probe.failure = None
        probe.gate.set()


@pytest.fixture
def process_server(tmp_path: Path, fingerprints_dir: Path) -> Iterator[Callable[..., AppProcess]]:
    started: list[AppProcess] = []

    def start(**env: str) -> AppProcess:
        server = AppProcess({"DIF_FINGERPRINTS_DIR": str(fingerprints_dir), **env},
                            tmp_path / f"server-{len(started) + 1}.log")
        started.append(server)
        return server.start()

    yield start
    for server in started:
        server.kill()


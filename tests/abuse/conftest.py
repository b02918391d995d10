"""Fixtures for the abuse tests: ``python -m app`` subprocesses in a sandbox of their own.

Each server runs with a fresh working directory and TMPDIR, so a test can prove
that hostile uploads leave no file behind, and is a separate process, so its RSS
(psutil) measures the service alone, not pytest.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil
import pytest

from tests.service.support import REPO, SHARED_DATA, ProcessServer, wait_until, write_artifacts

MIB = 1024 * 1024


@dataclass
class SandboxedServer(ProcessServer):
    """A ``ProcessServer`` whose cwd and TMPDIR are empty folders the test owns."""

    cwd: Path | None = None
    tmpdir: Path | None = None

    def start(self, log_path: Path) -> SandboxedServer:
        assert self.cwd is not None and self.tmpdir is not None
        self.log_path = log_path
        # The developer's or CI's DIF_* variables never reach the server: each test sets its own.
        inherited = {k: v for k, v in os.environ.items() if not k.startswith("DIF_")}
        env = {**inherited, **self.env, "PYTHONPATH": str(REPO), "DIF_TORCH_THREADS": "1",
               "TMPDIR": str(self.tmpdir)}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "app", "--host", "127.0.0.1", "--port", str(self.port)],
            cwd=self.cwd, env=env, stdout=log_path.open("wb"), stderr=subprocess.STDOUT,
        )
        wait_until(self._ready, 90, "subprocess server never became ready", self.log)
        return self

    def rss(self) -> int:
        assert self.proc is not None
        return int(psutil.Process(self.proc.pid).memory_info().rss)

    def assert_healthy(self, after: str) -> None:
        """Alive and ready: one hostile request must not take the replica out of rotation."""
        assert self.proc is not None
        assert self.proc.poll() is None, f"server died after {after}:\n{self.log()[-4000:]}"
        ready = httpx.get(f"{self.url}/readyz", timeout=10)
        assert ready.status_code == 200, f"not ready after {after}: {ready.text}"


def snapshot(*folders: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``folders`` with its size and mtime: any write shows up as a difference."""
    found: dict[str, tuple[int, int]] = {}
    for folder in folders:
        for path in folder.rglob("*"):
            stat = path.lstat()
            found[str(path)] = (stat.st_size, stat.st_mtime_ns)
    return found


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.fail(f"{SHARED_DATA} is missing: the abuse tests need ../shared beside the repository")
    return SHARED_DATA


# Lineage needs five loaded generators to calibrate; with fewer its success path is unreachable.
GENERATOR_NAMES = ("g1", "g2", "g3", "g4", "g5")
# Small enough that the corpus' "just under the limit" image (2000x2000, 48 MB as float32) keeps
# RSS measurements meaningful; the header guard is the same code at any limit.
MAX_PIXELS = 4_000_000


@pytest.fixture(scope="session")
def abuse_fingerprints(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_artifacts(tmp_path_factory.mktemp("abuse-fingerprints"), GENERATOR_NAMES)


@pytest.fixture(scope="session")
def sandboxed_server(tmp_path_factory: pytest.TempPathFactory, abuse_fingerprints: Path
                     ) -> Iterator[Callable[..., SandboxedServer]]:
    """Factory: ``sandboxed_server(DIF_API_KEY="...")`` starts one; any still running is killed at the end."""
    started: list[SandboxedServer] = []

    def start(**env: str) -> SandboxedServer:
        root = tmp_path_factory.mktemp("sandbox")
        (root / "cwd").mkdir()
        (root / "tmp").mkdir()
        settings = {"DIF_FINGERPRINTS_DIR": str(abuse_fingerprints), "DIF_DEVICE": "cpu",
                    "DIF_LOG_LEVEL": "warning", "DIF_MAX_PIXELS": str(MAX_PIXELS),
                    "DIF_MAX_UPLOAD_BYTES": str(8 * MIB), **env}
        server = SandboxedServer(settings, cwd=root / "cwd", tmpdir=root / "tmp")
        started.append(server)
        return server.start(root / "server.log")

    yield start
    for server in started:
        server.kill()


@pytest.fixture(scope="session")
def abuse_server(sandboxed_server: Callable[..., SandboxedServer]) -> SandboxedServer:
    """One open (no API key) server shared by the abuse test files: each start costs ~10 s of CPU."""
    return sandboxed_server()

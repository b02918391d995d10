"""Fixtures for the abuse tests: ``python -m app`` subprocesses in a sandbox of their own.

Each server runs with a fresh working directory and TMPDIR, so a test can prove
that hostile uploads leave no file behind, and is a separate process, so its RSS
(psutil) measures the service alone, not pytest.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from testkit.fingerprints import write_artifacts
from testkit.paths import MIB
from testkit.servers import AppProcess


class SandboxedServer(AppProcess):
    """An ``AppProcess`` whose cwd and TMPDIR are empty folders the test owns."""

    @property
    def tmpdir(self) -> Path:
        return Path(self.env["TMPDIR"])

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
        # The developer's or CI's DIF_* variables never reach the server: each test sets its own.
        settings = {"DIF_FINGERPRINTS_DIR": str(abuse_fingerprints), "DIF_LOG_LEVEL": "warning",
                    "DIF_MAX_PIXELS": str(MAX_PIXELS), "DIF_MAX_UPLOAD_BYTES": str(8 * MIB),
                    "TMPDIR": str(root / "tmp"), **env}
        server = SandboxedServer(settings, root / "server.log", cwd=root / "cwd", inherit_dif=False)
        started.append(server)
        return server.start()

    yield start
    for server in started:
        server.kill()


@pytest.fixture(scope="session")
def abuse_server(sandboxed_server: Callable[..., SandboxedServer]) -> SandboxedServer:
    """One open (no API key) server shared by the abuse test files: each start costs ~10 s of CPU."""
    return sandboxed_server()

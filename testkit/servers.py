"""Real servers on real loopback ports: ``python -m app`` in a subprocess, or uvicorn in a thread.

A subprocess is what production runs (signals, its own RSS, its own cwd and TMPDIR); a thread
lets a test reach into the running service to hold or fail the model (``ScorerProbe``).
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import psutil

from .paths import MIB, REPO

if TYPE_CHECKING:  # the web stack is imported on use: the subprocess helpers need none of it
    from app.commands import GracefulServer
    from app.service import Service
    from app.settings import Settings

# What every started server gets unless the caller says otherwise: the CPU, and one torch thread so
# that the client (a test or a bench) keeps a core of a small machine.
SERVER_DEFAULTS = {"DIF_DEVICE": "cpu", "DIF_TORCH_THREADS": "1"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(condition: Callable[[], bool], timeout_s: float, message: str,
               details: Callable[[], str] | None = None, every_s: float = 0.05) -> None:
    """Poll ``condition`` (a refused connection counts as False) until it holds; AssertionError after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if condition():
                return
        except httpx.TransportError:
            pass
        time.sleep(every_s)
    raise AssertionError(f"{message} within {timeout_s}s" + (f"\n{details()}" if details else ""))


def is_ready(url: str) -> bool:
    """``/readyz`` answers 200 (the set is loaded and warm); False while it cannot be reached."""
    try:
        return httpx.get(f"{url}/readyz", timeout=2).status_code == 200
    except httpx.TransportError:
        return False


def wait_ready(url: str, timeout_s: float, proc: subprocess.Popen[bytes] | None = None,
               output: Callable[[], str] = str) -> None:
    """Until ``url`` is ready; a server process that exits meanwhile fails at once, with its output."""

    def ready() -> bool:
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"server exited with {proc.returncode}:\n{output()}")
        return is_ready(url)

    wait_until(ready, timeout_s, f"{url} never became ready", output, every_s=0.1)


def metric_value(text: str, name: str, **labels: str) -> float:
    """The sample ``name{labels}`` of a Prometheus exposition (0 when absent)."""
    for line in text.splitlines():
        if not line.startswith(name):
            continue
        match = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$", line)
        if not match or match.group(1) != name:
            continue
        found = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', match.group(3) or ""))
        if all(found.get(k) == v for k, v in labels.items()):
            return float(match.group(4))
    return 0.0


@dataclass
class AppProcess:
    """``python -m app`` on a free loopback port, configured by ``DIF_*`` variables in ``env``.

    ``inherit_dif=False`` keeps the caller's own ``DIF_*`` variables from reaching the server, so
    a developer's or CI's settings cannot change what a test or a bench measures. ``env`` may set
    anything else too (``TMPDIR`` for a sandbox).
    """

    env: Mapping[str, str]
    log_path: Path
    cwd: Path = REPO
    inherit_dif: bool = True
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, ready_timeout_s: float = 90.0) -> AppProcess:
        inherited = {k: v for k, v in os.environ.items() if self.inherit_dif or not k.startswith("DIF_")}
        env = {**inherited, **SERVER_DEFAULTS, **self.env, "PYTHONPATH": str(REPO)}
        self.proc = subprocess.Popen([sys.executable, "-m", "app", "--host", "127.0.0.1", "--port", str(self.port)],
                                     cwd=self.cwd, env=env, stdout=self.log_path.open("wb"), stderr=subprocess.STDOUT)
        try:
            wait_ready(self.url, ready_timeout_s, self.proc, self.log)
        except AssertionError:
            self.kill()
            raise
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def rss(self) -> int:
        assert self.proc is not None
        return int(psutil.Process(self.proc.pid).memory_info().rss)

    def rss_mib(self) -> float:
        return self.rss() / MIB

    def terminate(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)

    def stop(self, timeout_s: float = 60.0) -> None:
        """SIGTERM and wait for the drain; killed if it does not end within ``timeout_s``."""
        if self.proc is not None and self.proc.poll() is None:
            self.terminate()
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.kill()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


def run_app_to_exit(env: Mapping[str, str], argv: Sequence[str] = ("--host", "127.0.0.1", "--port", "0")
                    ) -> subprocess.CompletedProcess[str]:
    """``python -m app`` with only ``env`` (and a bare PATH), for a start-up that must fail: its exit and output."""
    return subprocess.run([sys.executable, "-m", "app", *argv], cwd=REPO, timeout=120, capture_output=True, text=True,
                          env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO), **env})


def start_app(env: Mapping[str, str], log_path: Path, inherit_dif: bool = True,
              ready_timeout_s: float = 120.0) -> AppProcess:
    """A started, ready, quiet ``python -m app`` (the benches' server: warnings only in its log)."""
    return AppProcess({"DIF_LOG_LEVEL": "warning", **env}, log_path, inherit_dif=inherit_dif).start(ready_timeout_s)


@dataclass
class ThreadServer:
    """A real uvicorn server for ``create_app(settings)`` in a background thread."""

    settings: Settings
    server: GracefulServer = field(init=False)
    service: Service = field(init=False)
    url: str = field(init=False)
    _thread: threading.Thread = field(init=False)

    def __post_init__(self) -> None:
        import uvicorn

        from app.commands import GracefulServer
        from app.main import create_app

        app = create_app(self.settings)
        self.service = app.state.service
        config = uvicorn.Config(app, log_level="warning", lifespan="on",
                                timeout_graceful_shutdown=int(self.settings.drain_timeout_s))
        self.server = GracefulServer(config, self.service)
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        self._thread = threading.Thread(target=self.server.run, kwargs={"sockets": [sock]}, daemon=True)

    def start(self, wait_ready: bool = True) -> ThreadServer:
        self._thread.start()
        wait_until(lambda: self.server.started, 30, "uvicorn did not start")
        if wait_ready:
            wait_until(lambda: is_ready(self.url), 30, "never became ready")
        return self

    def stop(self) -> None:
        self.service.begin_shutdown()
        self.server.should_exit = True
        self._thread.join(30)
        assert not self._thread.is_alive(), "server thread did not stop"

    def metrics(self) -> str:
        return httpx.get(f"{self.url}/metrics").text


def make_settings(fingerprints: Path, **overrides: Any) -> Settings:
    """Settings for a ThreadServer: small and quiet, one torch thread; ``overrides`` win."""
    from app.settings import Settings

    values: dict[str, Any] = {
        "fingerprints_dir": fingerprints, "device": "cpu", "torch_threads": 1, "decode_threads": 2,
        "max_wait_ms": 20, "log_level": "warning", "drain_timeout_s": 10,
    }
    values.update(overrides)
    return Settings(**values)


class ScorerProbe:
    """Stands in for a running detector's scorer: records batches, can hold them or fail them."""

    def __init__(self, inner: Any):
        self.inner = inner
        self.gate = threading.Event()
        self.gate.set()
        self.failure: Exception | None = None
        self.batches: list[int] = []

    def score(self, residuals: Any, groups: Any, count: int) -> Any:
        self.batches.append(count)
        failure = self.failure  # decided when the batch starts, so a held batch keeps its fate
        assert self.gate.wait(60), "probe gate never opened"
        if failure is not None:
            raise failure
        return self.inner.score(residuals, groups, count)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    @classmethod
    def install(cls, server: ThreadServer) -> ScorerProbe:
        """Swap a probe in for the live set's scorer."""
        detector = server.service.engine.current.detector
        probe = cls(detector.scorer)
        detector.scorer = probe  # type: ignore[assignment]
        return probe

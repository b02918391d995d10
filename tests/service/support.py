"""Helpers for the service tests: artifacts, odd images, real uvicorn servers, metric parsing.

Servers are real uvicorn instances on a loopback port: most run in a thread of the
test process (so a test can reach into the running service to inject a fault), the
lifecycle tests run `python -m app` as a subprocess and send it real signals.
"""

from __future__ import annotations

import io
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import httpx
import torch
import uvicorn
from PIL import Image

from app.commands import GracefulServer
from app.main import create_app
from app.service import Service
from app.settings import Settings
from dif.artifact import Detection, Fingerprint, save_fingerprint
from dif.calibration import Calibration
from dif.detector import Detector
from dif.extractors import create
from dif.images import decode_image

REPO = Path(__file__).resolve().parents[2]
SHARED_DATA = REPO.parent / "shared" / "data" / "ltim"
GENERATORS = ("alpha", "beta", "gamma")

# -- artifacts and images ---------------------------------------------------------------------


def make_fingerprint(name: str, seed: int, extractor: dict[str, Any] | None = None) -> Fingerprint:
    tensor = torch.randn((3, 256, 256), generator=torch.Generator().manual_seed(seed))
    # Held-out fakes' p-values as the trainer records them: seed 0 covers its generator, later ones less.
    heldout = [10.0 ** -(6 - 2 * seed)] * 6 + [0.3] * 4
    metadata = {"metrics": {"crossval": {"accuracy": 0.75 + seed / 100, "heldout_fake_p": heldout}}}
    return Fingerprint(
        name=name, tensor=tensor, calibration=Calibration(0.0, 0.02, 0.01, 0.01),
        extractor=extractor or create("signlap@1").describe(), detection=Detection(), metadata=metadata,
    )


def twin_fingerprint(name: str, image: bytes) -> Fingerprint:
    """A fingerprint equal to ``image``'s mean crop residual: the image matches it as strongly as any can."""
    template = make_fingerprint(name, 7)
    detector = Detector([template], create(template.extractor_key), torch.device("cpu"))
    residuals, _ = detector.residuals([detector.prepare(decode_image(image))])
    return replace(template, tensor=residuals.mean(dim=0))


def write_artifacts(root: Path, names: tuple[str, ...] | list[str], first_seed: int = 0) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for offset, name in enumerate(names):
        save_fingerprint(make_fingerprint(name, first_seed + offset), root / name)
    return root


def tiny_png(size: int = 16) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (size, size), (120, 30, 200)).save(buf, format="PNG")
    return buf.getvalue()


def bomb_png(width: int = 100_000, height: int = 100_000) -> bytes:
    """A valid PNG header declaring ``width`` x ``height``, with almost no data behind it."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
            + chunk(b"IEND", b""))


# -- servers ------------------------------------------------------------------------------------


def make_settings(fingerprints: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "fingerprints_dir": fingerprints, "device": "cpu", "torch_threads": 1, "decode_threads": 2,
        "max_wait_ms": 20, "log_level": "warning", "drain_timeout_s": 10,
    }
    values.update(overrides)
    return Settings(**values)




def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class ThreadServer:
    """A real uvicorn server for ``create_app(settings)`` in a background thread."""

    settings: Settings
    server: GracefulServer = field(init=False)
    service: Service = field(init=False)
    url: str = field(init=False)
    _thread: threading.Thread = field(init=False)

    def __post_init__(self) -> None:
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
            wait_until(lambda: httpx.get(f"{self.url}/readyz").status_code == 200, 30, "never became ready")
        return self

    def stop(self) -> None:
        self.service.begin_shutdown()
        self.server.should_exit = True
        self._thread.join(30)
        assert not self._thread.is_alive(), "server thread did not stop"

    def metrics(self) -> str:
        return httpx.get(f"{self.url}/metrics").text


class ScorerProbe:
    """Stands in for a running detector's scorer: records batches, can hold them or fail them."""

    def __init__(self, inner: Any):
        self.inner = inner
        self.gate = threading.Event()
        self.gate.set()
        self.failure: Exception | None = None
        self.batches: list[int] = []

    def score(self, residuals: torch.Tensor, groups: torch.Tensor, count: int) -> Any:
        self.batches.append(count)
        failure = self.failure  # decided when the batch starts, so a held batch keeps its fate
        assert self.gate.wait(60), "probe gate never opened"
        if failure is not None:
            raise failure
        return self.inner.score(residuals, groups, count)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


@dataclass
class ProcessServer:
    """``python -m app`` in a subprocess, configured by DIF_* variables."""

    env: dict[str, str]
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, log_path: Path) -> ProcessServer:
        self.log_path = log_path
        env = {**os.environ, **self.env, "PYTHONPATH": str(REPO), "DIF_TORCH_THREADS": "1"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "app", "--host", "127.0.0.1", "--port", str(self.port)],
            cwd=REPO, env=env, stdout=log_path.open("wb"), stderr=subprocess.STDOUT,
        )
        wait_until(self._ready, 90, "subprocess server never became ready", self.log)
        return self

    def _ready(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"server exited with {self.proc.returncode}:\n{self.log()}")
        try:
            return httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path and self.log_path.exists() else ""

    def terminate(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


# -- helpers ----------------------------------------------------------------------------------


def wait_until(condition: Callable[[], bool], timeout_s: float, message: str,
               details: Callable[[], str] | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if condition():
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise AssertionError(f"{message} within {timeout_s}s" + (f"\n{details()}" if details else ""))


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


def error_of(response: httpx.Response) -> dict[str, str]:
    """The ``{"error": {...}}`` body every failure must have."""
    body = response.json()
    assert set(body) == {"error"}, body
    assert {"code", "message"} <= set(body["error"]), body
    return body["error"]  # type: ignore[no-any-return]

"""Load-driving pieces shared by the service benches and the overload test.

- ``Server``: ``python -m app`` in a subprocess on a free loopback port, with its RSS.
- ``closed_loop``: N workers, each sends its next request when the previous one is answered.
- ``open_loop``: requests sent on a schedule fixed in advance (Poisson or constant), whatever
  the answers do. Latency is measured from the *scheduled* send time, so a server (or a client)
  that falls behind shows up as latency instead of silently lowering the offered rate
  ("coordinated omission").

Every request becomes a ``Sample``; ``LoadResult`` turns samples into throughput, percentiles
and status counts. Nothing here knows about a particular bench's report.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import random
import socket
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import psutil

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "ltim"
MIB = 1024 * 1024

Image = tuple[str, bytes]


# -- set-up -------------------------------------------------------------------------------------


def load_images(root: Path = DATA) -> list[Image]:
    """Every sample image (PNG 256-512 px and JPEG up to ~1000 px): real files, real decode costs."""
    paths = sorted(root.glob("*/*/*"))
    if not paths:
        raise SystemExit(f"no images under {root}: the benches need ../shared beside the repository")
    return [(p.name, p.read_bytes()) for p in paths]


def decode_ceiling(images: Sequence[Image], fingerprints: Path, seconds: float, threads: int = 2,
                   extractor_dir: Path | None = None) -> float:
    """Images per second that decode + crop alone reach on ``threads`` threads: the service's upper bound."""
    from concurrent.futures import ThreadPoolExecutor

    import torch

    sys.path.insert(0, str(REPO))
    from app.engine import load_model_set
    from dif.images import decode_image

    model = load_model_set(fingerprints, extractor_dir, torch.device("cpu"), 1)

    def one(data: bytes) -> None:
        model.detector.prepare(decode_image(data))

    done = 0
    started = time.monotonic()
    with ThreadPoolExecutor(threads) as pool:
        while time.monotonic() - started < seconds:
            list(pool.map(one, [d for _, d in images]))
            done += len(images)
    return done / (time.monotonic() - started)


def write_set(root: Path, count: int) -> Path:
    """``count`` random fingerprints with the default extractor: scoring cost does not depend on values."""
    import torch

    sys.path.insert(0, str(REPO))
    from dif.artifact import Detection, Fingerprint, save_fingerprint
    from dif.calibration import Calibration
    from dif.extractors import DEFAULT_EXTRACTOR, create

    extractor = create(DEFAULT_EXTRACTOR).describe()
    for i in range(count):
        tensor = torch.randn((3, 256, 256), generator=torch.Generator().manual_seed(i))
        fp = Fingerprint(f"gen{i:02d}", tensor, Calibration(0.0, 0.02, 0.01, 0.01), extractor, Detection(), {})
        save_fingerprint(fp, root / fp.name)
    return root


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """``python -m app`` with ``DIF_*`` overrides; ready (``/readyz`` 200) when the constructor returns."""

    def __init__(self, env: dict[str, str], log: Path, ready_timeout_s: float = 120.0, clean_env: bool = False):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        # clean_env: the caller's DIF_* variables do not reach the server (tests set every one they need).
        inherited = {k: v for k, v in os.environ.items() if not (clean_env and k.startswith("DIF_"))}
        full_env = {**inherited, "PYTHONPATH": str(REPO), "DIF_DEVICE": "cpu", "DIF_LOG_LEVEL": "warning",
                    "DIF_TORCH_THREADS": "1", **env}
        self.proc = subprocess.Popen([sys.executable, "-m", "app", "--host", "127.0.0.1", "--port", str(self.port)],
                                     cwd=REPO, env=full_env, stdout=log.open("wb"), stderr=subprocess.STDOUT)
        self._process = psutil.Process(self.proc.pid)
        self._wait_ready(ready_timeout_s)

    def _wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log.read_text()}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"server never became ready within {timeout_s:g}s:\n{self.log.read_text()}")

    def rss_mib(self) -> float:
        return self._process.memory_info().rss / MIB

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


# -- samples and their statistics ---------------------------------------------------------------


@dataclass
class Sample:
    """One request: when it was due, when it really went out, when it ended and how."""

    scheduled: float  # monotonic; for closed loop, the moment it was sent
    sent: float
    done: float
    status: int  # 0: transport error or client timeout (no HTTP answer)
    retry_after: str | None = None
    error: str | None = None  # exception type when there was no HTTP answer
    timings: dict[str, float] | None = None
    batch_size: int | None = None

    @property
    def latency(self) -> float:
        return self.done - self.scheduled


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in [0, 1]); NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


@dataclass
class LoadResult:
    """Samples of one run; ``window`` is the measured interval (warm-up and tail excluded)."""

    label: str
    mode: str  # "closed" or "open"
    level: float  # concurrency (closed) or offered rate in requests/s (open)
    window: tuple[float, float]
    samples: list[Sample] = field(default_factory=list)

    @property
    def seconds(self) -> float:
        return self.window[1] - self.window[0]

    @property
    def measured(self) -> list[Sample]:
        """Closed loop: answers that arrived inside the window. Open loop: requests due inside it."""
        lo, hi = self.window
        if self.mode == "open":
            return [s for s in self.samples if lo <= s.scheduled < hi]
        return [s for s in self.samples if lo <= s.done <= hi]

    @property
    def ok(self) -> list[Sample]:
        return [s for s in self.measured if s.status == 200]

    @property
    def throughput(self) -> float:
        """Successful answers per second that *arrived* inside the window (both modes)."""
        lo, hi = self.window
        return sum(1 for s in self.samples if s.status == 200 and lo <= s.done <= hi) / self.seconds

    def latency_ms(self, q: float) -> float:
        return percentile([s.latency for s in self.ok], q) * 1000

    def send_lag_ms(self, q: float) -> float:
        """How late the client sent requests (open loop): large values mean the generator could not keep up."""
        return percentile([s.sent - s.scheduled for s in self.measured], q) * 1000

    def statuses(self) -> dict[int, int]:
        return dict(sorted(Counter(s.status for s in self.measured).items()))

    def mean_timing(self, key: str, per_image: bool = False) -> float:
        values = [s.timings[key] / ((s.batch_size or 1) if per_image else 1) for s in self.ok if s.timings]
        return statistics.fmean(values) if values else math.nan

    @property
    def mean_batch(self) -> float:
        sizes = [s.batch_size for s in self.ok if s.batch_size]
        return statistics.fmean(sizes) if sizes else math.nan

    def summary(self) -> dict[str, Any]:
        statuses = self.statuses()
        measured = len(self.measured)
        return {
            "label": self.label, "mode": self.mode, "level": self.level, "seconds": self.seconds,
            "requests": measured, "ok": len(self.ok), "throughput": self.throughput,
            "p50_ms": self.latency_ms(0.5), "p99_ms": self.latency_ms(0.99),
            "rejected_429": statuses.get(429, 0), "errors": measured - len(self.ok) - statuses.get(429, 0),
            "statuses": {str(k): v for k, v in statuses.items()}, "mean_batch": self.mean_batch,
            "transport_errors": dict(Counter(s.error for s in self.measured if s.error)),
            "send_lag_p99_ms": self.send_lag_ms(0.99),
        }


# -- driving ------------------------------------------------------------------------------------


def arrival_offsets(rate: float, seconds: float, poisson: bool, rng: random.Random) -> list[float]:
    """Send times (seconds from the start) of an open-loop schedule of ``rate`` requests/s.

    Poisson: exponential gaps (independent arrivals, like many unrelated clients);
    constant: evenly spaced. Fixed before the first request, so answers cannot slow it down.
    """
    if rate <= 0 or seconds <= 0:
        return []
    if not poisson:
        return [i / rate for i in range(math.ceil(seconds * rate))]
    offsets: list[float] = []
    t = rng.expovariate(rate)
    while t < seconds:
        offsets.append(t)
        t += rng.expovariate(rate)
    return offsets


# -- a lean HTTP/1.1 client -----------------------------------------------------------------------
#
# On a small machine the load generator shares the CPUs with the server. A general-purpose
# client (httpx) spends milliseconds per request on multipart encoding and protocol objects;
# at a few dozen requests/s that starved the generator's own event loop by seconds, which showed
# up as server latency. This client sends requests encoded once per image and parses only the
# status line, the headers and a Content-Length body.


def encode_detect(host: str, image: Image, path: str = "/detect", headers: dict[str, str] | None = None) -> bytes:
    """A complete ``POST /detect`` (multipart, one ``file`` field) as bytes, ready to write to a socket."""
    name, data = image
    boundary = "dif-load-" + "0123456789abcdef" * 2
    body = (f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
            f"Content-Type: application/octet-stream\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
    lines = [f"POST {path} HTTP/1.1", f"Host: {host}", f"Content-Type: multipart/form-data; boundary={boundary}",
             f"Content-Length: {len(body)}", *(f"{k}: {v}" for k, v in (headers or {}).items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


@dataclass
class Response:
    status: int
    headers: dict[str, str]  # lower-case names
    body: bytes


@dataclass
class _Connection:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    idle_since: float = 0.0


class LeanClient:
    """Keep-alive connections to one ``http://host:port``; as many open at once as requests in flight."""

    # Idle connections are dropped before uvicorn's 5 s keep-alive timeout: reusing one the server
    # is closing at that instant loses the request (a client-side race, not a server fault).
    IDLE_EXPIRY_S = 2.0

    def __init__(self, url: str, timeout_s: float):
        parsed = urlsplit(url)
        if parsed.scheme != "http" or parsed.hostname is None:
            raise ValueError(f"the load client speaks plain http:// only, not {url}")
        self.host, self.port = parsed.hostname, parsed.port or 80
        self.netloc = parsed.netloc
        self.timeout_s = timeout_s
        self._idle: list[_Connection] = []

    async def send(self, request: bytes) -> Response:
        """One request/response within ``timeout_s``; retried once on a fresh connection if a reused
        one turns out closed before any answer (the server never saw the request)."""
        return await asyncio.wait_for(self._send(request), self.timeout_s)

    async def _send(self, request: bytes) -> Response:
        reused = self._take_idle()
        if reused is not None:
            try:
                return await self._exchange(reused, request)
            except (ConnectionError, asyncio.IncompleteReadError):
                pass
        conn = _Connection(*await asyncio.open_connection(self.host, self.port))
        return await self._exchange(conn, request)

    def _take_idle(self) -> _Connection | None:
        now = time.monotonic()
        while self._idle:
            conn = self._idle.pop()
            if now - conn.idle_since < self.IDLE_EXPIRY_S and not conn.reader.at_eof():
                return conn
            conn.writer.close()
        return None

    async def _exchange(self, conn: _Connection, request: bytes) -> Response:
        try:
            conn.writer.write(request)
            await conn.writer.drain()
            status_line, *lines = (await conn.reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
            headers = {}
            for line in lines:
                if ":" in line:
                    key, value = line.split(":", 1)
                    headers[key.strip().lower()] = value.strip()
            body = await conn.reader.readexactly(int(headers.get("content-length", "0")))
        except BaseException:  # cancelled by the timeout included: never reuse a half-read connection
            conn.writer.close()
            raise
        if headers.get("connection", "").lower() == "close":
            conn.writer.close()
        else:
            conn.idle_since = time.monotonic()
            self._idle.append(conn)
        return Response(int(status_line.split()[1]), headers, body)

    async def close(self) -> None:
        for conn in self._idle:
            conn.writer.close()
        self._idle.clear()


async def _post(client: LeanClient, request: bytes, scheduled: float) -> Sample:
    sent = time.monotonic()
    try:
        response = await client.send(request)
    except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, asyncio.TimeoutError, ValueError) as exc:
        return Sample(scheduled, sent, time.monotonic(), 0, error=type(exc).__name__)
    sample = Sample(scheduled, sent, time.monotonic(), response.status, response.headers.get("retry-after"))
    if response.status == 200:
        body = json.loads(response.body)
        sample.timings, sample.batch_size = body.get("timings_ms"), body.get("batch_size")
    return sample


def _requests(client: LeanClient, images: Sequence[Image], path: str, headers: dict[str, str] | None) -> list[bytes]:
    return [encode_detect(client.netloc, image, path, headers) for image in images]


async def closed_loop(url: str, images: Sequence[Image], concurrency: int, seconds: float, label: str = "",
                      warmup_s: float = 1.0, timeout_s: float = 120.0, path: str = "/detect",
                      headers: dict[str, str] | None = None) -> LoadResult:
    """``concurrency`` workers, each posting the next image as soon as its previous answer came."""
    client = LeanClient(url, timeout_s)
    requests = _requests(client, images, path, headers)
    start = time.monotonic()
    result = LoadResult(label, "closed", concurrency, (start + warmup_s, start + warmup_s + seconds))

    async def worker(offset: int) -> None:
        i = offset
        while time.monotonic() < result.window[1]:
            sample = await _post(client, requests[i % len(requests)], time.monotonic())
            result.samples.append(sample)
            i += concurrency
            if sample.status == 429:  # don't spin on refusals: a real client backs off a little
                await asyncio.sleep(0.05)

    try:
        await asyncio.gather(*(worker(k) for k in range(concurrency)))
    finally:
        await client.close()
    return result


async def open_loop(url: str, images: Sequence[Image], rate: float, seconds: float, label: str = "",
                    warmup_s: float = 1.0, timeout_s: float = 120.0, poisson: bool = True, seed: int = 0,
                    path: str = "/detect", headers: dict[str, str] | None = None) -> LoadResult:
    """Post at ``rate`` requests/s for ``warmup_s + seconds`` on a fixed schedule; wait for every answer.

    Each request runs in its own task on its own connection (reused when idle), so a slow answer
    never delays the next send: no client-side queue hides the server's. How late the client
    really sent is in each sample (``send_lag_ms``).
    """
    offsets = arrival_offsets(rate, warmup_s + seconds, poisson, random.Random(seed))
    client = LeanClient(url, timeout_s)
    requests = _requests(client, images, path, headers)
    start = time.monotonic() + 0.05
    result = LoadResult(label, "open", rate, (start + warmup_s, start + warmup_s + seconds))
    tasks: list[asyncio.Task[Sample]] = []
    try:
        for i, offset in enumerate(offsets):
            due = start + offset
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(_post(client, requests[i % len(requests)], due)))
        result.samples = list(await asyncio.gather(*tasks))
    finally:
        await client.close()
    return result


async def capacity(url: str, images: Sequence[Image], seconds: float = 4.0, concurrency: int = 16,
                   timeout_s: float = 120.0) -> float:
    """Successful images/s under a closed loop deep enough to keep every stage busy."""
    return (await closed_loop(url, images, concurrency, seconds, "capacity", timeout_s=timeout_s)).throughput

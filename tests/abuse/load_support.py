"""Helpers for the overload test: a real ``python -m app``, the shared sample images, and an
open-loop overload that also watches the server's RSS and its readiness probe.

The load itself comes from ``testkit.load`` (the benches' driver), so the test and the
benches measure the same way: open loop, latency from the scheduled send time.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from testkit.fingerprints import write_artifacts
from testkit.images import Blob
from testkit.load.drivers import open_loop
from testkit.load.stats import LoadResult
from testkit.servers import AppProcess, start_app
from tests.service.support import GENERATORS

# The shipped Kubernetes readiness probe (deploy/k8s/base/deployment.yaml): 3 s timeout, and the
# pod leaves the Service after 2 failures in a row.
PROBE_TIMEOUT_S = 3.0
PROBE_FAILURE_THRESHOLD = 2


def start_server(tmp_path: Path, **env: str) -> AppProcess:
    """A real server on a free port with three random fingerprints and exactly these DIF_* settings."""
    fingerprints = write_artifacts(tmp_path / "fingerprints", GENERATORS)
    return start_app({"DIF_FINGERPRINTS_DIR": str(fingerprints), **env}, tmp_path / "server.log", inherit_dif=False)


@dataclass
class Watch:
    """What the server looked like from outside while the load ran."""

    rss_mib: list[float] = field(default_factory=list)
    readiness: list[int] = field(default_factory=list)  # /readyz status per poll; 0: no answer
    probe_errors: list[str] = field(default_factory=list)

    def longest_not_ready_streak(self) -> int:
        streak = longest = 0
        for status in self.readiness:
            streak = streak + 1 if status != 200 else 0
            longest = max(longest, streak)
        return longest


async def watch(server: AppProcess, until: float, every_s: float = 1.0) -> Watch:
    seen = Watch()
    async with httpx.AsyncClient(base_url=server.url, timeout=PROBE_TIMEOUT_S) as probe:
        while time.monotonic() < until:
            seen.rss_mib.append(server.rss_mib())
            try:
                seen.readiness.append((await probe.get("/readyz")).status_code)
            except httpx.TransportError as exc:  # timeouts included: for a kubelet, both are a failure
                seen.readiness.append(0)
                seen.probe_errors.append(f"{type(exc).__name__}: {exc}")
            await asyncio.sleep(every_s)
    return seen


async def overload(server: AppProcess, images: list[Blob], rate: float, seconds: float, timeout_s: float
                   ) -> tuple[LoadResult, Watch]:
    """``rate`` requests/s (Poisson) for ``seconds``, waiting for every answer, watched the whole time."""
    load = open_loop(server.url, images, rate, seconds, "overload", warmup_s=0.0, timeout_s=timeout_s)
    result, seen = await asyncio.gather(load, watch(server, time.monotonic() + seconds))
    return result, seen


def retry_after_s(value: str | None) -> int | None:
    """``Retry-After`` as delay-seconds (RFC 9110: a non-negative integer), else None."""
    if value is None or not value.isdigit():
        return None
    return int(value)

"""Load drivers against a running service.

- ``closed_loop``: N workers, each sends its next request when the previous one is answered.
- ``open_loop``: requests sent on a schedule fixed in advance (Poisson or constant), whatever
  the answers do. Latency is measured from the *scheduled* send time, so a server (or a client)
  that falls behind shows up as latency instead of silently lowering the offered rate
  ("coordinated omission").
"""

from __future__ import annotations

import asyncio
import json
import math
import random
import time
from collections.abc import Sequence

from ..images import Blob
from .client import LeanClient, encode_detect
from .stats import LoadResult, Sample


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


def _requests(client: LeanClient, images: Sequence[Blob], path: str, headers: dict[str, str] | None) -> list[bytes]:
    return [encode_detect(client.netloc, image, path, headers) for image in images]


async def closed_loop(url: str, images: Sequence[Blob], concurrency: int, seconds: float, label: str = "",
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


async def open_loop(url: str, images: Sequence[Blob], rate: float, seconds: float, label: str = "",
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


async def capacity(url: str, images: Sequence[Blob], seconds: float = 4.0, concurrency: int = 16,
                   timeout_s: float = 120.0) -> float:
    """Successful images/s under a closed loop deep enough to keep every stage busy."""
    return (await closed_loop(url, images, concurrency, seconds, "capacity", timeout_s=timeout_s)).throughput
